"""Cache keys: checked before any I/O, and laid out in the remote store.

Rules of this file:
- Standard library and the error tree only; no I/O.
- A key is a non-empty ``str`` of at most ``max_key_bytes`` in UTF-8, with no
  whitespace or control characters (they break logs, the invalidation messages,
  which separate keys with newlines, and other tools' views of the store).
  Anything else is an ``InterfaceError`` that names the key and what is wrong.
- In the remote store a value lives at ``<namespace>:v:<key>`` and a loader's lease
  at ``<namespace>:l:<key>``: a key can never collide with a lease.  Redis Cluster
  hash tags (``{user42}``) in a key keep working, since the tag is in the key.
"""

from __future__ import annotations

from drivers.errors import InterfaceError

_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f"}


def check_key(key: object, max_bytes: int) -> str:
    """``key`` if it is usable, else an ``InterfaceError`` saying why."""
    if type(key) is not str:
        raise InterfaceError(f"cache: a key is a str, not {type(key).__name__} ({key!r:.80})", backend="cache")
    if not key:
        raise InterfaceError("cache: a key cannot be empty", backend="cache")
    if len(key) * 4 > max_bytes and len(key.encode()) > max_bytes:
        raise InterfaceError(f"cache: key {key[:60]!r}... is {len(key.encode())} bytes in UTF-8, over the "
                             f"limit of {max_bytes}", backend="cache")
    if not _FORBIDDEN.isdisjoint(key):
        bad = next(c for c in key if c in _FORBIDDEN)
        raise InterfaceError(f"cache: key {key[:80]!r} contains {bad!r}; whitespace and control characters "
                             "are not allowed", backend="cache")
    return key


class Layout:
    """Where a namespace's values and leases live in the remote store."""

    __slots__ = ("lease_prefix", "value_prefix")

    def __init__(self, namespace: str) -> None:
        check_key(namespace, 128)
        self.value_prefix = f"{namespace}:v:"
        self.lease_prefix = f"{namespace}:l:"

    def value(self, key: str) -> str:
        return self.value_prefix + key

    def lease(self, key: str) -> str:
        return self.lease_prefix + key
