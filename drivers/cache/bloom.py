"""Bloom filters: "certainly absent" or "maybe present" for a key, in-process or shared through Redis.

Rules of this file:
- Two filters, the same verbs: ``might_contain(key)``, ``add(key)``, ``add_many(keys)``
  and ``rebuild(keys)``.  ``LocalBloom`` (rbloom's filter, in this process) answers
  synchronously; ``RedisBloom`` (a bitmap in Redis, shared by every process) is async.
  A filter never says absent for a key that was added (no false negatives); it says
  present for an absent key at about the configured rate.
- Keys are ``str`` and hashed as their UTF-8 bytes with xxh3, never with Python's
  ``hash()`` (salted per process): every process, on every machine, sets and reads
  the same bits for a key.  rbloom gets ``stable_hash`` as its hash function (its
  default would be ``hash()``).
- Sizes follow the standard formulas for ``capacity`` keys at ``error_rate``:
  m = ceil(-capacity * ln(error_rate) / ln(2)^2) bits and k = round(m / capacity * ln(2))
  hashes (``bloom_size``).  Past its capacity a filter still has no false negatives,
  but its false-positive rate grows: rebuild it larger.
- ``RedisBloom``'s k bit positions come from double hashing of the two 64-bit halves
  of the key's xxh3_128 hash: (h1 + i * h2) mod m, i < k, with h2 made odd
  (``bit_positions``, sans-I/O).  Its commands (GETBIT, SETBIT) go pipelined through
  ``RedisClient.batch``, a batch per up to ``chunk`` keys.  Every process using one
  Redis key must give the same capacity and error rate (``prepare`` checks the
  bitmap's size).
- ``rebuild(keys)`` builds a fresh filter from ``keys`` aside and swaps it in
  atomically: until the swap every check reads the old filter, after it the new
  one, never anything in between, so a key in both the old and the new set never
  tests absent during a refresh.  ``LocalBloom`` swaps one reference; on a running
  service use ``await bloom.refresh(keys)``, which builds the same way in chunks and lets
  the event loop run between them (a million keys hold the loop about 1 ms at a time,
  never 0.5 s at once); ``RedisBloom``
  writes a staging key and RENAMEs it over the filter (one command: readers in every
  process see the old bitmap or the new one).  Keys added in this process while
  a rebuild runs go into both filters, so they survive the swap; keys added by
  other processes during a ``RedisBloom`` rebuild are lost unless ``keys`` has them.
- The staging key ``<key>:rebuild:<token>`` expires ``staging_ttl_ms`` after its last
  write (a rebuild that died leaves nothing for long); the swap is RENAME then
  PERSIST in one write, so the live filter never keeps that expiry.
- Misuse (a capacity that is not a positive integer, a rate outside (0, 1), a
  bitmap past Redis's 2^32 bits, a second rebuild at once, a bitmap of other sizes)
  is an ``InterfaceError``; Redis's failures are the ``RedisClient``'s ``DriverError``s.

Measured (CPython 3.11, Redis 7 on localhost, 1% rate, k = 7; best of 5-7 runs, on a
2-core machine busy with other work: the Redis numbers are pessimistic and noisy):
``LocalBloom.might_contain`` 0.5-0.8 µs per key (rbloom with Python's salted ``hash()``:
0.1-0.2 µs; the stable hash is the rest), ``add_many`` 0.4 µs, ``add`` 1-2 µs (its
lock), ``rebuild`` 0.4-0.8 µs per key.  ``RedisBloom``, 10,000 keys in batches of 1,000:
``add_many`` and ``might_contain_many`` 50-130 µs per key (7 commands a key, each its
own future through the client; one BITFIELD_RO of 7 GETs a key measured 2-3x less in
the same runs); ``might_contain`` awaited alone 190-290 µs, a plain GET 70-230 µs.
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from rbloom import Bloom
from xxhash import xxh3_128_intdigest

from drivers.errors import DriverError, InterfaceError
from drivers.redis import RedisClient

_LN2 = math.log(2)
_MASK64 = (1 << 64) - 1
_HALF128 = 1 << 127
REDIS_MAX_BITS = 1 << 32   # a Redis string holds at most 512 MB


def bloom_size(capacity: int, error_rate: float) -> tuple[int, int]:
    """``(bits, hashes)`` for ``capacity`` keys at a false-positive rate of ``error_rate``."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise InterfaceError(f"cache: a Bloom filter's capacity is a positive int, not {capacity!r}",
                             backend="cache")
    if not isinstance(error_rate, float | int) or not 0 < error_rate < 1:
        raise InterfaceError(f"cache: a Bloom filter's error rate is between 0 and 1, not {error_rate!r}",
                             backend="cache")
    bits = math.ceil(-capacity * math.log(error_rate) / (_LN2 * _LN2))
    return bits, max(1, round(bits / capacity * _LN2))


