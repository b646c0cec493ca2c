// The client against the real gateway binary (embedded Kafka mock cluster, 3 partitions):
// events published with admin POST /v1/publish arrive; a cut connection resumes with `since`
// and delivers exactly the events published while it was away (WebSocket and SSE); an admin
// DELETE /v1/connections/{id} (close 1012) is followed by a resume with no gap; `auto` falls
// back to SSE when the WebSocket cannot open.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { FanlineClient } from "../../dist/fanline.js";
import { Gateway, Proxy, waitFor, sleep } from "../gateway.mjs";

const quiet = { debug() {}, info() {}, warn() {} };
let g;
const clients = [];

before(async () => {
  g = await Gateway.start();
});
after(async () => {
  for (const c of clients) c.close();
  await g?.stop();
});

function client(url, extra = {}) {
  const c = new FanlineClient({ url, WebSocket, logger: quiet, backoff: { initialMs: 50, maxMs: 200 }, ...extra });
  clients.push(c);
  return c;
}

/** Subscribes and resolves once the server acknowledged. */
function collect(c, channel) {
  const got = [];
  const acks = [];
  const resets = [];
  const sub = c.subscribe(channel, {
    onEvent: (e) => got.push(e),
    onSubscribed: (i) => acks.push(i),
    onReset: (r) => resets.push(r),
  });
  return { sub, got, acks, resets };
}

const idOf = (a) => `${a.topic}/${a.partition}/${a.offset}`;

function assertOrderedPerPartition(events) {
  const last = new Map();
  for (const e of events) {
    const k = `${e.topic}/${e.partition}`;
    assert.ok(!last.has(k) || last.get(k) < e.offset, `order on ${k}: ${last.get(k)} then ${e.offset}`);
    last.set(k, e.offset);
  }
}

/** Publishes `n` events one at a time (keys spread over the partitions); returns their ids. */
async function publishN(channel, n, from) {
  const ids = [];
  for (let i = from; i < from + n; i++) ids.push(idOf(await g.publish(channel, { i }, `k${i}`)));
  return ids;
}

for (const transport of ["websocket", "sse"]) {
  test(`${transport}: a cut connection resumes with since and misses nothing`, async () => {
    const channel = `resume-${transport}`;
    const proxy = new Proxy(g.listen);
    const paddr = await proxy.start();
    try {
      const c = client(`ws://${paddr}/v1/ws`, { transport });
      const watcher = client(g.wsUrl, { transport: "websocket" });
      const s = collect(c, channel);
      const w = collect(watcher, channel);
      await waitFor(() => s.acks.length === 1 && w.acks.length === 1, 15_000, "both subscribed");
      const before = await publishN(channel, 30, 0);
      await waitFor(() => s.got.length === 30, 10_000, "30 live events");
      assert.equal(new Set(s.got.map((e) => e.partition)).size, 3, "the cursor covers all 3 partitions");
      // Cut, and refuse reconnects while 20 more are published and ingested.
      proxy.refusing = true;
      assert.equal(proxy.cut(), 1);
      const during = await publishN(channel, 20, 30);
      await waitFor(() => w.got.length === 50, 10_000, "the watcher saw all 50");
      assert.equal(s.got.length, 30, "nothing arrived while cut");
      await sleep(100);
      proxy.refusing = false;
      await waitFor(() => s.got.length === 50, 15_000, "resumed events");
      await sleep(200); // a duplicate would show up now
      const ids = s.got.map((e) => e.id);
      assert.equal(ids.length, 50);
      assert.deepEqual(new Set(ids), new Set([...before, ...during]));
      assertOrderedPerPartition(s.got);
      assert.equal(s.resets.length, 0, JSON.stringify(s.resets));
      assert.deepEqual(s.acks.at(-1), { channel, recovered: true, replayed: 20, resumed: true });
      assert.equal(c.stats.resumes, 1);
      assert.equal(c.stats.duplicates, 0);
      assert.equal(c.transport, transport);
      c.close();
      watcher.close();
    } finally {
      await proxy.close();
    }
  });
}

test("admin DELETE /v1/connections/{id} (1012): the client comes back and resumes with no gap", async () => {
  const channel = "deleted";
  // A fixed ~0.5 s reconnect delay so the events below are published while it is away.
  const c = client(g.wsUrl, { transport: "websocket", backoff: { initialMs: 500, maxMs: 500 }, random: () => 0.999 });
  const s = collect(c, channel);
  await waitFor(() => s.acks.length === 1, 15_000, "subscribed");
  const first = await publishN(channel, 9, 0);
  await waitFor(() => s.got.length === 9, 10_000, "9 live events");
  const id = c.connectionId;
  assert.ok(id, "welcome carried a connection id");
  assert.equal(await g.cut(id), 200);
  await waitFor(() => c.state === "reconnecting", 5_000, "the cut");
  const during = await publishN(channel, 6, 9);
  await waitFor(() => s.got.length === 15, 15_000, "resumed events");
  assert.notEqual(c.connectionId, id);
  assert.deepEqual(new Set(s.got.map((e) => e.id)), new Set([...first, ...during]));
  assert.equal(s.got.length, 15);
  assert.deepEqual(s.acks.at(-1), { channel, recovered: true, replayed: 6, resumed: true });
  assert.equal(c.stats.reconnects, 1);
  assert.equal(await g.cut(id), 404, "the old connection is gone");
  c.close();
});

test("auto: a WebSocket that cannot open falls back to SSE, and events flow", async () => {
  const channel = "fallback";
  // No WebSocket route at this path: the upgrade is refused, the SSE URL is given explicitly.
  const c = client(`ws://${g.listen}/no-websocket-here`, { transport: "auto", sseUrl: `http://${g.listen}/v1/sse` });
  const s = collect(c, channel);
  await waitFor(() => s.acks.length === 1, 15_000, "subscribed over SSE");
  assert.equal(c.transport, "sse");
  const ids = await publishN(channel, 5, 0);
  await waitFor(() => s.got.length === 5, 10_000, "5 events");
  // The keys spread the events over 3 partitions: order is defined per partition only.
  const got = s.got.map((e) => e.id);
  assert.deepEqual([...got].sort(), [...ids].sort());
  for (const p of new Set(got.map((id) => id.split("/")[1]))) {
    const inP = got.filter((id) => id.split("/")[1] === p);
    assert.deepEqual(inP, ids.filter((id) => id.split("/")[1] === p), `partition ${p} in order`);
  }
  assert.equal(c.stats.failures, 1);
  c.close();
});
