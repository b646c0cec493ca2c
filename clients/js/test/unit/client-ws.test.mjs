// FanlineClient over a fake WebSocket: subscribe after welcome, cursor and resume with
// `since` (+ epoch), duplicates, onGap/onReset, backoff (1013, Retry-After), token provider,
// heartbeat watchdog, pacing, malformed frames.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { FanlineClient } from "../../dist/fanline.js";
import { fakeWebSocket, waitFor, quiet, recorder } from "./fakes.mjs";

// Every client a test made is closed after it, pass or fail (open timers would keep the
// test process alive).
const made = [];
afterEach(() => {
  for (const c of made.splice(0)) c.close();
});

function client(WS, extra = {}) {
  const c = new FanlineClient({
    url: "ws://gw.test/v1/ws",
    transport: "websocket",
    WebSocket: WS,
    backoff: { initialMs: 5, maxMs: 1000 },
    logger: quiet,
    ...extra,
  });
  made.push(c);
  const delays = [];
  c.on("reconnect", (r) => delays.push(r));
  return { c, delays };
}

test("subscribe after welcome; resume with since and epoch after a cut; duplicates skipped", async () => {
  const WS = fakeWebSocket();
  const { c } = client(WS);
  const states = [];
  c.on("state", (s) => states.push(s));
  const got = [];
  c.subscribe("issues", { filter: { sev: ["high"] }, onEvent: (e) => got.push(e.id) });
  await waitFor(() => WS.instances.length === 1);
  const a = WS.instances[0];
  assert.equal(a.protocols, undefined, "no token: no subprotocol");
  a.welcome({ epoch: "E1" });
  assert.deepEqual(a.subscribes(), [{ type: "subscribe", id: "s1", channels: ["issues"], filter: { sev: ["high"] } }]);
  a.recv({ type: "subscribed", id: "s1", channels: ["issues"] });
  a.event("issues", "t/0/4");
  a.event("issues", "t/1/2");
  a.event("issues", "t/0/5");
  a.event("issues", "t/0/5"); // duplicate
  assert.deepEqual(got, ["t/0/4", "t/1/2", "t/0/5"]);
  a.serverClose(1012);
  await waitFor(() => WS.instances.length === 2, 2000, "reconnect");
  const b = WS.instances[1];
  b.welcome({ epoch: "E1" });
  assert.deepEqual(b.subscribes(), [
    { type: "subscribe", id: "s2", channels: ["issues"], filter: { sev: ["high"] }, since: { "t/0": 5, "t/1": 2, epoch: "E1" } },
  ]);
  b.recv({ type: "subscribed", id: "s2", channels: ["issues"], recovered: true, replayed: 1 });
  b.event("issues", "t/0/5"); // replay overlap is not delivered twice
  b.event("issues", "t/0/6");
  assert.deepEqual(got, ["t/0/4", "t/1/2", "t/0/5", "t/0/6"]);
  assert.equal(c.stats.resumes, 1);
  assert.equal(c.stats.duplicates, 2);
  assert.equal(c.stats.events, 4);
  assert.equal(c.stats.connects, 2);
  assert.equal(c.stats.reconnects, 1);
  c.close();
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open", "closed"]);
  assert.deepEqual(b.closedWith, { code: 1000, reason: "client closed" });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(WS.instances.length, 2, "no reconnect after close");
});

test("recovered:false calls onReset with the refused since and starts the cursor over", async () => {
  const WS = fakeWebSocket();
  const { c } = client(WS);
  const resets = [];
  const gaps = [];
  c.subscribe("ch", { onReset: (r) => resets.push(r), onGap: (g) => gaps.push(g) });
  await waitFor(() => WS.instances.length === 1);
  const a = WS.instances[0];
  a.welcome({ epoch: "E1" });
  a.event("ch", "t/0/10");
  a.recv({ type: "gap", channel: "ch", dropped: 17, reason: "slow_consumer" });
  assert.deepEqual(gaps, [{ channel: "ch", dropped: 17, reason: "slow_consumer" }]);
  a.serverClose(1001);
  await waitFor(() => WS.instances.length === 2);
  const b = WS.instances[1];
  b.welcome({ epoch: "E2" });
  assert.deepEqual(b.subscribes()[0].since, { "t/0": 10, epoch: "E1" });
  b.recv({ type: "subscribed", id: b.subscribes()[0].id, channels: ["ch"], recovered: false, reason: "epoch_changed" });
  assert.deepEqual(resets, [{ channel: "ch", reason: "epoch_changed", since: { "t/0": 10, epoch: "E1" } }]);
  b.serverClose(1012);
  await waitFor(() => WS.instances.length === 3);
  const d = WS.instances[2];
  d.welcome({ epoch: "E2" });
  assert.deepEqual(d.subscribes()[0].since, { epoch: "E2" }, "after a reset: an empty cursor in the new epoch");
  assert.equal(c.stats.resets, 1);
  assert.equal(c.stats.dropped, 17);
  c.close();
});

