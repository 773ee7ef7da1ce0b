"""Redis Cluster's key space, sans-I/O: a key's hash slot, the slot table read from the cluster, redirects.

Rules of this file:
- Standard library (and the error tree) only, no I/O: replies in, as hiredis gives them
  (bytes, int, lists), routing facts out.  Tested with vectors and no server.
- ``key_slot`` is Redis's own rule: CRC16-XMODEM (polynomial 0x1021, initial value 0:
  ``binascii.crc_hqx(data, 0)``) of the key, modulo 16384.  A key with a hash tag — a
  ``{`` and, after the first ``{``, a ``}`` with at least one byte between the two — hashes
  only the bytes between that first ``{`` and the first ``}`` after it.  ``str`` keys are
  hashed as their UTF-8 bytes, ``int`` keys as their decimal digits (as they are sent).
- ``SlotTable`` maps each of the 16384 slots to the ``Shard`` serving it: its primary and
  the replicas fit for reads.  It is built whole from a ``CLUSTER SHARDS`` reply (Redis 7+)
  or a ``CLUSTER SLOTS`` one; the only change made in place is ``move(slot, address)``,
  after a MOVED.  A slot no shard serves maps to None.
- Addresses: in ``CLUSTER SHARDS`` a node is at its ``endpoint``, or its ``ip`` when the
  endpoint is empty or ``?``; in ``CLUSTER SLOTS`` an empty host is the host of the node that
  answered and a ``?`` host is left out.  Replicas are kept only when the reply says they
  are online (``CLUSTER SLOTS`` lists only those already).
- A loopback address (127.0.0.0/8, ::1, ``localhost``) announced by a node that this client
  reached at another address means "on that node's machine": it becomes the answering node's
  host, in the table and in redirects.  A cluster whose nodes announce 127.0.0.1 is then usable
  from another network namespace or machine that reaches them through an address of their host
  (with NAT, as ``stack hosts`` does); no other address is rewritten.
- ``parse_redirect`` reads a ``MOVED <slot> <host>:<port>`` or ``ASK ...`` error message;
  any other message is not a redirect (None).
- A reply that does not have the documented shape raises ``ProtocolError``.
"""

from __future__ import annotations

import enum
import ipaddress
from binascii import crc_hqx
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from drivers.errors import InterfaceError, ProtocolError
from drivers.redis.resp import utf8

SLOTS = 16384
BACKEND = "redis-cluster"

Key = bytes | bytearray | memoryview | str | int


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def key_bytes(key: Key) -> bytes:
    """A key as the bytes Redis receives (and hashes)."""
    if isinstance(key, str):
        return utf8(key, BACKEND)
    if isinstance(key, int):
        return b"%d" % key
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    raise InterfaceError(f"redis-cluster: a key must be str, bytes or int, not {type(key).__name__}",
                         backend=BACKEND)


def key_slot(key: Key) -> int:
    """The hash slot of ``key`` (0..16383), hash tags included."""
    return bytes_slot(key_bytes(key))


def bytes_slot(data: bytes) -> int:
    """The hash slot of a key already encoded (``key_bytes``)."""
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            return crc_hqx(data[start + 1:end], 0) & 0x3FFF
    return crc_hqx(data, 0) & 0x3FFF


# -- which argument of a command is its first key ---------------------------------------------------

_KEYS_AFTER_NUMKEYS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_NO_KEY = frozenset({"PING", "ECHO", "INFO", "TIME", "DBSIZE", "SCAN", "RANDOMKEY", "CLUSTER", "COMMAND",
                     "CONFIG", "CLIENT", "SCRIPT", "FUNCTION", "LASTSAVE", "FLUSHALL", "FLUSHDB", "KEYS",
                     "READONLY", "READWRITE", "ASKING"})


