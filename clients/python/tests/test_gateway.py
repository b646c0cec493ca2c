"""Integration tests against the real gateway binary (target/release/fanline): publish with the
admin `POST /v1/publish` on keys spread over 3 partitions, cut the client's TCP connection while
events are being published, and check exact delivery: no duplicate, per-partition order, and
delivered + reported dropped == published."""

import asyncio
from collections import defaultdict
from typing import Dict, List, Tuple


import fanline
from fanline import Backoff, Gap, Reset, State

from gateway import Gateway, Proxy, http, publish

KEYS = [f"k{i}" for i in range(9)]


class Upper:
    """An rng whose "uniform" is the upper bound: a deterministic reconnect delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def pub(g: Gateway, channel: str, seq: int) -> Tuple[str, int, int]:
    return await asyncio.to_thread(publish, g.admin, channel, {"seq": seq}, KEYS[seq % len(KEYS)])


def check_exact(published: List[Tuple[str, int, int]], got: List[fanline.Event], dropped: int) -> None:
    ids = [e.id for e in got]
    assert len(ids) == len(set(ids)), "duplicate delivery"
    pub_ids = {f"{t}/{p}/{o}" for t, p, o in published}
    assert set(ids) <= pub_ids, set(ids) - pub_ids
    assert len(got) + dropped == len(published), (len(got), dropped, len(published))
    last: Dict[int, int] = {}
    for e in got:
        assert e.offset > last.get(e.partition, -1), f"out of order on partition {e.partition}"
        last[e.partition] = e.offset
    assert {p for _, p, _ in published} == {0, 1, 2}, "keys did not spread over 3 partitions"


async def take(sub: fanline.Subscription, got: List[fanline.Event], total: int, timeout: float = 15.0) -> None:
    """Appends events to `got` until it holds `total`, for at most `timeout` seconds."""

    async def go() -> None:
        async for ev in sub:
            got.append(ev)
            if len(got) == total:
                return

    try:
        await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        pass
    assert len(got) == total, f"{len(got)} of {total} events within {timeout} s"


async def ingested(g: Gateway, n: int) -> None:
    """Waits until the gateway has ingested `n` events (a 202 means produced, not yet read)."""
    for _ in range(500):
        status, body = await asyncio.to_thread(http, "GET", g.admin, "/v1/stats")
        if status == 200 and body["events_ingested"] >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("events not ingested within 10 s")


async def test_resume_across_tcp_cuts_is_exact(gateway: Gateway):
    proxy = Proxy(gateway.listen)
    addr = await proxy.start()
    got: List[fanline.Event] = []
    gaps: List[Gap] = []
    resets: List[Reset] = []
    published: List[Tuple[str, int, int]] = []
    offline: List[int] = []  # events published while the client was not connected
    total, cuts_at = 240, {40, 110, 180}
    try:
        # A fixed 0.2 s reconnect delay: events are published while the client is away.
        async with fanline.Client(f"ws://{addr}/v1/ws", backoff=Backoff(0.2, 0.2, rng=Upper())) as c:  # type: ignore[arg-type]
            sub = c.subscribe("orders", on_gap=gaps.append, on_reset=resets.append)
            assert await c.wait_open(10)

            async def consume() -> None:
                async for ev in sub:
                    got.append(ev)

            consumer = asyncio.ensure_future(consume())
            loop = asyncio.get_running_loop()
            for i in range(total):
                if i in cuts_at:
                    # Cut only once the client holds a position on every partition.
                    end = loop.time() + 10
                    while {e.partition for e in got} != {0, 1, 2} and loop.time() < end:
                        await asyncio.sleep(0.01)
                    assert proxy.cut() == 1
                if c.state != State.OPEN:
                    offline.append(i)
                published.append(await pub(gateway, "orders", i))
            end = loop.time() + 20
            while len(got) + sub.dropped < total and loop.time() < end:
                await asyncio.sleep(0.02)
            consumer.cancel()
            check_exact(published, got, sub.dropped)
            assert sorted(e.data["seq"] for e in got) == list(range(total)) if not gaps else True
            assert c.connects == 1 + len(cuts_at)
            assert proxy.accepted >= 1 + len(cuts_at)
            assert resets == []
            assert len(offline) >= len(cuts_at), "too few events published during the cuts: the test proves little"
    finally:
        await proxy.close()


async def test_restarted_client_resumes_from_a_persisted_position(make_gateway):
    g: Gateway = make_gateway({"FANLINE_KAFKA_PARTITIONS": "3"})
    published = [await pub(g, "ledger", i) for i in range(3)]  # before anyone subscribed
    await ingested(g, 3)
    got: List[fanline.Event] = []
    async with fanline.Client(g.ws_url) as c:
        sub = c.subscribe("ledger")
        assert await c.wait_open(10)
        for i in range(3, 30):
            published.append(await pub(g, "ledger", i))
        await take(sub, got, 27)
        saved = sub.since
    assert sorted(k for k in saved if k != "epoch") == ["fanline.events/0", "fanline.events/1", "fanline.events/2"]
    for i in range(30, 60):  # nobody connected
        published.append(await pub(g, "ledger", i))
    resets: List[Reset] = []
    async with fanline.Client(g.ws_url) as c:
        sub = c.subscribe("ledger", since=saved, on_reset=resets.append)
        await take(sub, got, 57)
    check_exact(published[3:], got, 0)
    assert [e.data["seq"] for e in got if e.data["seq"] >= 30] != []
    assert sorted(e.data["seq"] for e in got) == list(range(3, 60))
    assert resets == []


async def test_resume_older_than_the_replay_buffer_reports_reset(make_gateway):
    g: Gateway = make_gateway({"FANLINE_KAFKA_PARTITIONS": "3", "FANLINE_REPLAY_MAX_RECORDS": "5"})
    published = [await pub(g, "audit", i) for i in range(60)]
    await ingested(g, 60)
    first = {f"{t}/{p}": o for t, p, o in published[:9]}  # the first offsets of every partition
    resets: List[Reset] = []
    async with fanline.Client(g.ws_url) as c:
        sub = c.subscribe("audit", since=first, on_reset=resets.append)
        assert await c.wait_open(10)
        await asyncio.sleep(0.1)
        assert len(resets) == 1 and resets[0].channel == "audit"
        assert resets[0].since == first
        # "too_old" (the protocol's reason code); older gateways put the explanation in reason.
        assert resets[0].reason == "too_old" or "older than the replay buffer" in (resets[0].reason or "")
        # The void position is dropped; the retained events (5 per partition) follow the ack.
        retained = []
        for _ in range(15):
            retained.append(await asyncio.wait_for(sub.__anext__(), 5))
        newest = {f"{t}/{p}": o for t, p, o in published}
        per_part: Dict[int, List[int]] = defaultdict(list)
        for seq, (_, p, _) in enumerate(published):
            per_part[p].append(seq)
        assert sorted(e.data["seq"] for e in retained) == sorted(s for q in per_part.values() for s in q[-5:])
        assert {k: v for k, v in sub.since.items() if k != "epoch"} == newest
        live = await pub(g, "audit", 60)
        ev = await asyncio.wait_for(sub.__anext__(), 5)
        assert ev.id == f"{live[0]}/{live[1]}/{live[2]}"
        assert ev.data == {"seq": 60}


async def test_admin_delete_connection_cut_is_resumed(make_gateway):
    g: Gateway = make_gateway({"FANLINE_KAFKA_PARTITIONS": "3"})
    status, body = http("DELETE", g.admin, "/v1/connections/none-such")
    assert status == 404 and "no such admin route" not in str(body), (status, body)
    got: List[fanline.Event] = []
    published = []
    offline = 0
    # A fixed 0.5 s reconnect delay, so that events are published while the client is away.
    async with fanline.Client(g.ws_url, backoff=Backoff(0.5, 0.5, rng=Upper())) as c:  # type: ignore[arg-type]
        sub = c.subscribe("moves")
        assert await c.wait_open(10)
        for i in range(30):
            published.append(await pub(g, "moves", i))
        await take(sub, got, 30)
        first = c.connection_id
        assert first is not None
        status, _ = await asyncio.to_thread(http, "DELETE", g.admin, f"/v1/connections/{first}")
        assert status in (200, 202, 204)
        for i in range(30, 60):
            offline += c.state != State.OPEN
            published.append(await pub(g, "moves", i))
        await take(sub, got, 60)
        assert c.connection_id != first and c.last_close_code == 1012
        assert offline > 0, "every event was published after the reconnect: the test proved nothing"
    check_exact(published, got, sub.dropped)


async def test_many_subscriptions_stay_under_the_inbound_rate_limit(make_gateway):
    """40 subscribes at once would pass the gateway's inbound limit (10 msgs/s, burst 20: close
    1008); the client paces them from `welcome.limits`."""
    g: Gateway = make_gateway({"FANLINE_KAFKA_MODE": '"direct"'})
    async with fanline.Client(g.ws_url) as c:
        subs = [c.subscribe(f"ch{i}") for i in range(40)]
        assert await c.wait_open(15)
        first = c.connection_id
        await pub(g, "ch39", 0)
        ev = await asyncio.wait_for(subs[39].__anext__(), 5)
        assert ev.channel == "ch39"
        assert c.connects == 1 and c.connection_id == first and c.last_close_code is None


async def test_a_slow_application_gets_gaps_that_account_for_every_event(make_gateway):
    """The application stops iterating: the client stops reading (bounded queue), the gateway's
    outbox overflows and it drops with `gap`; delivered + reported dropped == published."""
    g: Gateway = make_gateway({"FANLINE_KAFKA_PARTITIONS": "3", "FANLINE_LIMITS_OUTBOX_FRAMES": "8"})
    gaps: List[Gap] = []
    got: List[fanline.Event] = []
    published = []
    blob = "x" * 65536
    async with fanline.Client(g.ws_url, max_queue=1, compression=None) as c:
        sub = c.subscribe("firehose", on_gap=gaps.append)
        assert await c.wait_open(10)
        for i in range(300):  # ~19 MiB: more than the socket buffers hold
            published.append(await asyncio.to_thread(
                publish, g.admin, "firehose", {"seq": i, "blob": blob}, KEYS[i % len(KEYS)]))
        await ingested(g, 300)
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while len(got) + sub.dropped < len(published) and loop.time() < end:
            try:
                got.append(await asyncio.wait_for(sub.__anext__(), 0.5))
            except asyncio.TimeoutError:
                pass
        print(f"slow app: {len(got)} delivered, {sub.dropped} dropped in {len(gaps)} gaps")
        assert sub.dropped > 0 and sum(x.dropped for x in gaps) == sub.dropped, gaps
        assert all(x.reason == "slow_consumer" for x in gaps)
        assert c.connects == 1, "a slow but alive client is not disconnected"
    check_exact(published, got, sub.dropped)
