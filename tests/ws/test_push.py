"""/ws against the real stack: fan-out across processes, resume, slow consumers, bad input, Redis restarts."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import time
from typing import Any

import pytest
import redis.asyncio as aredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.settings import Settings
from app.ws.tokens import make_token
from tests.conftest import ServerProcess, run_app, run_stack_async, start_server
from tests.service.http import call
from tests.ws.conftest import (
    CHANNEL_SECRET,
    WS_ENV,
    Client,
    channel_name,
    publish,
    publish_async,
    ws_url,
)


async def until_metric(server: ServerProcess, name: str, at_least: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, text = await asyncio.to_thread(call, server.url + "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") and float(line.split(" ")[1]) >= at_least:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not reach {at_least} within {timeout:g} s")


def ids_increase(messages: list[dict[str, Any]]) -> bool:
    keys = [tuple(int(p) for p in m["id"].split("-")) for m in messages]
    return all(a < b for a, b in itertools.pairwise(keys))


async def test_every_subscriber_on_every_worker_gets_each_message_once_in_order(stack: None) -> None:
    workers = start_server("--workers", "2", env=WS_ENV)
    publisher = start_server(env=WS_ENV)
    clients: list[Client] = []
    try:
        # SO_REUSEPORT spreads new connections over the workers: open until both hold two.
        by_worker: dict[str, list[Client]] = {}
        for _ in range(60):
            client = await Client.open(workers)
            clients.append(client)
            by_worker.setdefault(str(client.served_by), []).append(client)
            if len(by_worker) == 2 and all(len(c) >= 2 for c in by_worker.values()):
                break
        assert len(by_worker) == 2, f"all connections went to {list(by_worker)}"
        channel = channel_name("fan")
        for client in clients:
            await client.subscribe(channel)
        for i in range(40):
            await publish_async(publisher, channel, {"n": i})
        for client in clients:
            got = await client.messages(40)
            assert [m["data"]["n"] for m in got] == list(range(40))
            assert ids_increase(got)
            assert {m["channel"] for m in got} == {channel}
        for client in clients:
            await client.nothing_more()
    finally:
        for client in clients:
            await client.close()
        workers.stop()
        publisher.stop()


async def test_a_client_resumes_from_its_last_id_then_gets_live_messages(push_server: ServerProcess) -> None:
    channel = channel_name("resume")
    client = await Client.open(push_server)
    await client.subscribe(channel)
    await publish_async(push_server, channel, "first")
    [first] = await client.messages(1)
    await client.close()
    missed = [await publish_async(push_server, channel, f"missed {i}") for i in range(3)]

    client = await Client.open(push_server)
    try:
        reply = await client.subscribe(channel, since=first["id"])
        assert (reply["recovered"], reply["replayed"]) == (True, 3)
        replayed = await client.messages(3)
        assert [m["id"] for m in replayed] == missed
        assert [m["data"] for m in replayed] == ["missed 0", "missed 1", "missed 2"]
        live_id = await publish_async(push_server, channel, "live")
        [live] = await client.messages(1)
        assert (live["id"], live["data"]) == (live_id, "live")
        await client.nothing_more()
    finally:
        await client.close()


async def test_resuming_while_messages_keep_coming_has_no_gap_and_no_duplicate(push_server: ServerProcess) -> None:
    channel = channel_name("busy")
    watcher = await Client.open(push_server)
    await watcher.subscribe(channel)
    total = 150

    async def keep_publishing() -> None:
        for i in range(total):
            await publish_async(push_server, channel, i)

    publishing = asyncio.create_task(keep_publishing())
    try:
        seen = await watcher.messages(30)
        resume_from = seen[-1]
        client = await Client.open(push_server)
        reply = await client.subscribe(channel, since=resume_from["id"])
        assert reply["recovered"] is True
        await publishing
        rest = await client.messages(total - 30)
        assert [m["data"] for m in rest] == list(range(30, total))
        assert ids_increase(rest)
        await client.nothing_more()
        await client.close()
        seen += await watcher.messages(total - 30)
        assert [m["data"] for m in seen] == list(range(total))
    finally:
        publishing.cancel()
        await watcher.close()


async def test_a_resume_beyond_the_history_window_says_it_is_not_complete(stack: None) -> None:
    srv = start_server(env={**WS_ENV, "ASYNCSTACK_WS__HISTORY_SIZE": "3"})
    channel = channel_name("window")
    try:
        first = await publish_async(srv, channel, 0)
        later = [await publish_async(srv, channel, i) for i in range(1, 6)]
        client = await Client.open(srv)
        reply = await client.subscribe(channel, since=first)
        assert (reply["recovered"], reply["replayed"]) == (False, 3)
        assert [m["id"] for m in await client.messages(3)] == later[-3:]
        await client.close()
    finally:
        srv.stop()


async def test_a_stalled_consumer_is_closed_with_1013_and_the_healthy_one_keeps_up(stack: None) -> None:
    srv = start_server(env={**WS_ENV, "ASYNCSTACK_WS__MAX_BUFFER_BYTES": str(256 * 1024),
                            "ASYNCSTACK_WS__MAX_MESSAGE_BYTES": str(1 << 20)})
    channel = channel_name("slow")
    # The stalled client's kernel receive buffer is small and it never reads: the server's buffer fills.
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    stalled = Client(await connect(ws_url(srv), sock=sock, max_queue=1))
    healthy = await Client.open(srv, max_size=None)
    try:
        await stalled.subscribe(channel)
        await healthy.subscribe(channel)
        blob = "x" * 100_000
        count = 120   # 12 MB: more than the kernel buffers and the 256 KB limit together
        began = time.monotonic()

        async def publish_all() -> None:
            for i in range(count):
                await publish_async(srv, channel, {"n": i, "blob": blob})

        publishing = asyncio.create_task(publish_all())
        receiving = asyncio.create_task(healthy.messages(count, timeout=30))
        # The stalled client reads again once the server gave up on it: it finds what was buffered, then 1013.
        # (Tornado drops a connection whose closing handshake takes over 5 s, so it must not wait long.)
        await until_metric(srv, "ws_slow_consumer_disconnects_total", 1)
        received = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                async with asyncio.timeout(10):
                    await stalled.conn.recv()
                received += 1
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert closed.value.rcvd.code == 1013
        got = await receiving
        await publishing
        assert [m["data"]["n"] for m in got] == list(range(count))
        assert time.monotonic() - began < 30
        assert received < count
        srv.stop()
        log = srv.stderr()
        assert log.count("closing slow WebSocket consumer") == 1, log
    finally:
        await healthy.close()
        await stalled.close()
        srv.stop()


# Every message the parser refuses is in tests/ws/test_protocol.py; here one of them shows the
# parser's refusal reaching the client, and the others are refusals only the hub can make.
@pytest.mark.parametrize(("message", "code"), [
    ("{not json", "bad_json"),
    ({"op": "unsubscribe", "channel": "never-joined"}, "not_subscribed"),
    ({"op": "subscribe", "channel": "private:alice"}, "forbidden"),
])
async def test_bad_input_gets_an_error_frame_and_the_connection_keeps_working(
        push_server: ServerProcess, message: Any, code: str) -> None:
    client = await Client.open(push_server)
    try:
        await client.send(message)
        reply = await client.recv()
        assert (reply["type"], reply["code"]) == ("error", code), reply
        assert reply["message"]
        channel = channel_name("after-error")
        await client.subscribe(channel)
        msg_id = await publish_async(push_server, channel, "still here")
        [msg] = await client.messages(1)
        assert msg["id"] == msg_id
    finally:
        await client.close()


async def test_a_valid_token_opens_a_private_channel(push_server: ServerProcess) -> None:
    channel = "private:" + channel_name("user")
    client = await Client.open(push_server)
    try:
        await client.subscribe(channel, token=make_token(CHANNEL_SECRET, channel, 60))
        msg_id = await publish_async(push_server, channel, {"for": "you"})
        [msg] = await client.messages(1)
        assert (msg["id"], msg["data"]) == (msg_id, {"for": "you"})
    finally:
        await client.close()


async def test_a_token_from_the_command_line_opens_a_private_channel(push_server: ServerProcess) -> None:
    channel = "private:" + channel_name("cli")
    made = await asyncio.to_thread(run_app, "ws-token", channel, "--ttl", "60",
                                   env={"ASYNCSTACK_WS__CHANNEL_SECRET": CHANNEL_SECRET})
    assert made.returncode == 0, made.stderr
    client = await Client.open(push_server)
    try:
        await client.subscribe(channel, token=made.stdout.strip())
        await client.send({"op": "subscribe", "channel": "private:" + channel_name("other"),
                           "token": made.stdout.strip()})
        refused = await client.recv()
        assert (refused["code"], refused["message"]) == ("forbidden", "bad token for this channel")
    finally:
        await client.close()


async def test_subscribing_twice_and_unsubscribing(push_server: ServerProcess) -> None:
    channel = channel_name("twice")
    client = await Client.open(push_server)
    try:
        await client.subscribe(channel)
        await client.send({"op": "subscribe", "channel": channel})
        assert (await client.recv())["code"] == "already_subscribed"
        await client.send({"op": "unsubscribe", "channel": channel})
        assert await client.recv() == {"type": "unsubscribed", "channel": channel}
        await publish_async(push_server, channel, "gone")
        await client.nothing_more()
    finally:
        await client.close()


async def test_an_oversized_frame_closes_with_1009_and_others_are_served(stack: None) -> None:
    srv = start_server(env={**WS_ENV, "ASYNCSTACK_WS__MAX_MESSAGE_BYTES": "1024"})
    try:
        big = await Client.open(srv)
        await big.send(json.dumps({"op": "subscribe", "channel": "x" * 2000}))
        with pytest.raises(ConnectionClosed) as closed:
            await big.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        other = await Client.open(srv)
        await other.subscribe(channel_name("fine"))
        await other.close()
    finally:
        srv.stop()


async def test_a_foreign_origin_is_refused_at_the_handshake(push_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(ws_url(push_server), origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    same = await connect(ws_url(push_server), origin=f"http://127.0.0.1:{push_server.port}")  # type: ignore[arg-type]
    await same.close()


def test_publish_needs_the_token_a_valid_channel_and_json(push_server: ServerProcess) -> None:
    channel = channel_name("pub")
    assert publish(push_server, channel, 1, token="wrong")[0] == 401
    status, _, body = call(f"{push_server.url}/publish/{channel}", "POST", raw=b"{oops",
                           headers={"Content-Type": "application/json",
                                    "Authorization": f"Bearer {WS_ENV['ASYNCSTACK_WS__PUBLISH_TOKEN']}"})
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = publish(push_server, "bad!channel", 1)
    assert status == 400 and "bad channel" in body["error"]
    status, body = publish(push_server, channel, {"ok": True})
    assert status == 200 and body["channel"] == channel and body["id"]


def test_publishing_over_http_is_off_without_a_token(server: ServerProcess) -> None:
    status, body = publish(server, "news", 1)
    assert status == 403
    assert "ASYNCSTACK_WS__PUBLISH_TOKEN" in body["error"]


async def test_subscribers_keep_receiving_after_redis_restarts(push_server: ServerProcess) -> None:
    channel = channel_name("restart")
    client = await Client.open(push_server)
    try:
        await client.subscribe(channel)
        await publish_async(push_server, channel, "before")
        assert [m["data"] for m in await client.messages(1)] == ["before"]
        stopped = await run_stack_async("down", "redis")
        assert stopped.returncode == 0, stopped.stderr
        status, _ = await asyncio.to_thread(publish, push_server, channel, "while down")
        assert status == 503
        started = await run_stack_async("up", "redis")
        assert started.returncode == 0, started.stdout + started.stderr
        # The subscription reconnects in the background (backoff capped at 2 s); publish until it is back.
        deadline = time.monotonic() + 20
        got: list[dict[str, Any]] = []
        while not got and time.monotonic() < deadline:
            status, _ = await asyncio.to_thread(publish, push_server, channel, "after")
            if status == 200:
                try:
                    got = await client.messages(1, timeout=1)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0.2)
        assert [m["data"] for m in got] == ["after"]
        fresh = await Client.open(push_server)
        await fresh.subscribe(channel_name("fresh"))
        await fresh.close()
    finally:
        await client.close()


async def test_shutdown_closes_every_websocket_with_1001(stack: None) -> None:
    srv = start_server(env=WS_ENV)
    clients = [await Client.open(srv) for _ in range(5)]
    for client in clients:
        await client.subscribe(channel_name("bye"))
    srv.proc.send_signal(signal.SIGTERM)
    for client in clients:
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(srv.proc.wait, 15) == 0


async def ws_metrics(server: ServerProcess) -> dict[str, float]:
    """The ``ws_*`` metrics, once the sampler (every 0.25 s) has copied the hub's numbers of now."""
    await asyncio.sleep(0.4)
    _, _, text = await asyncio.to_thread(call, server.url + "/metrics")
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("ws_")}