test("backoff: failed opens grow the full-jitter ceiling; a healthy connection resets it", async () => {
  const WS = fakeWebSocket();
  const { c, delays } = client(WS, { random: () => 0.999, backoff: { initialMs: 4, maxMs: 40, factor: 2 } });
  for (let i = 0; i < 5; i++) {
    await waitFor(() => WS.instances.length === i + 1);
    WS.instances[i].fail();
  }
  await waitFor(() => WS.instances.length === 6);
  assert.deepEqual(delays.map((d) => Math.round(d.delayMs)), [4, 8, 16, 32, 40]);
  WS.instances[5].welcome();
  WS.instances[5].serverClose(1012);
  await waitFor(() => delays.length === 6);
  assert.equal(Math.round(delays[5].delayMs), 4, "healthy connection starts over");
  assert.equal(c.stats.failures, 5);
  c.close();
});

test("close 1013 backs off further; Retry-After of a refused handshake is a floor", async () => {
  const WS = fakeWebSocket();
  const { c, delays } = client(WS, { random: () => 0.5, backoff: { initialMs: 2, maxMs: 1000 } });
  await waitFor(() => WS.instances.length === 1);
  WS.instances[0].welcome();
  WS.instances[0].serverClose(1013);
  await waitFor(() => delays.length === 1);
  assert.equal(delays[0].delayMs, 8, "1013: attempt >= 3 → ceiling 16, half of it");
  await waitFor(() => WS.instances.length === 2);
  // A `ws`-package socket reports the refused handshake's status and Retry-After.
  const b = WS.instances[1];
  const handlers = {};
  b.on = (ev, f) => (handlers[ev] = f);
  // (the client registered before `on` existed here; emulate the ws package by hand)
  c.close();
  const WS2 = fakeWebSocket();
  WS2.prototype.on = function (ev, f) {
    (this.emitter[ev] ??= []).push(f);
  };
  const r = client(WS2, { random: () => 0, backoff: { initialMs: 2, maxMs: 1000 } });
  await waitFor(() => WS2.instances.length === 1);
  const s = WS2.instances[0];
  for (const f of s.emitter["unexpected-response"]) f({}, { statusCode: 503, headers: { "retry-after": "1" } });
  await waitFor(() => r.delays.length === 1);
  assert.equal(r.delays[0].delayMs, 1000);
  assert.match(r.delays[0].reason, /HTTP 503/);
  r.c.close();
});

test("token provider: called per attempt, sent as the bearer subprotocol; a failing one backs off", async () => {
  const WS = fakeWebSocket();
  let calls = 0;
  const token = async () => {
    calls++;
    if (calls === 2) throw new Error("auth server down");
    return `tok${calls}`;
  };
  const { c, delays } = client(WS, { token, random: () => 0.999, backoff: { initialMs: 4, maxMs: 100 } });
  await waitFor(() => WS.instances.length === 1);
  assert.deepEqual(WS.instances[0].protocols, ["bearer", "tok1"]);
  WS.instances[0].welcome();
  WS.instances[0].serverClose(1012);
  await waitFor(() => WS.instances.length === 2, 2000, "third token call");
  assert.deepEqual(WS.instances[1].protocols, ["bearer", "tok3"]);
  assert.equal(calls, 3);
  assert.deepEqual(delays.map((d) => [Math.round(d.delayMs), d.reason]), [
    [4, "closed 1012"],
    [8, "token provider failed"],
  ]);
  assert.equal(c.stats.failures, 1);
  c.close();
  const { c: c2 } = client(fakeWebSocket(), { token: "static" });
  c2.close();
});

test("heartbeat watchdog: silent link gets a ping at 1× and is dropped at 1.5× heartbeat", async () => {
  const WS = fakeWebSocket();
  const { c, delays } = client(WS);
  await waitFor(() => WS.instances.length === 1);
  const a = WS.instances[0];
  const t0 = Date.now();
  a.welcome({ heartbeat_ms: 80 });
  await waitFor(() => a.sent.some((m) => m.type === "ping"), 1000, "ping");
  const tPing = Date.now() - t0;
  await waitFor(() => delays.length === 1, 1000, "watchdog reconnect");
  const tDead = Date.now() - t0;
  assert.ok(tPing >= 80 && tPing < 120, `ping at ${tPing} ms`);
  assert.ok(tDead >= 120 && tDead < 200, `dropped at ${tDead} ms`);
  assert.equal(delays[0].reason, "heartbeat timeout");
  // A pong (any frame) keeps a link alive.
  await waitFor(() => WS.instances.length === 2);
  const b = WS.instances[1];
  b.welcome({ heartbeat_ms: 80 });
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 40));
    b.recv({ type: "pong" });
  }
  assert.equal(delays.length, 1, "kept alive by frames");
  c.close();
});

test("resubscribes are paced under the server's inbound rate", async () => {
  const WS = fakeWebSocket();
  const { c } = client(WS);
  for (let i = 0; i < 8; i++) c.subscribe(`ch${i}`);
  await waitFor(() => WS.instances.length === 1);
  const a = WS.instances[0];
  a.welcome({ limits: { inbound_msgs_per_s: 50, inbound_burst: 4 } });
  assert.equal(a.subscribes().length, 2, "half the burst at once");
  const t0 = Date.now();
  await waitFor(() => a.subscribes().length === 8, 2000, "all subscribes");
  const dt = Date.now() - t0;
  assert.ok(dt >= 100 && dt < 400, `6 more at 50/s took ${dt} ms`);
  c.close();
});

