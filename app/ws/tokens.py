"""Tokens for private channels: ``"<expiry>.<signature>"``, an HMAC-SHA256 of the channel and expiry.

Channels named ``private:...`` need one in the subscribe message.  The service
that authenticates users issues them (``make_token``, or ``python -m app
ws-token CHANNEL``) with the secret it shares with this one
(``ASYNCSTACK_WS__CHANNEL_SECRET``); nothing is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def _signature(secret: str, channel: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{channel}\n{expires}".encode(), hashlib.sha256).hexdigest()


def make_token(secret: str, channel: str, ttl_s: int = 3600, now: float | None = None) -> str:
    """A token that lets its holder subscribe to ``channel`` for ``ttl_s`` seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{expires}.{_signature(secret, channel, expires)}"


def check_token(secret: str, channel: str, token: str, now: float | None = None) -> str | None:
    """None when ``token`` is valid for ``channel``; otherwise what is wrong with it."""
    expires_text, dot, signature = token.partition(".")
    if not dot or not expires_text.isdigit() or len(expires_text) > 12:
        return "malformed token"
    expires = int(expires_text)
    if not hmac.compare_digest(signature, _signature(secret, channel, expires)):
        return "bad token for this channel"
    if expires < (time.time() if now is None else now):
        return "token expired"
    return None
