// src/backoff.ts
var Backoff = class {
  constructor(opts = {}, random = Math.random) {
    this.initialMs = opts.initialMs ?? 500;
    this.maxMs = opts.maxMs ?? 3e4;
    this.factor = opts.factor ?? 2;
    if (!(this.initialMs > 0 && this.initialMs <= this.maxMs) || !(this.factor >= 1)) {
      throw new RangeError("backoff needs 0 < initialMs <= maxMs and factor >= 1");
    }
    this.random = random;
  }
  /** The upper bound of attempt `attempt`'s delay. */
  ceiling(attempt) {
    if (attempt >= 64) return this.maxMs;
    return Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, Math.max(0, attempt)));
  }
  /** The jittered delay in ms. With a server `Retry-After`, at least that long (plus jitter,
   * so clients told the same value do not return in one burst). */
  delay(attempt, retryAfterMs) {
    let r = this.random();
    if (!(r >= 0 && r < 1)) r = 0.5;
    const d = r * this.ceiling(attempt);
    return retryAfterMs != null && retryAfterMs > 0 ? retryAfterMs + d : d;
  }
};
function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null) return null;
  const v = value.trim();
  if (v === "") return null;
  if (/^\d+$/.test(v)) return Math.min(Number(v), 3600) * 1e3;
  const when = Date.parse(v);
  if (Number.isNaN(when)) return null;
  return Math.min(Math.max(when - nowMs, 0), 36e5);
}

// src/cursor.ts
function parseEventId(id) {
  if (typeof id !== "string") return null;
  const m = /^(.+)\/(\d{1,10})\/(\d{1,19})$/.exec(id);
  if (m === null) return null;
  const partition = Number(m[2]);
  const offset = Number(m[3]);
  if (!Number.isSafeInteger(offset) || partition > 2147483647) return null;
  return { topic: m[1], partition, offset };
}
var Cursor = class {
  /** From a persisted `since` (application input: throws on a malformed one). */
  constructor(since) {
    this.offsets = /* @__PURE__ */ new Map();
    for (const [k, v] of Object.entries(since ?? {})) {
      if (k === "epoch") {
        if (typeof v === "string") this.epoch = v;
        continue;
      }
      if (!/^.+\/\d+$/.test(k)) throw new TypeError(`since key ${JSON.stringify(k)} must be "topic/partition"`);
      if (typeof v !== "number" || !Number.isSafeInteger(v)) {
        throw new TypeError(`since[${JSON.stringify(k)}] must be an integer offset`);
      }
      this.offsets.set(k, v);
    }
  }
  /** Records a received offset; `false` when it is not past the cursor (a duplicate), which
   * the client then does not deliver. */
  advance(topic, partition, offset) {
    const key = `${topic}/${partition}`;
    const last = this.offsets.get(key);
    if (last !== void 0 && offset <= last) return false;
    this.offsets.set(key, offset);
    return true;
  }
  /** Positions known for this channel. */
  get size() {
    return this.offsets.size;
  }
  /** After `recovered:false`: the old positions are void; start over in `epoch`. */
  reset(epoch) {
    this.offsets.clear();
    this.epoch = epoch;
  }
  /** The `since` for a resubscribe; `null` when nothing was received yet. `epoch` only when
   * known. */
  since() {
    if (this.offsets.size === 0) return null;
    const out = {};
    for (const k of [...this.offsets.keys()].sort()) out[k] = this.offsets.get(k);
    if (this.epoch !== void 0) out.epoch = this.epoch;
    return out;
  }
  /** The SSE form `topic/p:offset,…`; `null` when empty. */
  sinceQuery() {
    if (this.offsets.size === 0) return null;
    return [...this.offsets.keys()].sort().map((k) => `${k}:${this.offsets.get(k)}`).join(",");
  }
};

