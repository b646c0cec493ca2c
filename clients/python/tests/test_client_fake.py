"""Unit tests of the connection loop against a scripted local `websockets` server."""

import asyncio
import json
import logging
from typing import List

import pytest

import fanline
from fanline import Backoff, Gap, Reset, State

from fake_server import FakeServer, ack, event, hold, welcome


class Upper:
    """An rng whose "uniform" is always the upper bound: delays equal the backoff ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def collect(sub: fanline.Subscription, n: int, timeout: float = 5.0) -> List[fanline.Event]:
    out: List[fanline.Event] = []

    async def go() -> None:
        async for ev in sub:
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(go(), timeout)
    return out


async def test_malformed_frames_are_logged_and_the_client_reconnects(caplog):
    caplog.set_level(logging.WARNING, logger="fanline")
    bad = [b"\x00\x01binary", "not json{", "[1,2]", json.dumps({"channel": "c"}),
           event("c", "no-offset"), json.dumps({"type": "gap", "channel": "c", "dropped": "x"})]

    async def handler(s: FakeServer, conn, n: int) -> None:
        if n == 1:
            await conn.send(json.dumps({"type": "hello"}))  # not a welcome
            await hold(conn, 5)
            return
        await conn.send(welcome(f"c{n}"))
        await ack(s, conn)
        if n - 2 < len(bad):
            await conn.send(bad[n - 2])
        else:
            await conn.send(event("c", "t/0/1", {"ok": True}))
        await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.01, 0.05)) as c:
            got = await collect(c.subscribe("c"), 1, timeout=10)
            assert [e.id for e in got] == ["t/0/1"] and got[0].data == {"ok": True}
            assert c.malformed == 1 + len(bad)
            assert c.connects == len(bad) + 1
            assert c.state == State.OPEN and c.connection_id == f"c{len(bad) + 2}"
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1 + len(bad)


async def test_resubscribe_builds_since_with_epoch_and_surfaces_reset_and_gap():
    resets: List[Reset] = []
    gaps: List[Gap] = []

    async def handler(s: FakeServer, conn, n: int) -> None:
        if n == 1:
            await conn.send(welcome("a"))
            await ack(s, conn)
            for eid in ["t/0/5", "t/1/7", "t/0/6", "t/0/6", "t/0/2"]:
                await conn.send(event("c", eid))
            await conn.send(json.dumps({"type": "gap", "channel": "c", "dropped": 3, "reason": "slow_consumer"}))
            await conn.close(1012)
        elif n == 2:
            await conn.send(welcome("b", epoch="E1"))
            await ack(s, conn, recovered=True, replayed=0)
            await conn.send(event("c", "t/2/1"))
            await conn.close(1001)
        else:
            await conn.send(welcome("c", epoch="E2"))
            await ack(s, conn, recovered=False, reason="epoch_changed")
            await conn.send(event("c", "t/0/0"))
            await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.01, 0.05)) as c:
            sub = c.subscribe("c", filter={"severity": ["high"]}, on_gap=gaps.append, on_reset=resets.append)
            got = await collect(sub, 5)
            subs = [m for m in s.received if m["type"] == "subscribe"]
            assert [m.get("since") for m in subs] == [
                None,
                {"t/0": 6, "t/1": 7},  # no epoch: the first connection announced none
                {"t/0": 6, "t/1": 7, "t/2": 1, "epoch": "E1"},
            ]
            assert all(m["filter"] == {"severity": ["high"]} and m["channels"] == ["c"] for m in subs)
            assert [e.id for e in got] == ["t/0/5", "t/1/7", "t/0/6", "t/2/1", "t/0/0"]
            await asyncio.sleep(0.05)
            assert gaps == [Gap("c", 3, "slow_consumer")]
            assert resets == [Reset("c", "epoch_changed", {"t/0": 6, "t/1": 7, "t/2": 1, "epoch": "E1"})]
            assert sub.dropped == 3 and sub.resets == 1
            assert sub.since == {"t/0": 0, "epoch": "E2"}


async def test_token_provider_is_called_per_attempt_and_its_failures_back_off():
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("auth server down")
        return f"t{calls}"

    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome(f"c{n}"))
        if n == 1:
            await conn.close(1001)
        else:
            await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, token=token, backoff=Backoff(0.05, 0.2, rng=Upper())) as c:  # type: ignore[arg-type]
            assert await c.wait_open(5)
            while s.connections < 2:
                await asyncio.sleep(0.01)
            assert await c.wait_open(5)
            assert c.failures == 2  # the two provider failures
            assert s.auth == ["Bearer t3", "Bearer t4"]
            assert calls == 4


async def test_retry_after_on_a_rejected_handshake_is_honoured():
    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome())
        await hold(conn)

    def reject(attempt: int):
        return (503, {"Retry-After": "1"}) if attempt == 1 else None

    async with FakeServer(handler, reject=reject) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.01, 0.02)) as c:
            assert await c.wait_open(5)
            gap = s.attempt_times[1] - s.attempt_times[0]
            assert 1.0 <= gap < 1.5, gap


@pytest.mark.parametrize("code,grows", [(1013, True), (1001, False)])
async def test_close_1013_backs_off_further_but_a_normal_close_does_not(code, grows):
    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome(f"c{n}"))
        if n <= 4:
            await conn.close(code)
        else:
            await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.1, 10, rng=Upper())) as c:  # type: ignore[arg-type]
            assert await c.wait_open(5)
            while s.connections < 5:
                await asyncio.sleep(0.01)
            t = s.attempt_times
            gaps = [b - a for a, b in zip(t, t[1:])]
            if grows:  # 0.1, 0.2, 0.4, 0.8
                assert gaps[3] > 0.7 and gaps[2] > 0.35, gaps
            else:  # 0.1 each
                assert max(gaps) < 0.3, gaps
            assert c.last_close_code == code


async def test_heartbeat_watchdog_drops_a_silent_peer():
    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome(f"c{n}", heartbeat_ms=200))
        if n == 1:
            conn.transport.pause_reading()  # alive TCP, but never answers a ping
            await hold(conn, 1.5)
            conn.transport.abort()  # its reads are paused: no close handshake to wait for
            return
        await hold(conn, 10)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.01, 0.02)) as c:
            assert await c.wait_open(5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while s.connections < 2 and loop.time() - t0 < 3:
                await asyncio.sleep(0.01)
            assert s.connections == 2, "no reconnect after a silent peer"
            assert loop.time() - t0 < 1.0
            await asyncio.sleep(0.6)  # the healthy peer answers pings: no further reconnect
            assert s.connections == 2 and c.connection_id == "c2"


async def test_subscription_error_is_raised_to_the_iterator_and_close_ends_iteration():
    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome())
        m = await s.recv_json(conn)
        await conn.send(json.dumps({"type": "error", "id": m["id"], "code": "forbidden_channel", "message": "no"}))
        await ack(s, conn)
        await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url) as c:
            bad = c.subscribe("secret")
            with pytest.raises(fanline.SubscriptionError) as e:
                await asyncio.wait_for(bad.__anext__(), 5)
            assert e.value.code == "forbidden_channel"
            ok = c.subscribe("open")
            assert await c.wait_open(5)
            waiter = asyncio.ensure_future(collect(ok, 1))
        assert await asyncio.wait_for(waiter, 1) == []  # closing the client ends iteration
        assert c.state == State.CLOSED


async def test_a_subscription_that_received_nothing_resubscribes_with_an_empty_cursor():
    async def handler(s: FakeServer, conn, n: int) -> None:
        await conn.send(welcome(f"c{n}", epoch="E1" if n >= 2 else None))
        await ack(s, conn, **({} if n == 1 else {"recovered": True, "replayed": 0}))
        if n <= 2:
            await conn.close(1012)
        else:
            await hold(conn)

    async with FakeServer(handler) as s:
        async with fanline.Client(s.url, backoff=Backoff(0.01, 0.02)) as c:
            c.subscribe("quiet")
            while s.connections < 3:
                await asyncio.sleep(0.01)
            assert await c.wait_open(5)
            # First: no since. Then an empty cursor (the server proves or answers recovered:false),
            # with the epoch once one was acknowledged.
            assert [m.get("since") for m in s.received] == [None, {}, {"epoch": "E1"}]
