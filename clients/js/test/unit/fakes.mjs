// Fake WebSocket and EventSource classes a test drives by hand: the "server" side is a set of
// methods on each instance (open, recv, welcome, serverClose, fail).

export function fakeWebSocket() {
  let n = 0;
  class FakeWs {
    static instances = [];
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.listeners = {};
      this.emitter = {};
      this.closedWith = null;
      this.n = ++n;
      FakeWs.instances.push(this);
    }
    addEventListener(t, f) {
      (this.listeners[t] ??= []).push(f);
    }
    emit(t, ev) {
      for (const f of this.listeners[t] ?? []) f(ev);
    }
    send(d) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(d));
    }
    close(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedWith = { code, reason };
      queueMicrotask(() => this.emit("close", { code: 1005 }));
    }
    // -- the server's side --
    open() {
      this.readyState = 1;
      this.emit("open", {});
    }
    recv(m) {
      this.emit("message", { data: typeof m === "string" || m instanceof Uint8Array ? m : JSON.stringify(m) });
    }
    welcome(extra = {}) {
      this.open();
      this.recv({
        type: "welcome",
        connection_id: `conn-${this.n}`,
        protocol: 1,
        heartbeat_ms: 20000,
        limits: { inbound_msgs_per_s: 1000, inbound_burst: 2000 },
        ...extra,
      });
    }
    event(channel, id, data = {}) {
      this.recv({ type: "event", channel, id, ts: Date.now(), data });
    }
    serverClose(code) {
      this.readyState = 3;
      this.emit("close", { code });
    }
    fail() {
      this.readyState = 3;
      this.emit("error", {});
      this.emit("close", { code: 1006 });
    }
    subscribes() {
      return this.sent.filter((m) => m.type === "subscribe");
    }
  }
  return FakeWs;
}

export function fakeEventSource() {
  class FakeEs {
    static instances = [];
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.listeners = {};
      this.closed = false;
      FakeEs.instances.push(this);
    }
    addEventListener(t, f) {
      (this.listeners[t] ??= []).push(f);
    }
    emit(t, ev) {
      for (const f of this.listeners[t] ?? []) f(ev);
    }
    close() {
      this.closed = true;
      this.readyState = 2;
    }
    // -- the server's side --
    open() {
      this.readyState = 1;
      this.emit("open", {});
    }
    send(name, obj) {
      this.emit(name, { data: typeof obj === "string" ? obj : JSON.stringify(obj) });
    }
    fail() {
      this.readyState = 0;
      this.emit("error", {});
    }
  }
  return FakeEs;
}

/** Polls `cond` every 2 ms, up to `ms`. */
export async function waitFor(cond, ms = 2000, what = "condition") {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export const quiet = { debug() {}, info() {}, warn() {} };

/** A logger that records warnings. */
export function recorder() {
  const lines = [];
  return { lines, debug() {}, info() {}, warn: (m) => lines.push(m) };
}
