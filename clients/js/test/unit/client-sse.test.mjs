// FanlineClient over a fake EventSource: one stream per subscription, events named after the
// channel, resume with the exact per-partition `since`, `auto` falling back from WebSocket.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { FanlineClient } from "../../dist/fanline.js";
import { fakeEventSource, fakeWebSocket, waitFor, quiet } from "./fakes.mjs";

const made = [];
afterEach(() => {
  for (const c of made.splice(0)) c.close();
});

function client(extra) {
  const c = new FanlineClient({ url: "ws://gw.test:8080/v1/ws", backoff: { initialMs: 5, maxMs: 100 }, logger: quiet, ...extra });
  made.push(c);
  return c;
}

const q = (es, k) => es.url.searchParams.get(k);

test("SSE: a stream per subscription with filter and token; resume by since after a failure", async () => {
  const ES = fakeEventSource();
  const c = client({ transport: "sse", EventSource: ES, token: async () => "tk" });
  const states = [];
  c.on("state", (s) => states.push(s));
  const got = [];
  const resets = [];
  c.subscribe("a", { filter: { sev: ["high", "low"] }, onEvent: (e) => got.push(e.id) });
  c.subscribe("b", { onEvent: (e) => got.push(e.id), onReset: (r) => resets.push(r) });
  await waitFor(() => ES.instances.length === 2);
  const [a, b] = ES.instances;
  assert.equal(a.url.origin + a.url.pathname, "http://gw.test:8080/v1/sse");
  assert.equal(q(a, "channels"), "a");
  assert.deepEqual(a.url.searchParams.getAll("filter.sev"), ["high", "low"]);
  assert.equal(q(a, "token"), "tk");
  assert.equal(q(b, "since"), null);
  a.open();
  b.open();
  a.send("subscribed", { type: "subscribed", channels: ["a"], connection_id: "x1" });
  assert.equal(c.state, "connecting", "up only when every stream subscribed");
  b.send("subscribed", { type: "subscribed", channels: ["b"], connection_id: "x2" });
  assert.equal(c.state, "open");
  assert.equal(c.transport, "sse");
  assert.equal(c.connectionId, "x1", "the first stream's connection id");
  a.send("a", { type: "event", channel: "a", id: "t/0/3", data: 1 });
  a.send("a", { type: "event", channel: "a", id: "t/2/8", data: 1 });
  b.send("b", { type: "event", channel: "b", id: "t/1/5", data: 2 });
  a.fail(); // EventSource would retry on its own; the client closes it and resumes itself
  assert.equal(a.closed && b.closed, true, "all streams of the link closed");
  await waitFor(() => ES.instances.length === 4, 2000, "reconnect");
  const [a2, b2] = ES.instances.slice(2);
  assert.equal(q(a2, "since"), "t/0:3,t/2:8");
  assert.equal(q(b2, "since"), "t/1:5");
  a2.send("subscribed", { type: "subscribed", channels: ["a"], recovered: true, replayed: 1 });
  b2.send("subscribed", { type: "subscribed", channels: ["b"], recovered: false, reason: "too_old" });
  a2.send("a", { type: "event", channel: "a", id: "t/2/8", data: 1 }); // duplicate
  a2.send("a", { type: "event", channel: "a", id: "t/2/9", data: 1 });
  assert.deepEqual(got, ["t/0/3", "t/2/8", "t/1/5", "t/2/9"]);
  assert.deepEqual(resets, [{ channel: "b", reason: "too_old", since: { "t/1": 5 } }]);
  assert.equal(c.stats.resumes, 1);
  assert.equal(c.stats.resets, 1);
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);
  // A later subscribe opens its own stream; unsubscribe closes it.
  const s3 = c.subscribe("c");
  await waitFor(() => ES.instances.length === 5);
  s3.unsubscribe();
  assert.equal(ES.instances[4].closed, true);
  c.close();
  assert.equal(a2.closed && b2.closed, true);
});

test("SSE: the server's `event: error` is data, a malformed data line reconnects", async () => {
  const ES = fakeEventSource();
  const c = client({ transport: "sse", EventSource: ES });
  c.subscribe("a");
  await waitFor(() => ES.instances.length === 1);
  const a = ES.instances[0];
  a.send("subscribed", { type: "subscribed", channels: ["a"] });
  a.send("error", { type: "error", id: null, code: "too_many", message: "m" });
  assert.equal(a.closed, false);
  a.send("a", "{oops");
  assert.equal(a.closed, true);
  assert.equal(c.stats.malformed, 1);
  await waitFor(() => ES.instances.length === 2);
});

test("auto: WebSocket that never opens falls back to SSE; one that opened once stays WebSocket", async () => {
  const WS = fakeWebSocket();
  const ES = fakeEventSource();
  const c = client({ transport: "auto", WebSocket: WS, EventSource: ES });
  c.subscribe("a");
  await waitFor(() => WS.instances.length === 1);
  WS.instances[0].fail();
  await waitFor(() => ES.instances.length === 1, 2000, "SSE stream");
  assert.equal(c.transport, "sse");
  assert.equal(WS.instances.length, 1);

  const WS2 = fakeWebSocket();
  const ES2 = fakeEventSource();
  const d = client({ transport: "auto", WebSocket: WS2, EventSource: ES2 });
  await waitFor(() => WS2.instances.length === 1);
  WS2.instances[0].welcome();
  WS2.instances[0].serverClose(1012);
  await waitFor(() => WS2.instances.length === 2);
  WS2.instances[1].fail();
  await waitFor(() => WS2.instances.length === 3);
  assert.equal(ES2.instances.length, 0);
  assert.equal(d.transport, "websocket");
});

test("auto without any WebSocket implementation uses SSE; websocket without one throws", () => {
  const saved = globalThis.WebSocket;
  try {
    delete globalThis.WebSocket;
    const c = client({ transport: "auto", EventSource: fakeEventSource() });
    assert.equal(c.transport, "sse");
    assert.throws(() => client({ transport: "websocket" }), /WebSocket/);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});