// src/frames.ts
var Malformed = class extends Error {
  constructor(msg) {
    super(msg);
    this.name = "Malformed";
  }
};
var snip = (s) => s.length > 200 ? s.slice(0, 200) + "\u2026" : s;
var isObj = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
var isCount = (v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
var str = (v) => typeof v === "string" ? v : void 0;
function parseServerMessage(raw) {
  if (typeof raw !== "string") throw new Malformed("binary frame");
  let m;
  try {
    m = JSON.parse(raw);
  } catch (e) {
    throw new Malformed(`not JSON: ${snip(raw)}`);
  }
  if (!isObj(m)) throw new Malformed(`not a JSON object: ${snip(raw)}`);
  const t = m.type;
  switch (t) {
    case "event":
      return { type: "event", event: parseEvent(m, raw) };
    case "welcome": {
      if (typeof m.connection_id !== "string") throw new Malformed(`welcome without connection_id: ${snip(raw)}`);
      const hb = m.heartbeat_ms;
      const limits = isObj(m.limits) ? m.limits : {};
      const rate = typeof limits.inbound_msgs_per_s === "number" && limits.inbound_msgs_per_s > 0 ? limits.inbound_msgs_per_s : 10;
      const burst = typeof limits.inbound_burst === "number" && limits.inbound_burst >= 1 ? limits.inbound_burst : 20;
      return {
        type: "welcome",
        connectionId: m.connection_id,
        epoch: str(m.epoch),
        heartbeatMs: typeof hb === "number" && hb > 0 && Number.isFinite(hb) ? hb : void 0,
        rate,
        burst
      };
    }
    case "subscribed": {
      const ch = m.channels;
      if (!Array.isArray(ch) || !ch.every((c) => typeof c === "string")) {
        throw new Malformed(`subscribed without channels: ${snip(raw)}`);
      }
      if (m.recovered !== void 0 && typeof m.recovered !== "boolean") throw new Malformed(`bad recovered: ${snip(raw)}`);
      return {
        type: "subscribed",
        id: str(m.id),
        channels: ch,
        recovered: m.recovered,
        replayed: isCount(m.replayed) ? m.replayed : void 0,
        reason: str(m.reason),
        connectionId: str(m.connection_id)
        // SSE: the stream's connection
      };
    }
    case "gap":
      if (typeof m.channel !== "string" || !isCount(m.dropped)) throw new Malformed(`bad gap: ${snip(raw)}`);
      return { type: "gap", channel: m.channel, dropped: m.dropped, reason: str(m.reason) };
    case "error":
      return { type: "error", id: str(m.id), code: String(m.code ?? "unknown"), message: String(m.message ?? "") };
    case "status":
      return { type: "status", kafka: str(m.kafka) };
    case "pong":
      return { type: "pong" };
    case "unsubscribed":
      return { type: "unsubscribed" };
    default:
      if (typeof t !== "string") throw new Malformed(`frame without a type: ${snip(raw)}`);
      return { type: "unknown", name: t };
  }
}
function parseEvent(m, raw) {
  const p = parseEventId(m.id);
  if (typeof m.channel !== "string" || p === null) throw new Malformed(`bad event: ${snip(raw)}`);
  const ev = { channel: m.channel, id: m.id, ...p, data: m.data };
  if (typeof m.ts === "number" && Number.isFinite(m.ts)) ev.ts = m.ts;
  if (typeof m.event_type === "string") ev.event_type = m.event_type;
  if (typeof m.correlation_id === "string") ev.correlation_id = m.correlation_id;
  return ev;
}

// src/link.ts
function newOutcome() {
  return { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "" };
}

// src/sse-parse.ts
var MAX_LINE = 8 * 1024 * 1024;
var SseParser = class {
  constructor(sink) {
    this.sink = sink;
    this.buf = "";
    this.data = [];
    this.name = "";
    this.skipLf = false;
  }
  /** Feeds decoded text; throws `RangeError` on a line over the limit. */
  push(chunk) {
    let text = this.buf + chunk;
    this.buf = "";
    let start = 0;
    if (this.skipLf && text.startsWith("\n")) start = 1;
    this.skipLf = false;
    for (; ; ) {
      let i = start;
      while (i < text.length && text[i] !== "\n" && text[i] !== "\r") i++;
      if (i === text.length) break;
      this.line(text.slice(start, i));
      if (text[i] === "\r") {
        if (i + 1 === text.length) this.skipLf = true;
        else if (text[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    text = text.slice(start);
    if (text.length > MAX_LINE) throw new RangeError("SSE line too long");
    this.buf = text;
  }
  line(l) {
    if (l === "") {
      if (this.data.length > 0) this.sink.event(this.name || "message", this.data.join("\n"));
      this.data = [];
      this.name = "";
      return;
    }
    if (l.startsWith(":")) {
      this.sink.comment();
      return;
    }
    const c = l.indexOf(":");
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? "" : l.slice(c + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.name = value;
  }
};

// src/sse-link.ts
var enc = encodeURIComponent;
function streamUrl(base, s, token) {
  const q = [`channels=${enc(s.channel)}`];
  for (const [k, v] of Object.entries(s.filter ?? {})) {
    for (const x of Array.isArray(v) ? v : [v]) {
      q.push(`filter.${enc(k)}=${enc(typeof x === "string" ? x : JSON.stringify(x))}`);
    }
  }
  if (s.since !== null) q.push(`since=${enc(s.since)}`);
  if (token) q.push(`token=${enc(token)}`);
  return base + (base.includes("?") ? "&" : "?") + q.join("&");
}
var SseLink = class {
  constructor(base, token, ES, sink, openTimeoutMs, heartbeatMs, log) {
    this.base = base;
    this.token = token;
    this.ES = ES;
    this.sink = sink;
    this.heartbeatMs = heartbeatMs;
    this.log = log;
    this.kind = "sse";
    this.out = newOutcome();
    this.streams = /* @__PURE__ */ new Map();
    this.ended = false;
    this.up = false;
    this.lastRx = Date.now();
    this.openTimer = setTimeout(() => this.abort(`no stream opened within ${openTimeoutMs} ms`), openTimeoutMs);
    queueMicrotask(() => this.checkUp());
  }
  /** Opens the stream of one subscription (replacing an earlier one of that channel). */
  openStream(spec) {
    if (this.ended) return;
    this.streams.get(spec.channel)?.close();
    const url = streamUrl(this.base, spec, this.ES ? this.token : null);
    const st = this.ES ? this.viaEventSource(url, spec.channel) : this.viaFetch(url, spec.channel);
    this.streams.set(spec.channel, st);
  }
  closeStream(channel) {
    this.streams.get(channel)?.close();
    this.streams.delete(channel);
    this.checkUp();
  }
  abort(why) {
    this.finish(why);
  }
  finish(why) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.openTimer);
    clearInterval(this.watchdog);
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    this.out.why = this.out.why || why;
    this.sink.end(this.out);
  }
  checkUp() {
    if (this.ended || this.up) return;
    for (const s of this.streams.values()) if (!s.subscribed) return;
    this.up = true;
    this.out.healthy = true;
    clearTimeout(this.openTimer);
    if (!this.ES) this.startWatchdog();
    this.sink.open({ connectionId: this.connectionId });
  }
  data(channel, text) {
    if (this.ended) return;
    this.lastRx = Date.now();
    let msg;
    try {
      msg = parseServerMessage(text);
    } catch (e) {
      this.out.malformed = true;
      this.out.healthy = false;
      this.sink.malformed(e);
      this.abort(`malformed SSE data: ${e.message}`);
      return;
    }
    if (msg.type === "subscribed") {
      const st = this.streams.get(channel);
      if (st) st.subscribed = true;
      this.connectionId ?? (this.connectionId = msg.connectionId);
      this.sink.message(msg);
      this.checkUp();
      return;
    }
    this.sink.message(msg);
  }
  failed(channel, why) {
    const st = this.streams.get(channel);
    if (this.ended || !st) return;
    if (!st.subscribed) this.out.healthy = false;
    this.finish(why);
  }
  startWatchdog() {
    const hb = this.heartbeatMs;
    this.watchdog = setInterval(() => {
      const idle = Date.now() - this.lastRx;
      if (idle >= 1.5 * hb) {
        this.log.warn(`fanline: SSE silent for ${idle} ms (heartbeat ${hb} ms); reconnecting`);
        this.abort("heartbeat timeout");
      }
    }, Math.max(10, Math.floor(hb / 8)));
  }
  viaEventSource(url, channel) {
    const ES = this.ES;
    const es = new ES(url);
    let closed = false;
    const st = {
      subscribed: false,
      close: () => {
        closed = true;
        es.close();
      }
    };
    const onData = (ev) => {
      if (closed) return;
      if (typeof ev.data === "string") this.data(channel, ev.data);
    };
    for (const name of /* @__PURE__ */ new Set([channel, "message", "subscribed", "gap", "status"])) es.addEventListener(name, onData);
    es.addEventListener("open", () => {
      this.out.opened = true;
      this.lastRx = Date.now();
    });
    es.addEventListener("error", (ev) => {
      if (closed) return;
      if (typeof ev.data === "string") return onData(ev);
      closed = true;
      es.close();
      this.failed(channel, "SSE stream failed");
    });
    return st;
  }
  viaFetch(url, channel) {
    const ctl = new AbortController();
    let closed = false;
    const st = {
      subscribed: false,
      close: () => {
        closed = true;
        ctl.abort();
      }
    };
    const headers = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const parser = new SseParser({
      event: (_name, data) => {
        if (!closed) this.data(channel, data);
      },
      comment: () => {
        this.lastRx = Date.now();
      }
    });
    (async () => {
      const res = await fetch(url, { headers, signal: ctl.signal, cache: "no-store" });
      if (res.status !== 200) {
        this.out.retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
        this.out.overload = res.status === 429 || res.status === 503;
        this.out.why = `SSE refused: HTTP ${res.status}`;
        await res.body?.cancel().catch(() => void 0);
        throw new Error(this.out.why);
      }
      if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
        throw new Malformed(`SSE answered ${res.headers.get("content-type")}`);
      }
      this.out.opened = true;
      this.lastRx = Date.now();
      if (!res.body) throw new Error("SSE response without a body");
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (; ; ) {
        const { value, done } = await reader.read();
        if (done || closed || this.ended) break;
        this.lastRx = Date.now();
        parser.push(dec.decode(value, { stream: true }));
      }
      throw new Error("SSE stream ended");
    })().catch((e) => {
      if (closed) return;
      if (e instanceof Malformed || e instanceof RangeError) {
        this.out.malformed = true;
        this.out.healthy = false;
        this.sink.malformed(e);
      }
      this.failed(channel, e.message);
    });
    return st;
  }
};

// src/subscription.ts
var Subscription = class {
  /** @internal */
  constructor(channel, o, cursor, stop) {
    /** The server acknowledged the subscribe on the current connection. */
    this.acked = false;
    /** @internal acknowledged on some connection (a later resubscribe sends a cursor). */
    this.everAcked = false;
    /** @internal */
    this.sentGen = -1;
    /** @internal */
    this.sentSince = null;
    this.channel = channel;
    this.filter = o.filter && Object.keys(o.filter).length > 0 ? o.filter : void 0;
    this.cursor = cursor;
    this.onEvent = o.onEvent;
    this.onGap = o.onGap;
    this.onReset = o.onReset;
    this.onError = o.onError;
    this.onSubscribed = o.onSubscribed;
    this.stop = stop;
  }
  /** The position received so far (last offset per `topic/partition`, and `epoch`): persist
   * it and pass it as `subscribe(channel, { since })` to resume after a restart. */
  since() {
    return this.cursor.since();
  }
  unsubscribe() {
    this.stop();
  }
};

// src/ws-link.ts
var OPEN = 1;
var WsLink = class {
  constructor(Ctor, url, token, sink, openTimeoutMs, log) {
    this.sink = sink;
    this.log = log;
    this.kind = "websocket";
    this.out = newOutcome();
    this.ended = false;
    this.welcomed = false;
    this.lastRx = Date.now();
    this.pinged = false;
    // Pacing (token bucket): stay under the server's inbound rate (`welcome.limits`).
    this.queue = [];
    this.tokens = 10;
    this.rate = 10;
    this.burst = 10;
    this.refilledAt = Date.now();
    this.sock = token ? new Ctor(url, ["bearer", token]) : new Ctor(url);
    this.openTimer = setTimeout(() => this.abort("no welcome within " + openTimeoutMs + " ms"), openTimeoutMs);
    this.sock.on?.("unexpected-response", (_req, res) => {
      const status = res?.statusCode ?? 0;
      const ra = res?.headers?.["retry-after"];
      this.out.retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra);
      this.out.overload = status === 429 || status === 503;
      this.out.why = `handshake refused: HTTP ${status}`;
      this.sock.close();
    });
    this.sock.addEventListener("open", () => {
      this.out.opened = true;
    });
    this.sock.addEventListener("message", (ev) => this.onMessage(ev.data));
    this.sock.addEventListener("error", () => {
      if (!this.out.why) this.out.why = this.out.opened ? "socket error" : "could not open";
    });
    this.sock.addEventListener("close", (ev) => {
      this.out.code = ev.code;
      if (ev.code === 1013) this.out.overload = true;
      if (ev.code === 1008 || ev.code === 1011) this.out.healthy = false;
      this.finish(this.out.why || `closed ${ev.code ?? ""}${ev.reason ? " " + ev.reason : ""}`);
    });
  }
  /** Queues a message; sent as the pacing allows. */
  send(msg) {
    if (this.ended) return;
    this.queue.push(JSON.stringify(msg));
    this.flush();
  }
  /** Ends the link now (no further callbacks except the one `end`). */
  abort(why, code = 1e3) {
    if (this.ended) return;
    try {
      this.sock.close(code, why.slice(0, 100));
    } catch {
    }
    this.finish(why);
  }
  finish(why) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.openTimer);
    clearTimeout(this.flushTimer);
    clearInterval(this.watchdog);
    this.queue = [];
    this.out.why = this.out.why || why;
    this.sink.end(this.out);
  }
  onMessage(data) {
    if (this.ended) return;
    this.lastRx = Date.now();
    this.pinged = false;
    let msg;
    try {
      msg = parseServerMessage(data);
      if (!this.welcomed && msg.type !== "welcome") throw new Malformed(`expected welcome, got ${msg.type}`);
    } catch (e) {
      this.out.malformed = true;
      this.out.healthy = false;
      this.sink.malformed(e);
      this.abort(`malformed frame: ${e.message}`);
      return;
    }
    if (msg.type === "welcome") {
      if (this.welcomed) return;
      this.welcomed = true;
      this.out.healthy = true;
      clearTimeout(this.openTimer);
      this.rate = msg.rate;
      this.burst = Math.max(1, Math.floor(msg.burst / 2));
      this.tokens = this.burst;
      if (msg.heartbeatMs) this.startWatchdog(msg.heartbeatMs);
      this.sink.open({ connectionId: msg.connectionId, epoch: msg.epoch, heartbeatMs: msg.heartbeatMs });
      return;
    }
    this.sink.message(msg);
  }
  /** Dead-peer detection: after `hb` of silence send a `ping` (browsers cannot see protocol
   * pings); nothing at all within 1.5 × `hb` → reconnect. */
  startWatchdog(hb) {
    this.watchdog = setInterval(() => {
      const idle = Date.now() - this.lastRx;
      if (idle >= 1.5 * hb) {
        this.log.warn(`fanline: nothing received for ${idle} ms (heartbeat ${hb} ms); reconnecting`);
        this.abort("heartbeat timeout");
      } else if (idle >= hb && !this.pinged) {
        this.pinged = true;
        this.send({ type: "ping" });
      }
    }, Math.max(10, Math.floor(hb / 8)));
  }
  flush() {
    if (this.ended || this.flushTimer !== void 0) return;
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.refilledAt) / 1e3 * this.rate);
    this.refilledAt = now;
    while (this.queue.length > 0 && this.tokens >= 1 && this.sock.readyState === OPEN) {
      this.tokens -= 1;
      const m = this.queue.shift();
      try {
        this.sock.send(m);
      } catch (e) {
        this.abort(`send failed: ${e.message}`);
        return;
      }
    }
    if (this.queue.length > 0) {
      const wait = Math.max(5, (1 - this.tokens) / this.rate * 1e3);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = void 0;
        this.flush();
      }, wait);
    }
  }
};