def first_key(args: Sequence[Key]) -> Key | None:
    """The first key of a command: ``args[1]``; for EVAL/EVALSHA/FCALL the first after numkeys.

    None for a command that has no key (PING, INFO, SCAN, an EVAL with 0 keys, ...).
    """
    if len(args) < 2:
        return None
    name = key_bytes(args[0]).decode(errors="replace").upper()
    if name in _NO_KEY:
        return None
    if name in _KEYS_AFTER_NUMKEYS:
        try:
            numkeys = int(key_bytes(args[2]))
        except (IndexError, ValueError):
            return None
        return args[3] if numkeys > 0 and len(args) > 3 else None
    return args[1]


# -- the slot table ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Shard:
    """A primary and its replicas fit for reads."""

    primary: Address
    replicas: tuple[Address, ...] = ()


class SlotTable:
    """Which shard serves each slot.  ``owners[slot]`` is a ``Shard`` or None."""

    __slots__ = ("owners", "shards")

    def __init__(self, assignments: Iterable[tuple[Shard, Sequence[tuple[int, int]]]]) -> None:
        owners: list[Shard | None] = [None] * SLOTS
        shards: list[Shard] = []
        for shard, ranges in assignments:
            shards.append(shard)
            for start, end in ranges:
                if not 0 <= start <= end < SLOTS:
                    raise ProtocolError(f"redis-cluster: slot range {start}-{end} is outside 0-{SLOTS - 1}",
                                        backend=BACKEND)
                owners[start:end + 1] = [shard] * (end - start + 1)
        self.owners = owners
        self.shards = tuple(shards)

    def __repr__(self) -> str:
        return f"<SlotTable {len(self.primaries)} primaries, {self.covered} of {SLOTS} slots served>"

    def shard(self, slot: int) -> Shard | None:
        return self.owners[slot]

    @property
    def covered(self) -> int:
        """How many slots have a shard."""
        return SLOTS - self.owners.count(None)

    @property
    def primaries(self) -> tuple[Address, ...]:
        """The primaries that serve at least one slot, each once, in slot order."""
        seen: dict[Address, None] = {}
        for shard in self.owners:
            if shard is not None:
                seen.setdefault(shard.primary)
        return tuple(seen)

    @property
    def nodes(self) -> tuple[Address, ...]:
        """Every node the table names: primaries first, then replicas."""
        found: dict[Address, None] = dict.fromkeys(self.primaries)
        for shard in self.shards:
            found.setdefault(shard.primary)
            for replica in shard.replicas:
                found.setdefault(replica)
        return tuple(found)

    def move(self, slot: int, address: Address) -> Shard:
        """``slot`` is now served by ``address`` (a MOVED): that primary's shard, or a new one without replicas."""
        shard = next((s for s in self.shards if s.primary == address), None)
        if shard is None:
            shard = Shard(address)
            self.shards = (*self.shards, shard)
        self.owners[slot] = shard
        return shard


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str):
        return value
    raise ProtocolError(f"redis-cluster: expected a string in the topology reply, got {value!r}", backend=BACKEND)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _seen_from(host: str, answered_by: Address) -> str:
    """Where a node announced as ``host`` is reached from here: an empty host, or a loopback one
    announced by a node this client reaches elsewhere, is on the answering node's machine."""
    if not host or (_is_loopback(host) and not _is_loopback(answered_by.host)):
        return answered_by.host
    return host


def _endpoint(host: str, port: Any, answered_by: Address) -> Address | None:
    if host == "?" or not isinstance(port, int):
        return None
    return Address(_seen_from(host, answered_by), port)


