// FanlineClient: the reconnect loop over WebSocket or SSE links, subscriptions with
// per-partition cursors, and resume with `since` after every reconnect (SPEC §4, §10).
//
// Invariants: at most one link at a time; a link reports `end` exactly once; nothing the
// server sends makes the client throw (malformed frames are logged and end the link);
// application callbacks that throw are logged and do not disturb delivery.

import { Backoff } from "./backoff.js";
import { Cursor } from "./cursor.js";
import type { ServerMessage } from "./frames.js";
import type { OpenInfo, Outcome, LinkSink, Timer } from "./link.js";
import { SseLink } from "./sse-link.js";
import { Subscription } from "./subscription.js";
import type {
  ClientOptions,
  ClientStats,
  EventSourceCtor,
  Logger,
  State,
  SubscribeOptions,
  TransportKind,
  WebSocketCtor,
} from "./types.js";
import { WsLink } from "./ws-link.js";

type Link = WsLink | SseLink;

/** What `on("open", …)` receives. */
export interface OpenEvent {
  transport: "websocket" | "sse";
  connectionId?: string;
  epoch?: string;
  heartbeatMs?: number;
}

/** What `on("reconnect", …)` receives: the next attempt and how long until it. */
export interface ReconnectEvent {
  attempt: number;
  delayMs: number;
  reason: string;
  transport: "websocket" | "sse";
}

interface Listeners {
  state: (s: State) => void;
  open: (info: OpenEvent) => void;
  reconnect: (info: ReconnectEvent) => void;
}

const quiet: Logger = { debug() {}, info() {}, warn() {} };

/** `ws://h/v1/ws` → `http://h/v1/sse`. */
export function defaultSseUrl(wsUrl: string): string {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
  u.pathname = "/v1/sse";
  u.search = "";
  u.hash = "";
  return u.toString();
}

export class FanlineClient {
  /** Counters (connects, resumes, resets, failures, malformed frames, events, …). */
  readonly stats: ClientStats = {
    connects: 0,
    reconnects: 0,
    resumes: 0,
    resets: 0,
    failures: 0,
    malformed: 0,
    events: 0,
    duplicates: 0,
    dropped: 0,
  };
  /** `welcome.connection_id` of the current WebSocket (or the first SSE stream's id). */
  connectionId: string | undefined;
  /** `welcome.epoch` of the current connection. */
  epoch: string | undefined;