// src/client.ts
var quiet = { debug() {
}, info() {
}, warn() {
} };
function defaultSseUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
  u.pathname = "/v1/sse";
  u.search = "";
  u.hash = "";
  return u.toString();
}
var FanlineClient = class {
  constructor(opts) {
    /** Counters (connects, resumes, resets, failures, malformed frames, events, …). */
    this.stats = {
      connects: 0,
      reconnects: 0,
      resumes: 0,
      resets: 0,
      failures: 0,
      malformed: 0,
      events: 0,
      duplicates: 0,
      dropped: 0
    };
    this.st = "connecting";
    this.announced = false;
    this.link = null;
    this.linkUp = false;
    this.gen = 0;
    this.attempt = 0;
    this.wsEverOpened = false;
    this.closed = false;
    this.subs = /* @__PURE__ */ new Map();
    this.pending = /* @__PURE__ */ new Map();
    this.req = 0;
    this.listeners = {
      state: /* @__PURE__ */ new Set(),
      open: /* @__PURE__ */ new Set(),
      reconnect: /* @__PURE__ */ new Set()
    };
    this.opts = opts;
    this.log = opts.logger === null ? quiet : opts.logger ?? console;
    this.backoff = new Backoff(opts.backoff, opts.random);
    this.kind = opts.transport ?? "auto";
    if (!["auto", "websocket", "sse"].includes(this.kind)) throw new TypeError(`unknown transport ${String(this.kind)}`);
    this.WS = opts.WebSocket ?? globalThis.WebSocket;
    this.ES = opts.EventSource === null ? null : opts.EventSource ?? globalThis.EventSource ?? null;
    this.sseUrl = opts.sseUrl ?? defaultSseUrl(opts.url);
    this.mode = this.kind === "sse" || this.kind === "auto" && !this.WS ? "sse" : "websocket";
    if (this.mode === "websocket" && !this.WS) {
      throw new TypeError("no WebSocket implementation: pass the `WebSocket` option (e.g. from the `ws` package)");
    }
    queueMicrotask(() => void this.connect());
  }
  /** The current state. */
  get state() {
    return this.st;
  }
  /** The transport in use (`auto` resolves to one of these). */
  get transport() {
    return this.mode;
  }
  on(event, fn) {
    this.listeners[event].add(fn);
    return () => this.listeners[event].delete(fn);
  }
  /** Subscribes to `channel`, now and again (with `since`) after every reconnect. */
  subscribe(channel, o = {}) {
    if (this.closed) throw new Error("client is closed");
    if (typeof channel !== "string" || channel === "") throw new TypeError("channel must be a non-empty string");
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${JSON.stringify(channel)}`);
    const sub = new Subscription(channel, o, new Cursor(o.since), () => this.unsubscribe(sub));
    this.subs.set(channel, sub);
    if (this.link instanceof SseLink || this.link && this.linkUp) this.sendSubscribe(sub);
    return sub;
  }
  /** Closes the connection (1000) and stops reconnecting. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    const l = this.link;
    this.link = null;
    l?.abort("client closed");
    this.setState("closed");
  }
  // -- the loop ---------------------------------------------------------------------------
  async connect() {
    if (this.closed) return;
    this.setState(this.stats.connects > 0 || this.stats.failures > 0 ? "reconnecting" : "connecting");
    const gen = ++this.gen;
    let token;
    try {
      token = await this.tokenValue();
    } catch (e) {
      this.log.warn(`fanline: token provider failed: ${e?.message ?? e}`);
      this.ended(gen, { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "token provider failed" });
      return;
    }
    if (this.closed || gen !== this.gen) return;
    const sink = {
      open: (info) => this.opened(gen, info),
      message: (m) => {
        if (gen === this.gen) this.handle(m);
      },
      malformed: (e) => {
        this.stats.malformed++;
        this.log.warn(`fanline: ${e.message}; reconnecting`);
      },
      end: (out) => this.ended(gen, out)
    };
    const timeout = this.opts.openTimeoutMs ?? 1e4;
    try {
      if (this.mode === "websocket") {
        this.link = new WsLink(this.WS, this.opts.url, token, sink, timeout, this.log);
      } else {
        this.link = new SseLink(this.sseUrl, token, this.ES, sink, timeout, this.opts.sseHeartbeatMs ?? 2e4, this.log);
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
      }
    } catch (e) {
      this.log.warn(`fanline: cannot connect: ${e?.message ?? e}`);
      this.ended(gen, { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "connect threw" });
    }
  }
  async tokenValue() {
    const t = this.opts.token;
    if (t == null || typeof t === "string") return t ?? null;
    const timeout = this.opts.openTimeoutMs ?? 1e4;
    let timer;
    try {
      const v = await Promise.race([
        Promise.resolve().then(t),
        new Promise((_, rej) => {
          timer = setTimeout(() => rej(new Error(`no token within ${timeout} ms`)), timeout);
        })
      ]);
      if (v != null && typeof v !== "string") throw new TypeError(`token provider returned ${typeof v}, not a string`);
      return v ?? null;
    } finally {
      clearTimeout(timer);
    }
  }
  opened(gen, info) {
    if (gen !== this.gen || this.closed) return;
    this.linkUp = true;
    if (this.mode === "websocket") this.wsEverOpened = true;
    if (this.stats.connects > 0) this.stats.reconnects++;
    this.stats.connects++;
    if (info.connectionId !== void 0) this.connectionId = info.connectionId;
    this.epoch = info.epoch;
    this.setState("open");
    this.emit("open", { transport: this.mode, ...info, connectionId: this.connectionId });
    if (this.link instanceof WsLink) for (const sub of this.subs.values()) this.sendSubscribe(sub);
  }
  ended(gen, out) {
    if (gen !== this.gen) return;
    this.link = null;
    this.linkUp = false;
    this.pending.clear();
    for (const s of this.subs.values()) {
      s.sentGen = -1;
      s.acked = false;
    }
    if (this.closed) return;
    this.connectionId = void 0;
    if (out.healthy && !out.overload) {
      this.attempt = 0;
    } else {
      this.stats.failures++;
      if (out.overload) this.attempt = Math.max(this.attempt, 3);
    }
    if (this.kind === "auto" && this.mode === "websocket" && !out.opened && !this.wsEverOpened) {
      this.log.info("fanline: WebSocket did not open; falling back to SSE");
      this.mode = "sse";
    }
    const delay = this.backoff.delay(this.attempt, out.retryAfterMs);
    this.attempt++;
    this.log.info(`fanline: ${out.why}; reconnecting in ${Math.round(delay)} ms (attempt ${this.attempt})`);
    this.setState("reconnecting");
    this.emit("reconnect", { attempt: this.attempt, delayMs: delay, reason: out.why, transport: this.mode });
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }
  // -- subscriptions ----------------------------------------------------------------------
  sendSubscribe(sub) {
    const link = this.link;
    if (!link || sub.sentGen === this.gen) return;
    sub.sentGen = this.gen;
    let since = sub.cursor.since();
    if (since === null && sub.everAcked) since = sub.cursor.epoch !== void 0 ? { epoch: sub.cursor.epoch } : {};
    sub.sentSince = since;
    if (link instanceof WsLink) {
      const id = `s${++this.req}`;
      this.pending.set(id, sub);
      const msg = { type: "subscribe", id, channels: [sub.channel] };
      if (sub.filter) msg.filter = sub.filter;
      if (sub.sentSince) msg.since = sub.sentSince;
      link.send(msg);
    } else {
      link.openStream({ channel: sub.channel, filter: sub.filter, since: sub.cursor.sinceQuery() ?? (since ? "" : null) });
    }
  }
  unsubscribe(sub) {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    const link = this.link;
    if (link instanceof WsLink) {
      if (this.linkUp && sub.sentGen === this.gen) link.send({ type: "unsubscribe", id: `u${++this.req}`, channels: [sub.channel] });
    } else if (link) {
      link.closeStream(sub.channel);
    }
  }
  handle(m) {
    switch (m.type) {
      case "event": {
        const ev = m.event;
        const sub = this.subs.get(ev.channel);
        if (!sub) return;
        if (!sub.cursor.advance(ev.topic, ev.partition, ev.offset)) {
          this.stats.duplicates++;
          return;
        }
        if (this.epoch !== void 0) sub.cursor.epoch = this.epoch;
        this.stats.events++;
        this.call(sub.onEvent, ev);
        return;
      }
      case "subscribed": {
        let sub = m.id !== void 0 ? this.pending.get(m.id) : void 0;
        if (m.id !== void 0) this.pending.delete(m.id);
        if (!sub && m.channels.length === 1) sub = this.subs.get(m.channels[0]);
        if (!sub || this.subs.get(sub.channel) !== sub) return;
        const since = sub.sentSince;
        sub.acked = true;
        sub.everAcked = true;
        if (m.recovered === false) {
          this.stats.resets++;
          sub.cursor.reset(this.epoch);
          this.log.info(`fanline: ${sub.channel}: resume not possible (${m.reason ?? "no reason"}); reload state`);
          this.call(sub.onReset, { channel: sub.channel, reason: m.reason, since: since ?? {} });
        } else {
          if (since && m.recovered === true) this.stats.resumes++;
          if (this.epoch !== void 0) sub.cursor.epoch = this.epoch;
        }
        this.call(sub.onSubscribed, { channel: sub.channel, recovered: m.recovered, replayed: m.replayed, resumed: since !== null });
        return;
      }
      case "gap": {
        this.stats.dropped += m.dropped;
        const sub = this.subs.get(m.channel);
        if (sub) this.call(sub.onGap, { channel: m.channel, dropped: m.dropped, reason: m.reason });
        return;
      }
      case "error": {
        const sub = m.id !== void 0 ? this.pending.get(m.id) : void 0;
        if (sub && this.subs.get(sub.channel) === sub) {
          this.pending.delete(m.id);
          this.subs.delete(sub.channel);
          this.log.warn(`fanline: subscribe ${sub.channel} refused: ${m.code} ${m.message}`);
          this.call(sub.onError, { channel: sub.channel, code: m.code, message: m.message });
        } else {
          this.log.warn(`fanline: server error ${m.code}: ${m.message}`);
        }
        return;
      }
      case "status":
        this.log.info(`fanline: server status kafka=${m.kafka}`);
        return;
      default:
        return;
    }
  }
  // -- plumbing ---------------------------------------------------------------------------
  setState(s) {
    if (s === this.st && this.announced) return;
    this.st = s;
    this.announced = true;
    this.emit("state", s);
  }
  emit(event, arg) {
    for (const fn of [...this.listeners[event]]) this.call(fn, arg);
  }
  call(fn, arg) {
    if (!fn) return;
    try {
      fn(arg);
    } catch (e) {
      this.log.warn(`fanline: a callback threw: ${e?.stack ?? e}`);
    }
  }
};
export {
  Backoff,
  Cursor,
  FanlineClient,
  SseParser,
  Subscription,
  defaultSseUrl,
  parseEventId,
  parseRetryAfter,
  streamUrl
};
