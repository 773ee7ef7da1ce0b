"""Private-channel tokens: valid for their channel until they expire, and for nothing else."""

from __future__ import annotations

from app.ws.tokens import check_token, make_token

SECRET = "s3cret"


def test_a_token_opens_its_channel() -> None:
    assert check_token(SECRET, "private:alice", make_token(SECRET, "private:alice", 60)) is None


def test_a_token_for_another_channel_is_refused() -> None:
    assert check_token(SECRET, "private:bob", make_token(SECRET, "private:alice", 60)) == "bad token for this channel"


def test_another_secret_is_refused() -> None:
    assert check_token(SECRET, "private:alice", make_token("other", "private:alice", 60)) == \
        "bad token for this channel"


def test_an_expired_token_is_refused() -> None:
    token = make_token(SECRET, "private:alice", 60, now=1000)
    assert check_token(SECRET, "private:alice", token, now=1059) is None
    assert check_token(SECRET, "private:alice", token, now=1061) == "token expired"


def test_a_moved_expiry_breaks_the_signature() -> None:
    expires, _, signature = make_token(SECRET, "private:alice", 60, now=1000).partition(".")
    assert check_token(SECRET, "private:alice", f"{int(expires) + 3600}.{signature}", now=1000) == \
        "bad token for this channel"


def test_garbage_is_malformed() -> None:
    for token in ("", "abc", ".", "x.y", "1" * 20 + ".ab"):
        assert check_token(SECRET, "private:alice", token) == "malformed token"