async def test_metrics_count_connections_subscriptions_and_frames(push_server: ServerProcess) -> None:
    # Earlier tests on this server already pushed every counter past small numbers: compare deltas.
    channel = channel_name("metrics")
    before = await ws_metrics(push_server)
    clients = [await Client.open(push_server) for _ in range(3)]
    try:
        for client in clients:
            await client.subscribe(channel)
        await publish_async(push_server, channel, 1)
        for client in clients:
            await client.messages(1)
        during = await ws_metrics(push_server)
    finally:
        for client in clients:
            await client.close()
    after = await ws_metrics(push_server)

    def delta(name: str, later: dict[str, float] = during) -> float:
        return later[name] - before[name]

    assert delta("ws_connections") == 3
    assert delta("ws_subscriptions") == 3
    assert delta("ws_redis_channels") == 1
    assert during["ws_redis_subscription_connected"] == 1
    assert delta("ws_frames_out_total") == 3            # one message, three subscribers
    assert delta("ws_messages_in_total") == 1
    assert delta("ws_published_total") == 1
    assert delta("ws_slow_consumer_disconnects_total") == 0
    assert (delta("ws_connections", after), delta("ws_subscriptions", after)) == (0, 0)


async def test_a_steady_stream_of_messages_survives_the_reconnection_whole_and_in_order(
        push_server: ServerProcess, settings: Settings) -> None:
    """Publishers keep going through the loss: messages come on the new connection right after its
    SUBSCRIBE is acknowledged, while the catch-up has not read the stream yet.  They must wait for
    it, or the gap's messages would be dropped as older than what was already delivered."""
    channel = channel_name("steady")
    client = await Client.open(push_server)
    plain = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    publishers, each = 4, 60
    try:
        await client.subscribe(channel)

        async def publisher(k: int) -> None:
            for i in range(each):
                await publish_async(push_server, channel, k * each + i)

        tasks = [asyncio.create_task(publisher(k)) for k in range(publishers)]
        first = await client.messages(8)
        assert await plain.client_kill_filter(_type="pubsub", skipme=True) >= 1
        await asyncio.gather(*tasks)
        rest = await client.messages(publishers * each - 8, timeout=15)
    finally:
        await plain.aclose()
    try:
        got = [m["data"] for m in first + rest]
        assert sorted(got) == list(range(publishers * each)), "a message came twice"
        assert ids_increase(first + rest)
        await client.nothing_more()
    finally:
        await client.close()


async def test_messages_published_while_the_subscription_reconnects_arrive_once_in_order(
        push_server: ServerProcess, settings: Settings) -> None:
    channel = channel_name("gap")
    client = await Client.open(push_server)
    plain = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        await client.subscribe(channel)
        await publish_async(push_server, channel, 0)
        await client.messages(1)
        # Drop the server's pub/sub connection (Redis keeps running, and the streams with it),
        # then publish straight away: some messages go out while nobody is subscribed.
        assert await plain.client_kill_filter(_type="pubsub", skipme=True) >= 1
        for i in range(1, 41):
            await publish_async(push_server, channel, i)
        got = await client.messages(40, timeout=15)
        assert [m["data"] for m in got] == list(range(1, 41))
        assert ids_increase(got)
        await client.nothing_more()
    finally:
        await plain.aclose()
        await client.close()
