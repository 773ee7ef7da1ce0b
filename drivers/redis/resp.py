"""RESP2 request encoding: a command (a sequence of arguments) to the bytes Redis reads.

Rules of this file:
- Standard library (and the error tree) only, no I/O: arguments in, bytes out.
  Replies are parsed by hiredis's C reader in ``drivers.redis.pipe``, not here.
- Every command is sent as an array of bulk strings, the form Redis accepts for
  every command.  ``str`` is encoded as UTF-8, ``int`` in decimal, ``bytes`` as is.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.errors import InterfaceError

Arg = bytes | bytearray | memoryview | str | int


def bulk(arg: Arg) -> bytes:
    """One argument as a RESP bulk string."""
    if isinstance(arg, str):
        data = arg.encode()
    elif isinstance(arg, int):
        data = b"%d" % arg
    else:
        data = bytes(arg)
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_command(args: Sequence[Arg]) -> bytes:
    """``("SET", "k", b"v")`` -> ``b"*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n"``."""
    if not args:
        raise InterfaceError("redis: a command needs at least its name", backend="redis")
    return b"*%d\r\n" % len(args) + b"".join([bulk(a) for a in args])


def command_prefix(*args: Arg, total: int) -> bytes:
    """The encoded head of a command of ``total`` arguments whose first ones are ``args``.

    ``command_prefix("GET", total=2) + bulk(key)`` is the encoding of ``GET key``;
    prebuilt once, it saves re-encoding the command name on every call.
    """
    if total < len(args):
        raise InterfaceError("redis: total must count the prefix's own arguments", backend="redis")
    return b"*%d\r\n" % total + b"".join([bulk(a) for a in args])
