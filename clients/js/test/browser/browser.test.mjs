// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; nothing is
// downloaded) against the real gateway:
// - a page served from ANOTHER port (cross-origin, as in production) receives events over
//   WebSocket and over SSE (EventSource needs the gateway's CORS answer);
// - the demo page the gateway serves at `/` shows published events, and after an admin
//   DELETE /v1/connections/{id} it resumes with no gap;
// - screenshots go to target/jsclient-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Gateway, REPO, waitFor, sleep } from "../gateway.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(REPO, "target", "jsclient-artifacts");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

let g, browser, site, siteAddr;

/** The "app" origin: the test page and the built client, on a port of its own. */
function startSite() {
  const files = {
    "/": [path.join(here, "page.html"), "text/html"],
    "/fanline.js": [path.join(here, "../../dist/fanline.js"), "text/javascript"],
  };
  const s = http.createServer((req, res) => {
    const f = files[new URL(req.url, "http://x").pathname];
    if (!f) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": f[1], "cache-control": "no-store" }).end(fs.readFileSync(f[0]));
  });
  return new Promise((r) => s.listen(0, "127.0.0.1", () => r(s)));
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  g = await Gateway.start();
  site = await startSite();
  siteAddr = `127.0.0.1:${site.address().port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (site ? site.close(r) : r()));
  await g?.stop();
});

async function publishN(channel, n, from) {
  const ids = [];
  for (let i = from; i < from + n; i++) {
    const a = await g.publish(channel, { i, at: new Date().toISOString() }, `k${i}`);
    ids.push(`${a.topic}/${a.partition}/${a.offset}`);
  }
  return ids;
}

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  return { page, errors };
}

test("a page on another origin gets events over WebSocket and over SSE", async () => {
  const channel = "xorigin";
  const { page, errors } = await newPage();
  try {
    await page.goto(`http://${siteAddr}/?gw=${g.listen}&channel=${channel}`);
    await waitFor(() => page.evaluate(() => window.t && window.t.websocket.acks.length === 1 && window.t.sse.acks.length === 1), 20_000, "both transports subscribed");
    const ids = await publishN(channel, 12, 0);
    await waitFor(() => page.evaluate(() => window.t.websocket.ids.length === 12 && window.t.sse.ids.length === 12), 15_000, "12 events on both transports");
    const got = await page.evaluate(() => ({ ws: window.t.websocket.ids, sse: window.t.sse.ids, tws: window.t.websocket.client.transport, tsse: window.t.sse.client.transport }));
    assert.deepEqual(new Set(got.ws), new Set(ids));
    assert.deepEqual(new Set(got.sse), new Set(ids));
    assert.equal(got.tws, "websocket");
    assert.equal(got.tsse, "sse");
    // Cut the SSE stream from the admin side: EventSource fails, the client reopens it with
    // the exact per-partition since; events published meanwhile arrive once.
    const sseId = await page.evaluate(() => window.t.sse.client.connectionId);
    assert.ok(sseId, "SSE subscribed carried a connection id");
    assert.equal(await g.cut(sseId), 200);
    await waitFor(() => page.evaluate(() => window.t.sse.client.stats.connects === 2 || window.t.sse.client.state !== "open"), 5_000, "the SSE cut");
    const more = await publishN(channel, 5, 12);
    await waitFor(() => page.evaluate(() => window.t.websocket.ids.length === 17 && window.t.sse.ids.length === 17), 15_000, "17 events on both transports");
    await sleep(300);
    const after = await page.evaluate(() => ({ sse: window.t.sse.ids, stats: window.t.sse.client.stats, conn: window.t.sse.client.connectionId }));
    assert.equal(after.sse.length, 17);
    assert.deepEqual(new Set(after.sse), new Set([...ids, ...more]));
    assert.equal(after.stats.reconnects, 1);
    assert.equal(after.stats.resumes, 1);
    assert.equal(after.stats.duplicates, 0);
    assert.notEqual(after.conn, sseId);
    await page.screenshot({ path: path.join(ARTIFACTS, "cross-origin.png") });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test("the demo page at the gateway's / shows events and resumes after a DELETE cut", async () => {
  const channel = "demo-e2e";
  const { page, errors } = await newPage();
  try {
    const demo = `http://${g.listen}/?channel=${channel}&transport=websocket`;
    const probe = await g.http("GET", g.listen, "/");
    assert.equal(probe.status, 200, "the gateway serves the demo at / (server.demo = true)");
    await page.goto(demo);
    await waitFor(() => page.evaluate(() => window.fanlineDemo?.client?.state === "open" && window.fanlineDemo.sub.acked), 20_000, "demo subscribed");
    const first = await publishN(channel, 10, 0);
    await waitFor(() => page.evaluate(() => window.fanlineDemo.ids.length === 10), 15_000, "10 events in the demo");
    assert.equal(await page.locator("#count").textContent(), "10");
    assert.equal(await page.locator("#events li").count(), 10);
    const id = await page.evaluate(() => window.fanlineDemo.client.connectionId);
    assert.ok(id);
    // Cut it; publish while it is away (the client waits up to ~0.5 s first).
    assert.equal(await g.cut(id), 200);
    const during = await publishN(channel, 5, 10);
    await waitFor(() => page.evaluate(() => window.fanlineDemo.ids.length === 15), 20_000, "resumed events");
    await sleep(300); // a duplicate would show now
    const s = await page.evaluate(() => ({ ids: window.fanlineDemo.ids, stats: window.fanlineDemo.client.stats, conn: window.fanlineDemo.client.connectionId }));
    assert.equal(s.ids.length, 15);
    assert.deepEqual(new Set(s.ids), new Set([...first, ...during]));
    assert.equal(s.stats.reconnects, 1);
    assert.equal(s.stats.resets, 0);
    assert.equal(s.stats.duplicates, 0);
    assert.notEqual(s.conn, id);
    await waitFor(async () => (await page.locator("#resumes").textContent()) === "1", 5_000, "resume counter on the page");
    assert.equal(await page.locator("#state").textContent(), "open");
    // More traffic for the sparkline, then the artifact.
    await publishN(channel, 20, 15);
    await waitFor(() => page.evaluate(() => window.fanlineDemo.ids.length === 35), 15_000, "35 events");
    await sleep(400);
    await page.screenshot({ path: path.join(ARTIFACTS, "demo.png") });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
