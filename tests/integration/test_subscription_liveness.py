"""The Redis subscription's liveness PING against the real Redis, behind a proxy whose links go silent.

docs/websocket.md: "A PING every ``redis.subscription.health_interval_s`` finds a dead connection; no
PONG within ``health_timeout_s`` closes it, and it is reconnected."  A peer that vanished without a
FIN is what the proxy's ``half_open()`` makes: nothing is read or written and nothing is closed, so
only the PING can tell.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import redis.asyncio as aredis

from app.settings import Settings
from drivers.redis import Subscriber, SubscriptionConfig
from drivers.retry import Backoff
from tests.integration.test_redis_pubsub import PREFIX, Inbox
from tests.support.proxy import Proxy

INTERVAL_S, TIMEOUT_S = 0.3, 0.3


async def test_a_silent_subscription_is_found_by_its_ping_closed_and_subscribed_again(settings: Settings) -> None:
    channel = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    plain = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    async with Proxy((settings.redis.host, settings.redis.port)) as proxy:
        config = dataclasses.replace(
            settings.redis, port=proxy.port,
            subscription=SubscriptionConfig(health_interval_s=INTERVAL_S, health_timeout_s=TIMEOUT_S,
                                            reconnect=Backoff(0.01, 0.1)))
        box = Inbox()
        sub = Subscriber(config)
        sub.listen(PREFIX, box)
        await sub.start()
        try:
            await sub.subscribe(channel)
            await plain.publish(channel, "before")
            await box.wait_for(1)
            proxy.half_open()
            began = time.monotonic()
            while sub.connected and time.monotonic() - began < 5:
                await asyncio.sleep(0.01)
            found_after = time.monotonic() - began
            assert not sub.connected
            assert found_after < INTERVAL_S + TIMEOUT_S + 0.7, found_after   # the PING found it, not a FIN
            proxy.normal()
            async with asyncio.timeout(5):
                while not box.resubscribed:
                    await asyncio.sleep(0.01)
            assert box.resubscribed[-1] == [channel]
            await plain.publish(channel, "after")
            await box.wait_for(2)
            assert [payload for _, payload in box.messages] == [b"before", b"after"]
            assert sub.stats()["reconnects"] >= 1
        finally:
            await sub.aclose()
            await plain.aclose()