  private readonly opts: ClientOptions;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly WS: WebSocketCtor | undefined;
  private readonly ES: EventSourceCtor | null;
  private readonly sseUrl: string;
  private mode: "websocket" | "sse";
  private readonly kind: TransportKind;
  private st: State = "connecting";
  private announced = false;
  private link: Link | null = null;
  private linkUp = false;
  private gen = 0;
  private attempt = 0;
  private wsEverOpened = false;
  private closed = false;
  private retryTimer: Timer | undefined;
  private readonly subs = new Map<string, Subscription>();
  private readonly pending = new Map<string, Subscription>();
  private req = 0;
  private readonly listeners: { [K in keyof Listeners]: Set<Listeners[K]> } = {
    state: new Set(),
    open: new Set(),
    reconnect: new Set(),
  };

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.log = opts.logger === null ? quiet : (opts.logger ?? console);
    this.backoff = new Backoff(opts.backoff, opts.random);
    this.kind = opts.transport ?? "auto";
    if (!["auto", "websocket", "sse"].includes(this.kind)) throw new TypeError(`unknown transport ${String(this.kind)}`);
    this.WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    this.ES = opts.EventSource === null ? null : (opts.EventSource ?? (globalThis as { EventSource?: EventSourceCtor }).EventSource ?? null);
    this.sseUrl = opts.sseUrl ?? defaultSseUrl(opts.url);
    this.mode = this.kind === "sse" || (this.kind === "auto" && !this.WS) ? "sse" : "websocket";
    if (this.mode === "websocket" && !this.WS) {
      throw new TypeError("no WebSocket implementation: pass the `WebSocket` option (e.g. from the `ws` package)");
    }
    // Start after the caller had the chance to register listeners and subscribe.
    queueMicrotask(() => void this.connect());
  }

  /** The current state. */
  get state(): State {
    return this.st;
  }

  /** The transport in use (`auto` resolves to one of these). */
  get transport(): "websocket" | "sse" {
    return this.mode;
  }

  on<K extends keyof Listeners>(event: K, fn: Listeners[K]): () => void {
    this.listeners[event].add(fn);
    return () => this.listeners[event].delete(fn);
  }

  /** Subscribes to `channel`, now and again (with `since`) after every reconnect. */
  subscribe(channel: string, o: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new Error("client is closed");
    if (typeof channel !== "string" || channel === "") throw new TypeError("channel must be a non-empty string");
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${JSON.stringify(channel)}`);
    const sub = new Subscription(channel, o, new Cursor(o.since), () => this.unsubscribe(sub));
    this.subs.set(channel, sub);
    // WebSocket: after the welcome (the rest go at open); SSE: a stream of its own at once.
    if (this.link instanceof SseLink || (this.link && this.linkUp)) this.sendSubscribe(sub);
    return sub;
  }

  /** Closes the connection (1000) and stops reconnecting. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    const l = this.link;
    this.link = null;
    l?.abort("client closed");
    this.setState("closed");
  }

  // -- the loop ---------------------------------------------------------------------------

  private async connect(): Promise<void> {
    if (this.closed) return;
    this.setState(this.stats.connects > 0 || this.stats.failures > 0 ? "reconnecting" : "connecting");
    const gen = ++this.gen;
    let token: string | null;
    try {
      token = await this.tokenValue();
    } catch (e) {
      this.log.warn(`fanline: token provider failed: ${(e as Error)?.message ?? e}`);
      this.ended(gen, { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "token provider failed" });
      return;
    }
    if (this.closed || gen !== this.gen) return;
    const sink: LinkSink = {
      open: (info) => this.opened(gen, info),
      message: (m) => {
        if (gen === this.gen) this.handle(m);
      },
      malformed: (e) => {
        this.stats.malformed++;
        this.log.warn(`fanline: ${e.message}; reconnecting`);
      },
      end: (out) => this.ended(gen, out),
    };
    const timeout = this.opts.openTimeoutMs ?? 10_000;
    try {
      if (this.mode === "websocket") {
        this.link = new WsLink(this.WS as WebSocketCtor, this.opts.url, token, sink, timeout, this.log);
      } else {
        this.link = new SseLink(this.sseUrl, token, this.ES, sink, timeout, this.opts.sseHeartbeatMs ?? 20_000, this.log);
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
      }
    } catch (e) {
      // e.g. a SyntaxError for a bad URL from the WebSocket constructor
      this.log.warn(`fanline: cannot connect: ${(e as Error)?.message ?? e}`);
      this.ended(gen, { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "connect threw" });
    }
  }

  private async tokenValue(): Promise<string | null> {
    const t = this.opts.token;
    if (t == null || typeof t === "string") return t ?? null;
    const timeout = this.opts.openTimeoutMs ?? 10_000;
    let timer: Timer | undefined;
    try {
      const v = await Promise.race([
        Promise.resolve().then(t),
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`no token within ${timeout} ms`)), timeout);
        }),
      ]);
      if (v != null && typeof v !== "string") throw new TypeError(`token provider returned ${typeof v}, not a string`);
      return v ?? null;
    } finally {
      clearTimeout(timer);
    }
  }

  private opened(gen: number, info: OpenInfo): void {
    if (gen !== this.gen || this.closed) return;
    this.linkUp = true;
    if (this.mode === "websocket") this.wsEverOpened = true;
    if (this.stats.connects > 0) this.stats.reconnects++;
    this.stats.connects++;
    if (info.connectionId !== undefined) this.connectionId = info.connectionId;
    this.epoch = info.epoch;
    this.setState("open");
    this.emit("open", { transport: this.mode, ...info, connectionId: this.connectionId });
    if (this.link instanceof WsLink) for (const sub of this.subs.values()) this.sendSubscribe(sub);
  }

  private ended(gen: number, out: Outcome): void {
    if (gen !== this.gen) return;
    this.link = null;
    this.linkUp = false;
    this.pending.clear();
    for (const s of this.subs.values()) {
      s.sentGen = -1;
      s.acked = false;
    }
    if (this.closed) return;
    this.connectionId = undefined;
    if (out.healthy && !out.overload) {
      this.attempt = 0;
    } else {
      this.stats.failures++;
      // 1013/429/503 "try again later": start the backoff a few steps up.
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

  private sendSubscribe(sub: Subscription): void {
    const link = this.link;
    if (!link || sub.sentGen === this.gen) return;
    sub.sentGen = this.gen;
    let since = sub.cursor.since();
    // Acknowledged before but nothing received since: an empty cursor, so the server either
    // proves nothing was missed while away or answers recovered:false.
    if (since === null && sub.everAcked) since = sub.cursor.epoch !== undefined ? { epoch: sub.cursor.epoch } : {};
    sub.sentSince = since;
    if (link instanceof WsLink) {
      const id = `s${++this.req}`;
      this.pending.set(id, sub);
      const msg: Record<string, unknown> = { type: "subscribe", id, channels: [sub.channel] };
      if (sub.filter) msg.filter = sub.filter;
      if (sub.sentSince) msg.since = sub.sentSince;
      link.send(msg);
    } else {
      link.openStream({ channel: sub.channel, filter: sub.filter, since: sub.cursor.sinceQuery() ?? (since ? "" : null) });
    }
  }

  private unsubscribe(sub: Subscription): void {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    const link = this.link;
    if (link instanceof WsLink) {
      if (this.linkUp && sub.sentGen === this.gen) link.send({ type: "unsubscribe", id: `u${++this.req}`, channels: [sub.channel] });
    } else if (link) {
      link.closeStream(sub.channel);
    }
  }

  private handle(m: ServerMessage): void {
    switch (m.type) {
      case "event": {
        const ev = m.event;
        const sub = this.subs.get(ev.channel);
        if (!sub) return; // a late event of a channel just unsubscribed
        if (!sub.cursor.advance(ev.topic, ev.partition, ev.offset)) {
          this.stats.duplicates++;
          return;
        }
        if (this.epoch !== undefined) sub.cursor.epoch = this.epoch;
        this.stats.events++;
        this.call(sub.onEvent, ev);
        return;
      }
      case "subscribed": {
        let sub = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (m.id !== undefined) this.pending.delete(m.id);
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
          if (this.epoch !== undefined) sub.cursor.epoch = this.epoch;
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
        const sub = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (sub && this.subs.get(sub.channel) === sub) {
          this.pending.delete(m.id as string);
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

  private setState(s: State): void {
    if (s === this.st && this.announced) return;
    this.st = s;
    this.announced = true;
    this.emit("state", s);
  }

  private emit<K extends keyof Listeners>(event: K, arg: Parameters<Listeners[K]>[0]): void {
    for (const fn of [...this.listeners[event]]) this.call(fn as (a: typeof arg) => void, arg);
  }

  private call<T>(fn: ((a: T) => void) | undefined, arg: T): void {
    if (!fn) return;
    try {
      fn(arg);
    } catch (e) {
      this.log.warn(`fanline: a callback threw: ${(e as Error)?.stack ?? e}`);
    }
  }
}
