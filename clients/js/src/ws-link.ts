// One WebSocket connection attempt: handshake (token as `bearer` subprotocol), `welcome`,
// paced sends, heartbeat watchdog, and the outcome that shapes the next backoff.

import { parseRetryAfter } from "./backoff.js";
import { Malformed, parseServerMessage } from "./frames.js";
import { newOutcome, type LinkSink, type Outcome, type Timer } from "./link.js";
import type { Logger, WebSocketCtor, WebSocketLike } from "./types.js";

const OPEN = 1;

/** A WebSocket link. The token travels as `Sec-WebSocket-Protocol: bearer, <token>`, which
 * browsers can send (they cannot set `Authorization` on a WebSocket). */
export class WsLink {
  readonly kind = "websocket" as const;
  private readonly sock: WebSocketLike;
  private readonly out: Outcome = newOutcome();
  private ended = false;
  private welcomed = false;
  private openTimer: Timer | undefined;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private lastRx = Date.now();
  private pinged = false;
  // Pacing (token bucket): stay under the server's inbound rate (`welcome.limits`).
  private queue: string[] = [];
  private tokens = 10;
  private rate = 10;
  private burst = 10;
  private refilledAt = Date.now();
  private flushTimer: Timer | undefined;

  constructor(
    Ctor: WebSocketCtor,
    url: string,
    token: string | null,
    private readonly sink: LinkSink,
    openTimeoutMs: number,
    private readonly log: Logger,
  ) {
    this.sock = token ? new Ctor(url, ["bearer", token]) : new Ctor(url);
    this.openTimer = setTimeout(() => this.abort("no welcome within " + openTimeoutMs + " ms"), openTimeoutMs);
    // The `ws` package tells why a handshake was refused; browsers do not.
    this.sock.on?.("unexpected-response", (_req: unknown, res: { statusCode?: number; headers?: Record<string, string | string[] | undefined> }) => {
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
    this.sock.addEventListener("message", (ev: { data: unknown }) => this.onMessage(ev.data));
    this.sock.addEventListener("error", () => {
      if (!this.out.why) this.out.why = this.out.opened ? "socket error" : "could not open";
    });
    this.sock.addEventListener("close", (ev: { code?: number; reason?: string }) => {
      this.out.code = ev.code;
      if (ev.code === 1013) this.out.overload = true;
      // Policy or internal error: not a healthy connection; do not come straight back.
      if (ev.code === 1008 || ev.code === 1011) this.out.healthy = false;
      this.finish(this.out.why || `closed ${ev.code ?? ""}${ev.reason ? " " + ev.reason : ""}`);
    });
  }

  /** Queues a message; sent as the pacing allows. */
  send(msg: object): void {
    if (this.ended) return;
    this.queue.push(JSON.stringify(msg));
    this.flush();
  }

  /** Ends the link now (no further callbacks except the one `end`). */
  abort(why: string, code = 1000): void {
    if (this.ended) return;
    try {
      this.sock.close(code, why.slice(0, 100));
    } catch {
      // closing an already-failed socket
    }
    this.finish(why);
  }

  private finish(why: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.openTimer);
    clearTimeout(this.flushTimer);
    clearInterval(this.watchdog);
    this.queue = [];
    this.out.why = this.out.why || why;
    this.sink.end(this.out);
  }

  private onMessage(data: unknown): void {
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
      this.sink.malformed(e as Error);
      this.abort(`malformed frame: ${(e as Error).message}`);
      return;
    }
    if (msg.type === "welcome") {
      if (this.welcomed) return;
      this.welcomed = true;
      this.out.healthy = true;
      clearTimeout(this.openTimer);
      this.rate = msg.rate;
      // Half the burst: leave room for pings and the application's own messages.
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
  private startWatchdog(hb: number): void {
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

  private flush(): void {
    if (this.ended || this.flushTimer !== undefined) return;
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = now;
    while (this.queue.length > 0 && this.tokens >= 1 && this.sock.readyState === OPEN) {
      this.tokens -= 1;
      const m = this.queue.shift() as string;
      try {
        this.sock.send(m);
      } catch (e) {
        this.abort(`send failed: ${(e as Error).message}`);
        return;
      }
    }
    if (this.queue.length > 0) {
      const wait = Math.max(5, ((1 - this.tokens) / this.rate) * 1000);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flush();
      }, wait);
    }
  }
}