def stable_hash(key: str) -> int:
    """The key's xxh3_128 hash as a signed 128-bit int (rbloom's range), the same in every process."""
    return xxh3_128_intdigest(key.encode()) - _HALF128


def bit_positions(key: str, bits: int, hashes: int) -> list[int]:
    """The ``hashes`` bit positions of ``key`` in a filter of ``bits`` bits (double hashing of xxh3_128's halves)."""
    h = xxh3_128_intdigest(key.encode())
    h1, h2 = h >> 64, (h & _MASK64) | 1
    return [(h1 + i * h2) % bits for i in range(hashes)]


def _chunks(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(keys)
    while chunk := list(islice(it, size)):
        yield chunk


class LocalBloom:
    """An in-process Bloom filter (rbloom) with a stable hash: ``LocalBloom(100_000, 0.01)``."""

    __slots__ = ("_bloom", "_journal", "_lock", "capacity", "error_rate")

    def __init__(self, capacity: int, error_rate: float) -> None:
        bloom_size(capacity, error_rate)   # checks both
        self.capacity = capacity
        self.error_rate = error_rate
        self._bloom = self._fresh()
        self._lock = threading.Lock()          # orders adds against a rebuild's swap
        self._journal: list[str] | None = None   # keys added while a rebuild runs

    def __repr__(self) -> str:
        return f"<LocalBloom capacity={self.capacity} error_rate={self.error_rate} bits={self.bits}>"

    def _fresh(self) -> Bloom:
        return Bloom(self.capacity, self.error_rate, stable_hash)

    @property
    def bits(self) -> int:
        return int(self._bloom.size_in_bits)

    def might_contain(self, key: str) -> bool:
        """False when ``key`` was certainly never added; True when it may have been."""
        return key in self._bloom

    __contains__ = might_contain

    def to_bytes(self) -> bytes:
        """The filter's bits in rbloom's format: the same bytes in every process for the same keys."""
        return bytes(self._bloom.save_bytes())

    def add(self, key: str) -> None:
        with self._lock:
            self._bloom.add(key)
            if self._journal is not None:
                self._journal.append(key)

    def add_many(self, keys: Iterable[str]) -> None:
        keys = keys if isinstance(keys, Sequence) else list(keys)
        with self._lock:
            self._bloom.update(keys)
            if self._journal is not None:
                self._journal.extend(keys)

    def rebuild(self, keys: Iterable[str]) -> None:
        """Replace the filter by one holding ``keys`` (and what is added meanwhile), swapped in at once.

        Checks go on meanwhile, from any thread, against the old filter.
        """
        fresh = self._begin()
        try:
            fresh.update(keys)
        except BaseException:
            self._abort()
            raise
        self._swap(fresh)

    async def refresh(self, keys: Iterable[str], *, chunk: int = 2_000) -> None:
        """``rebuild`` for a running event loop: ``chunk`` keys at a time, the loop running in between."""
        fresh = self._begin()
        try:
            for part in _chunks(keys, chunk):
                fresh.update(part)
                await asyncio.sleep(0)
        except BaseException:
            self._abort()
            raise
        self._swap(fresh)

    def _begin(self) -> Bloom:
        """A rebuild starts: adds from now on are also noted; the new, empty filter."""
        with self._lock:
            if self._journal is not None:
                raise InterfaceError("cache: this Bloom filter is being rebuilt already", backend="cache")
            self._journal = []
        return self._fresh()

    def _abort(self) -> None:
        with self._lock:
            self._journal = None

    def _swap(self, fresh: Bloom) -> None:
        """The new filter, with the adds made while it was built, replaces the old one at once."""
        with self._lock:
            fresh.update(self._journal or ())
            self._bloom = fresh
            self._journal = None


class RedisBloom:
    """A Bloom filter in a Redis bitmap shared by every process: ``RedisBloom(client, "users:bloom", 10**6, 0.01)``."""

    def __init__(self, client: RedisClient, key: str, capacity: int, error_rate: float, *,
                 chunk: int = 1000, staging_ttl_ms: int = 600_000) -> None:
        bits, hashes = bloom_size(capacity, error_rate)
        if bits >= REDIS_MAX_BITS:
            raise InterfaceError(f"cache: a Redis Bloom filter of {capacity} keys at {error_rate} needs {bits} "
                                 f"bits, over Redis's {REDIS_MAX_BITS}", backend="cache")
        if chunk < 1 or staging_ttl_ms < 1:
            raise InterfaceError("cache: a Redis Bloom filter's chunk and staging_ttl_ms are positive",
                                 backend="cache")
        self.client = client
        self.key = key
        self.capacity = capacity
        self.error_rate = error_rate
        self.bits = bits
        self.hashes = hashes
        self.chunk = chunk
        self.staging_ttl_ms = staging_ttl_ms
        self._staging: str | None = None   # the key a rebuild in this process is writing

    def __repr__(self) -> str:
        return f"<RedisBloom {self.key} bits={self.bits} hashes={self.hashes}>"

    @property
    def _size_bytes(self) -> int:
        return self.bits // 8 + 1   # bits 0..m-1 and the padding bit m, which marks the size

    async def prepare(self) -> None:
        """Create the bitmap at its full size; an ``InterfaceError`` if it exists with other sizes."""
        size = await self.client.command("STRLEN", self.key, idempotent=True)
        if size == 0:
            # Sets the padding bit (never a key's) to 0: harmless when another process just did the same.
            await self.client.command("SETBIT", self.key, self.bits, 0, idempotent=True)
        elif size != self._size_bytes:
            raise InterfaceError(f"cache: the Bloom filter at {self.key!r} is {size} bytes, not the "
                                 f"{self._size_bytes} of {self.capacity} keys at {self.error_rate}: "
                                 "every process must build it with the same sizes", backend="cache")

    async def might_contain(self, key: str) -> bool:
        """False when ``key`` was certainly never added; True when it may have been."""
        replies = await self.client.batch([("GETBIT", self.key, p) for p in self._positions(key)],
                                          op="bloom_check", idempotent=True)
        return all(replies)

    async def might_contain_many(self, keys: Sequence[str]) -> list[bool]:
        """``might_contain`` of each key, in their order, a batch per ``chunk`` keys."""
        answers: list[bool] = []
        k = self.hashes
        for chunk in _chunks(keys, self.chunk):
            replies = await self.client.batch([("GETBIT", self.key, p) for key in chunk
                                               for p in self._positions(key)], op="bloom_check", idempotent=True)
            answers += [all(replies[i:i + k]) for i in range(0, len(replies), k)]
        return answers

    async def add(self, key: str) -> None:
        await self.add_many((key,))

    async def add_many(self, keys: Iterable[str]) -> None:
        """Set the keys' bits (in this filter, and in a rebuild's staging filter while one runs here)."""
        for chunk in _chunks(keys, self.chunk):
            positions = [p for key in chunk for p in self._positions(key)]
            commands: list[tuple[str | int, ...]] = []
            staging = self._staging
            if staging is not None:
                # The staging filter's bits first, the live one's last: wherever the swap falls
                # between them (a reconnect can split a batch), every bit lands in the filter
                # that is live after it.  Sent after the swap, they make a stray copy: it expires.
                commands += [("SETBIT", staging, p, 1) for p in positions]
                commands.append(("PEXPIRE", staging, self.staging_ttl_ms))
            commands += [("SETBIT", self.key, p, 1) for p in positions]
            await self.client.batch(commands, op="bloom_add", idempotent=True)

    async def rebuild(self, keys: Iterable[str]) -> None:
        """Replace the filter by one holding ``keys`` (and what this process adds meanwhile), swapped in at once."""
        if self._staging is not None:
            raise InterfaceError(f"cache: the Bloom filter at {self.key!r} is being rebuilt already", backend="cache")
        staging = self._staging = f"{self.key}:rebuild:{uuid.uuid4().hex}"
        ttl = self.staging_ttl_ms
        try:
            await self.client.batch([("SETBIT", staging, self.bits, 0), ("PEXPIRE", staging, ttl)],
                                    op="bloom_rebuild", idempotent=True)
            for chunk in _chunks(keys, self.chunk):
                commands: list[tuple[str | int, ...]] = [
                    ("SETBIT", staging, p, 1) for key in chunk for p in self._positions(key)]
                commands.append(("PEXPIRE", staging, ttl))
                await self.client.batch(commands, op="bloom_rebuild", idempotent=True)
        except BaseException:
            self._staging = None
            try:
                await self.client.command("UNLINK", staging, idempotent=True)
            except DriverError:
                pass   # it expires on its own
            raise
        self._staging = None   # adds from now on go to the live key only, queued after the swap
        await self.client.batch([("RENAME", staging, self.key), ("PERSIST", self.key)], op="bloom_swap")

    async def clear(self) -> None:
        """Remove the filter (every key tests absent until added again)."""
        await self.client.command("UNLINK", self.key, idempotent=True)

    def _positions(self, key: str) -> list[int]:
        return bit_positions(key, self.bits, self.hashes)
