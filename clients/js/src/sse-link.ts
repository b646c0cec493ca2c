// The SSE link: one `GET /v1/sse` stream per subscription (its own filter and exact `since`),
// through the browser's EventSource or, where there is none (Node), a `fetch` reader. The
// link is up once every stream it started with said `subscribed`; any stream failing ends
// the whole link, and the client reconnects every stream with `since` (nothing is missed).

import { parseRetryAfter } from "./backoff.js";
import { Malformed, parseServerMessage, type ServerMessage } from "./frames.js";
import { newOutcome, type LinkSink, type Outcome, type Timer } from "./link.js";
import { SseParser } from "./sse-parse.js";
import type { EventSourceCtor, EventSourceLike, Filter, Logger } from "./types.js";

/** What a stream is opened for. */
export interface StreamSpec {
  channel: string;
  filter?: Filter;
  /** `topic/p:offset,…`; `""` an empty cursor; `null` none (start live). */
  since: string | null;
}

const enc = encodeURIComponent;

/** The stream URL: `channels`, `filter.<key>=v` (repeated for a list), `since`, and with
 * EventSource (no headers) the token as `?token=`. */
export function streamUrl(base: string, s: StreamSpec, token: string | null): string {
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

interface Stream {
  close(): void;
  subscribed: boolean;
}

export class SseLink {
  readonly kind = "sse" as const;
  private readonly out: Outcome = newOutcome();
  private readonly streams = new Map<string, Stream>();
  private ended = false;
  private up = false;
  private readonly openTimer: Timer;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private lastRx = Date.now();
  private connectionId: string | undefined;

  constructor(
    private readonly base: string,
    private readonly token: string | null,
    private readonly ES: EventSourceCtor | null,
    private readonly sink: LinkSink,
    openTimeoutMs: number,
    private readonly heartbeatMs: number,
    private readonly log: Logger,
  ) {
    this.openTimer = setTimeout(() => this.abort(`no stream opened within ${openTimeoutMs} ms`), openTimeoutMs);
    // With no subscriptions there is nothing to open: up at once.
    queueMicrotask(() => this.checkUp());
  }

  /** Opens the stream of one subscription (replacing an earlier one of that channel). */
  openStream(spec: StreamSpec): void {
    if (this.ended) return;
    this.streams.get(spec.channel)?.close();
    const url = streamUrl(this.base, spec, this.ES ? this.token : null);
    const st: Stream = this.ES ? this.viaEventSource(url, spec.channel) : this.viaFetch(url, spec.channel);
    this.streams.set(spec.channel, st);
  }

  closeStream(channel: string): void {
    this.streams.get(channel)?.close();
    this.streams.delete(channel);
    this.checkUp();
  }

  abort(why: string): void {
    this.finish(why);
  }

  private finish(why: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.openTimer);
    clearInterval(this.watchdog);
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    this.out.why = this.out.why || why;
    this.sink.end(this.out);
  }

  private checkUp(): void {
    if (this.ended || this.up) return;
    for (const s of this.streams.values()) if (!s.subscribed) return;
    this.up = true;
    this.out.healthy = true;
    clearTimeout(this.openTimer);
    if (!this.ES) this.startWatchdog(); // EventSource hides the `:` heartbeats
    this.sink.open({ connectionId: this.connectionId });
  }

  private data(channel: string, text: string): void {
    if (this.ended) return;
    this.lastRx = Date.now();
    let msg: ServerMessage;
    try {
      msg = parseServerMessage(text);
    } catch (e) {
      this.out.malformed = true;
      this.out.healthy = false;
      this.sink.malformed(e as Error);
      this.abort(`malformed SSE data: ${(e as Error).message}`);
      return;
    }
    if (msg.type === "subscribed") {
      const st = this.streams.get(channel);
      if (st) st.subscribed = true;
      this.connectionId ??= msg.connectionId;
      this.sink.message(msg);
      this.checkUp();
      return;
    }
    this.sink.message(msg);
  }

  private failed(channel: string, why: string): void {
    const st = this.streams.get(channel);
    if (this.ended || !st) return;
    // A stream that never got to `subscribed` is a failed attempt, even on a link that is up.
    if (!st.subscribed) this.out.healthy = false;
    this.finish(why);
  }

  private startWatchdog(): void {
    const hb = this.heartbeatMs;
    this.watchdog = setInterval(() => {
      const idle = Date.now() - this.lastRx;
      if (idle >= 1.5 * hb) {
        this.log.warn(`fanline: SSE silent for ${idle} ms (heartbeat ${hb} ms); reconnecting`);
        this.abort("heartbeat timeout");
      }
    }, Math.max(10, Math.floor(hb / 8)));
  }

  private viaEventSource(url: string, channel: string): Stream {
    const ES = this.ES as EventSourceCtor;
    const es: EventSourceLike = new ES(url);
    let closed = false;
    const st: Stream = {
      subscribed: false,
      close: () => {
        closed = true;
        es.close();
      },
    };
    const onData = (ev: { data?: unknown }) => {
      if (closed) return;
      if (typeof ev.data === "string") this.data(channel, ev.data);
    };
    // Events are named after their channel; control messages after their type.
    for (const name of new Set([channel, "message", "subscribed", "gap", "status"])) es.addEventListener(name, onData);
    es.addEventListener("open", () => {
      this.out.opened = true;
      this.lastRx = Date.now();
    });
    es.addEventListener("error", (ev: { data?: unknown }) => {
      if (closed) return;
      if (typeof ev.data === "string") return onData(ev); // the server's `event: error`
      // EventSource would reconnect on its own with Last-Event-ID; the client does it
      // instead, with backoff, a fresh token and the exact per-partition `since`.
      closed = true;
      es.close();
      this.failed(channel, "SSE stream failed");
    });
    return st;
  }

  private viaFetch(url: string, channel: string): Stream {
    const ctl = new AbortController();
    let closed = false;
    const st: Stream = {
      subscribed: false,
      close: () => {
        closed = true;
        ctl.abort();
      },
    };
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const parser = new SseParser({
      event: (_name, data) => {
        if (!closed) this.data(channel, data);
      },
      comment: () => {
        this.lastRx = Date.now();
      },
    });
    (async () => {
      const res = await fetch(url, { headers, signal: ctl.signal, cache: "no-store" });
      if (res.status !== 200) {
        this.out.retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
        this.out.overload = res.status === 429 || res.status === 503;
        this.out.why = `SSE refused: HTTP ${res.status}`;
        await res.body?.cancel().catch(() => undefined);
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
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed || this.ended) break;
        this.lastRx = Date.now();
        parser.push(dec.decode(value, { stream: true }));
      }
      throw new Error("SSE stream ended");
    })().catch((e: Error) => {
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
}
