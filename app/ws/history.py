"""Channel history in Redis Streams, and publishing: one Lua script adds, trims and publishes atomically.

A channel ``news`` keeps its recent messages in the stream ``<prefix>news`` (field
``d``: the message's JSON) and is published on the pub/sub channel ``<prefix>news``
as ``"<id> <json>"``.  Adding to the stream and publishing happen in one script, so
messages reach subscribers in the order of their ids, whichever process published.

The stream is bounded: at most ``size`` entries (exact trimming), none older than
``ttl_ms``, and the key itself expires ``ttl_ms`` after the last publish.

Each entry also records the id of the entry before it (field ``p``): a replay
after a client's last seen id is complete ("recovered") when its first entry
names that id as its predecessor, i.e. trimming took nothing in between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from app.ws.protocol import StreamId
from drivers.errors import BackendError
from drivers.redis import PipelinedRedis

_PUBLISH = b"""
local prev = '0-0'
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if newest[1] then
  prev = newest[1][1]
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do if info[i] == 'last-generated-id' then prev = info[i + 1] end end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'p', prev, 'd', ARGV[2])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', oldest))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
"""

_READ = b"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last = '0-0'
for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end
local entries = {}
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2]) end
return {last, entries}
"""


@dataclass(frozen=True, slots=True)
class Replay:
    """What a stream holds after a given id."""

    exists: bool
    last: StreamId | None                         # the newest id ever added (None: no stream)
    recovered: bool                               # nothing after ``since`` was trimmed away
    entries: list[tuple[StreamId, bytes, bytes]]  # (id, id text, data JSON), oldest first


class History:
    """The streams and the publish script, on the process's pipelined Redis connection."""

    def __init__(self, redis: PipelinedRedis, *, prefix: str, size: int, ttl_s: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.size = size
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._sha = {script: hashlib.sha1(script).hexdigest() for script in (_PUBLISH, _READ)}

    def key(self, channel: str) -> str:
        return self.prefix + channel

    async def _script(self, script: bytes, key: str, *args: str | int | bytes) -> Any:
        """EVALSHA, and EVAL once when Redis does not have the script yet (after a restart, say)."""
        try:
            return await self.redis.execute("EVALSHA", self._sha[script], 1, key, *args)
        except BackendError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
        return await self.redis.execute("EVAL", script, 1, key, *args)

    async def publish(self, channel: str, data: bytes) -> str:
        """Add ``data`` (JSON text) to the channel's stream and publish it; the message id.

        Not retried: a lost reply does not say whether Redis ran the script.
        """
        key = self.key(channel)
        reply = await self._script(_PUBLISH, key, key, data, self.size, self.ttl_ms)
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def replay(self, channel: str, since: StreamId | None) -> Replay:
        """The stream's newest id, and with ``since`` the entries after it and whether that is all of them."""
        reply = await self._script(_READ, self.key(channel), "" if since is None else str(since), self.size + 1)
        last_raw: bytes
        raw_entries: list[list[Any]]
        last_raw, raw_entries = reply
        if not last_raw:
            return Replay(False, None, since is None, [])
        last = StreamId.parse(last_raw)
        entries, first_prev = [], None
        for raw_id, fields in raw_entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            if first_prev is None:
                first_prev = values.get(b"p", b"")
            entries.append((StreamId.parse(raw_id), raw_id, values.get(b"d", b"null")))
        if since is None:
            recovered = True
        elif first_prev is None:
            recovered = last <= since           # nothing after since: complete unless it was all trimmed
        else:
            recovered = first_prev == str(since).encode()
        return Replay(True, last, recovered, entries)
