// Backoff/jitter, Retry-After, event ids and cursors, the SSE parser: pure code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, parseRetryAfter, parseEventId, Cursor, SseParser, streamUrl, defaultSseUrl } from "../../dist/fanline.js";

test("full jitter: uniform in [0, min(max, initial*factor^n)]", () => {
  const top = new Backoff({ initialMs: 100, maxMs: 5000, factor: 2 }, () => 0.999999);
  assert.deepEqual([0, 1, 2, 3, 5, 6, 100].map((n) => Math.round(top.delay(n))), [100, 200, 400, 800, 3200, 5000, 5000]);
  const bottom = new Backoff({ initialMs: 100, maxMs: 5000 }, () => 0);
  assert.equal(bottom.delay(7), 0);
  const mid = new Backoff({ initialMs: 100, maxMs: 5000 }, () => 0.5);
  assert.equal(mid.delay(2), 200);
  // Retry-After is a floor, jitter on top.
  assert.equal(mid.delay(0, 3000), 3050);
  // A broken random source still gives a bounded delay.
  assert.equal(new Backoff({ initialMs: 100 }, () => NaN).delay(0), 50);
  assert.throws(() => new Backoff({ initialMs: 0 }));
  assert.throws(() => new Backoff({ initialMs: 10, maxMs: 5 }));
});

test("jitter spreads clients: 1000 delays of one attempt cover the range", () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 1000 });
  const d = Array.from({ length: 1000 }, () => b.delay(0));
  assert.ok(d.every((x) => x >= 0 && x < 1000));
  const buckets = new Array(10).fill(0);
  for (const x of d) buckets[Math.floor(x / 100)]++;
  assert.ok(buckets.every((c) => c > 50), `buckets ${buckets}`);
});

test("Retry-After: seconds, HTTP date, garbage, bound", () => {
  assert.equal(parseRetryAfter("5"), 5000);
  assert.equal(parseRetryAfter(" 0 "), 0);
  assert.equal(parseRetryAfter("999999"), 3600_000);
  const now = Date.parse("Thu, 03 Dec 2026 07:00:00 GMT");
  assert.equal(parseRetryAfter("Thu, 03 Dec 2026 07:00:09 GMT", now), 9000);
  assert.equal(parseRetryAfter("Thu, 03 Dec 2026 06:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter("soon"), null);
  assert.equal(parseRetryAfter(""), null);
  assert.equal(parseRetryAfter(null), null);
});

test("event ids: topic/partition/offset, split from the right", () => {
  assert.deepEqual(parseEventId("issues.enriched/0/121"), { topic: "issues.enriched", partition: 0, offset: 121 });
  assert.deepEqual(parseEventId("a/b/2/3"), { topic: "a/b", partition: 2, offset: 3 });
  for (const bad of ["", "t/0", "/0/1", "t/-1/2", "t/0/-2", "t/0/1.5", "t/x/1", 5, null, "t/0/99999999999999999999"]) {
    assert.equal(parseEventId(bad), null, String(bad));
  }
});

test("cursor: per partition, duplicates refused, since sorted with epoch", () => {
  const c = new Cursor();
  assert.equal(c.since(), null);
  assert.equal(c.advance("t", 1, 5), true);
  assert.equal(c.advance("t", 0, 9), true);
  assert.equal(c.advance("t", 1, 5), false);
  assert.equal(c.advance("t", 1, 4), false);
  assert.equal(c.advance("t", 1, 7), true);
  assert.deepEqual(c.since(), { "t/0": 9, "t/1": 7 });
  assert.equal(c.sinceQuery(), "t/0:9,t/1:7");
  c.epoch = "e1";
  assert.deepEqual(c.since(), { "t/0": 9, "t/1": 7, epoch: "e1" });
  c.reset("e2");
  assert.equal(c.since(), null);
  assert.equal(c.epoch, "e2");
  const p = new Cursor({ "t/0": 3, epoch: "e0" });
  assert.deepEqual(p.since(), { "t/0": 3, epoch: "e0" });
  assert.throws(() => new Cursor({ t: 3 }));
  assert.throws(() => new Cursor({ "t/0": "3" }));
});

test("SSE parser: chunks split anywhere, CRLF, multi-line data, comments", () => {
  const got = [];
  let comments = 0;
  const p = new SseParser({ event: (n, d) => got.push([n, d]), comment: () => comments++ });
  const text = ":\n\nid: t/0/1\r\nevent: ch\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: plain\n\n:hb\n\nevent: gap\rdata: x\r\r";
  for (let i = 0; i < text.length; i += 3) p.push(text.slice(i, i + 3));
  assert.deepEqual(got, [["ch", '{"a":\n1}'], ["message", "plain"], ["gap", "x"]]);
  assert.equal(comments, 2);
});

test("SSE URL: channel, filters (lists repeat), since, token; default from the WebSocket URL", () => {
  const u = streamUrl("http://h:1/v1/sse", { channel: "a:b c", filter: { sev: ["high", "low"], "/meta/n": 3 }, since: "t/0:5,t/1:7" }, "tok");
  assert.equal(u, "http://h:1/v1/sse?channels=a%3Ab%20c&filter.sev=high&filter.sev=low&filter.%2Fmeta%2Fn=3&since=t%2F0%3A5%2Ct%2F1%3A7&token=tok");
  assert.equal(defaultSseUrl("wss://x.example:8443/v1/ws?x=1"), "https://x.example:8443/v1/sse");
  assert.equal(defaultSseUrl("ws://127.0.0.1:8080/custom/ws"), "http://127.0.0.1:8080/v1/sse");
});
