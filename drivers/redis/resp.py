"""RESP2 request encoding: a command (a sequence of arguments) to the bytes Redis reads.

Rules of this file:
- Standard library (and the error tree) only, no I/O: arguments in, bytes out.
  Replies are parsed by hiredis's C reader in ``drivers.redis.pipe``, not here.
- Every command is sent as an array of bulk strings, the form Redis accepts for
  every command.  ``str`` is encoded as UTF-8, ``int`` in decimal, ``bytes`` as is.
- An argument Redis cannot be sent is an ``InterfaceError`` naming what is wrong, before
  anything is written: a ``str`` that is not valid Unicode (a lone surrogate, which has no
  UTF-8 form), or a value of any other type (``None``, a float, a list).
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.errors import InterfaceError

Arg = bytes | bytearray | memoryview | str | int


def utf8(text: str, backend: str = "redis") -> bytes:
    """``text`` as UTF-8, or an ``InterfaceError`` naming the character that has no UTF-8 form."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InterfaceError(f"{backend}: an argument must be valid Unicode text ({exc.reason} at position "
                             f"{exc.start}: {text[exc.start]!r})", backend=backend) from None


def bulk(arg: Arg) -> bytes:
    """One argument as a RESP bulk string."""
    if isinstance(arg, str):
        try:
            data = arg.encode()
        except UnicodeEncodeError:
            data = utf8(arg)                   # raises, naming the character
    elif isinstance(arg, int):
        data = b"%d" % arg
    elif isinstance(arg, bytes | bytearray | memoryview):
        data = bytes(arg)
    else:
        raise InterfaceError(f"redis: an argument must be str, bytes or int, not {type(arg).__name__}",
                             backend="redis")
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