test("malformed frames never throw: logged, counted, link closed, reconnected", async () => {
  const bad = [
    "not json",
    new Uint8Array([1, 2]),
    "[1,2]",
    '{"no":"type"}',
    '{"type":"event","channel":"c","id":"nope"}',
    '{"type":"event","id":"t/0/1"}',
    '{"type":"gap","channel":"c","dropped":-1}',
    '{"type":"subscribed","channels":"c"}',
  ];
  const WS = fakeWebSocket();
  const log = recorder();
  const { c } = client(WS, { logger: log });
  const got = [];
  c.subscribe("c", { onEvent: (e) => got.push(e.id) });
  for (let i = 0; i < bad.length; i++) {
    await waitFor(() => WS.instances.length === i + 1, 2000, `attempt ${i + 1}`);
    const s = WS.instances[i];
    s.welcome();
    s.recv(bad[i]);
    assert.equal(s.closedWith?.code, 1000, `closed after ${bad[i]}`);
  }
  // A first frame that is not a welcome is malformed too.
  await waitFor(() => WS.instances.length === bad.length + 1);
  const s = WS.instances[bad.length];
  s.open();
  s.recv({ type: "event", channel: "c", id: "t/0/1", data: {} });
  assert.equal(s.closedWith?.code, 1000);
  assert.equal(c.stats.malformed, bad.length + 1);
  assert.equal(log.lines.filter((l) => l.includes("reconnecting")).length, bad.length + 1);
  assert.deepEqual(got, []);
  await waitFor(() => WS.instances.length === bad.length + 2);
  WS.instances.at(-1).welcome();
  WS.instances.at(-1).event("c", "t/0/1");
  assert.deepEqual(got, ["t/0/1"]);
  c.close();
});

test("throwing callbacks and unknown frame types do not disturb delivery; refused subscribe ends", async () => {
  const WS = fakeWebSocket();
  const log = recorder();
  const { c } = client(WS, { logger: log });
  const got = [];
  const errors = [];
  c.subscribe("a", {
    onEvent: (e) => {
      got.push(e.id);
      throw new Error("app bug");
    },
  });
  const f = c.subscribe("secret", { onError: (e) => errors.push(e) });
  await waitFor(() => WS.instances.length === 1);
  const s = WS.instances[0];
  s.welcome();
  s.recv({ type: "future_thing", x: 1 });
  s.event("a", "t/0/1");
  s.event("a", "t/0/2");
  const sid = s.subscribes().find((m) => m.channels[0] === "secret").id;
  s.recv({ type: "error", id: sid, code: "forbidden_channel", message: "no" });
  assert.deepEqual(got, ["t/0/1", "t/0/2"]);
  assert.deepEqual(errors, [{ channel: "secret", code: "forbidden_channel", message: "no" }]);
  assert.equal(log.lines.filter((l) => l.includes("app bug")).length, 2);
  assert.equal(s.closedWith, null, "link stays up");
  assert.throws(() => c.subscribe("a"), /already subscribed/);
  f.unsubscribe(); // already ended: a no-op
  c.subscribe("secret");
  c.close();
});

test("unsubscribe sends unsubscribe and stops delivery; not resubscribed after reconnect", async () => {
  const WS = fakeWebSocket();
  const { c } = client(WS);
  const got = [];
  const sub = c.subscribe("x", { onEvent: (e) => got.push(e.id) });
  c.subscribe("y");
  await waitFor(() => WS.instances.length === 1);
  const s = WS.instances[0];
  s.welcome();
  s.event("x", "t/0/1");
  sub.unsubscribe();
  s.event("x", "t/0/2");
  assert.deepEqual(s.sent.at(-1), { type: "unsubscribe", id: "u3", channels: ["x"] });
  assert.deepEqual(got, ["t/0/1"]);
  s.serverClose(1012);
  await waitFor(() => WS.instances.length === 2);
  WS.instances[1].welcome();
  assert.deepEqual(WS.instances[1].subscribes().map((m) => m.channels[0]), ["y"]);
  c.close();
});

test("a subscription acknowledged but with nothing received resubscribes with an empty cursor", async () => {
  const WS = fakeWebSocket();
  const { c } = client(WS);
  c.subscribe("quiet");
  c.subscribe("never-acked");
  await waitFor(() => WS.instances.length === 1);
  const a = WS.instances[0];
  a.welcome({ epoch: "E1" });
  a.recv({ type: "subscribed", id: "s1", channels: ["quiet"] });
  a.serverClose(1012);
  await waitFor(() => WS.instances.length === 2);
  WS.instances[1].welcome();
  const subs = WS.instances[1].subscribes();
  assert.deepEqual(subs.map((m) => [m.channels[0], m.since]), [
    ["quiet", { epoch: "E1" }],
    ["never-acked", undefined],
  ]);
});