def _pairs(value: Any) -> dict[str, Any]:
    """A RESP3 map, or its RESP2 form (a flat list of name, value, ...), with ``str`` names."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    if not isinstance(value, list) or len(value) % 2:
        raise ProtocolError(f"redis-cluster: expected a map in the topology reply, got {value!r}", backend=BACKEND)
    return {_text(value[i]): value[i + 1] for i in range(0, len(value), 2)}


def parse_shards(reply: Any, answered_by: Address) -> SlotTable:
    """A ``CLUSTER SHARDS`` reply (Redis 7+) as a ``SlotTable``; ``answered_by`` is the node that sent it."""
    if not isinstance(reply, list):
        raise ProtocolError(f"redis-cluster: CLUSTER SHARDS replied {reply!r}", backend=BACKEND)
    assignments: list[tuple[Shard, list[tuple[int, int]]]] = []
    for entry in reply:
        fields = _pairs(entry)
        bounds, nodes = fields.get("slots"), fields.get("nodes")
        if not isinstance(bounds, list) or len(bounds) % 2 or not isinstance(nodes, list):
            raise ProtocolError(f"redis-cluster: a shard of CLUSTER SHARDS is {entry!r}", backend=BACKEND)
        primary: Address | None = None
        replicas: list[Address] = []
        for node in nodes:
            about = _pairs(node)
            host = _text(about.get("endpoint") or b"")
            if host in ("", "?"):
                host = _text(about.get("ip") or b"")
            address = _endpoint(host, about.get("port", about.get("tls-port")), answered_by)
            if address is None:
                continue
            role, health = _text(about.get("role", b"")), _text(about.get("health", b"online"))
            if role == "master" and primary is None:
                primary = address
            elif role != "master" and health == "online":
                replicas.append(address)
        if primary is None or not bounds:
            continue
        if not all(isinstance(b, int) for b in bounds):
            raise ProtocolError(f"redis-cluster: slot bounds {bounds!r} are not integers", backend=BACKEND)
        ranges = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
        assignments.append((Shard(primary, tuple(replicas)), ranges))
    return SlotTable(assignments)


def parse_slots(reply: Any, answered_by: Address) -> SlotTable:
    """A ``CLUSTER SLOTS`` reply as a ``SlotTable`` (one shard per primary, its ranges gathered)."""
    if not isinstance(reply, list):
        raise ProtocolError(f"redis-cluster: CLUSTER SLOTS replied {reply!r}", backend=BACKEND)
    by_primary: dict[Address, tuple[list[Address], list[tuple[int, int]]]] = {}
    for entry in reply:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], int)
                and isinstance(entry[1], int) and all(isinstance(n, list) and len(n) >= 2 for n in entry[2:])):
            raise ProtocolError(f"redis-cluster: a range of CLUSTER SLOTS is {entry!r}", backend=BACKEND)
        nodes = [_endpoint(_text(n[0]), n[1], answered_by) for n in entry[2:]]
        primary = nodes[0]
        if primary is None:
            continue
        replicas, ranges = by_primary.setdefault(primary, ([], []))
        ranges.append((entry[0], entry[1]))
        for replica in nodes[1:]:
            if replica is not None and replica not in replicas:
                replicas.append(replica)
    return SlotTable((Shard(primary, tuple(replicas)), ranges) for primary, (replicas, ranges) in by_primary.items())


# -- redirects -------------------------------------------------------------------------------------------

class RedirectKind(enum.Enum):
    MOVED = "MOVED"   # the slot lives elsewhere now: update the table
    ASK = "ASK"       # this one key is being migrated: ask the target once, table unchanged


@dataclass(frozen=True, slots=True)
class Redirect:
    kind: RedirectKind
    slot: int
    address: Address


def parse_redirect(message: str, answered_by: Address) -> Redirect | None:
    """``MOVED 3999 127.0.0.1:6381`` -> a ``Redirect``; None for any other error message.

    An empty host (``MOVED 3999 :6381``) is the host of the node that answered, and so is a
    loopback one when that node was reached at another address (see the rules above).
    """
    parts = message.split(" ")
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    try:
        slot, number = int(parts[1]), int(port)
    except ValueError:
        return None
    if not 0 <= slot < SLOTS:
        return None
    return Redirect(RedirectKind(parts[0]), slot, Address(_seen_from(host, answered_by), number))
