// Public types of the fanline client: options, events, callbacks (protocol v1, SPEC §4/§10).

/** Connection state, announced through `client.on("state", …)`. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** Which transport to use. `auto` tries WebSocket and falls back to SSE when a WebSocket
 * never opens (blocked by a proxy, a firewall or a browser extension). */
export type TransportKind = "auto" | "websocket" | "sse";

/** A bearer token, or a function returning one; called before every connect attempt so that
 * a reconnect uses a fresh token. A provider that throws or rejects backs off like a failed
 * connect. `null`/`undefined`: connect without credentials. */
export type TokenSource = string | null | undefined | (() => string | null | undefined | Promise<string | null | undefined>);

/** Filter: AND across keys, OR within a list; a key is a top-level field or a JSON pointer. */
export type Filter = Record<string, unknown>;

/** Resume position of one channel: last offset per `"topic/partition"`, plus the log's
 * `epoch` when the server announced one. The shape of the protocol's `since`. */
export type Since = Record<string, number | string>;

/** One event as delivered to `onEvent`. */
export interface FanlineEvent {
  channel: string;
  /** `topic/partition/offset`. */
  id: string;
  topic: string;
  partition: number;
  offset: number;
  /** Record timestamp, unix milliseconds (when the server sent one). */
  ts?: number;
  event_type?: string;
  correlation_id?: string;
  data: unknown;
}

/** The server dropped `dropped` events of `channel` for this connection. */
export interface GapInfo {
  channel: string;
  dropped: number;
  reason?: string;
}

/** A resume the server could not prove complete (`recovered:false`): reload the channel's
 * state (e.g. from `GET /v1/channels/{channel}/latest`). The cursor starts over. */
export interface ResetInfo {
  channel: string;
  /** `partial_cursor`, `epoch_changed`, `too_old`, … as the server said. */
  reason?: string;
  /** The `since` that was sent and refused. */
  since: Since;
}

/** The server refused the subscription (e.g. `forbidden_channel`); it is not retried. */
export interface SubscriptionError {
  channel: string;
  code: string;
  message: string;
}

export interface SubscribeOptions {
  filter?: Filter;
  /** Resume from a persisted position (`sub.since()` of an earlier run). */
  since?: Since;
  onEvent?: (ev: FanlineEvent) => void;
  onGap?: (gap: GapInfo) => void;
  onReset?: (info: ResetInfo) => void;
  /** The server refused this subscription; it has ended. */
  onError?: (err: SubscriptionError) => void;
  /** The server acknowledged the (re)subscribe; `replayed` events follow. */
  onSubscribed?: (info: { channel: string; recovered?: boolean; replayed?: number; resumed: boolean }) => void;
}

/** Reconnect delays: attempt `n` waits uniform in `[0, min(maxMs, initialMs·factorⁿ)]`. */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
}

/** Where log lines go (default: `console`). */
export interface Logger {
  debug(msg: string, ...rest: unknown[]): void;
  info(msg: string, ...rest: unknown[]): void;
  warn(msg: string, ...rest: unknown[]): void;
}

/** The constructor of a WHATWG-compatible WebSocket (the browser's, Node ≥ 22's, or the
 * `ws` package's). */
export interface WebSocketCtor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** What the client uses of a WebSocket. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (ev: any) => void): void;
  /** `ws` package only: the HTTP answer of a refused handshake (status, Retry-After). */
  on?(event: string, listener: (...args: any[]) => void): unknown;
}

/** The constructor of a WHATWG EventSource. */
export interface EventSourceCtor {
  new (url: string, init?: { withCredentials?: boolean }): EventSourceLike;
}

/** What the client uses of an EventSource. */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (ev: any) => void): void;
}

export interface ClientOptions {
  /** `ws://host:8080/v1/ws` (or `wss://`). */
  url: string;
  token?: TokenSource;
  /** Default `auto`. */
  transport?: TransportKind;
  /** SSE endpoint; default: `url` with `http(s)://` and the path `/v1/sse`. */
  sseUrl?: string;
  /** WebSocket implementation; default `globalThis.WebSocket` (Node 20: pass `ws`). */
  WebSocket?: WebSocketCtor;
  /** EventSource implementation; default `globalThis.EventSource`, else a `fetch` reader
   * (which also sends `Authorization` instead of `?token=`). */
  EventSource?: EventSourceCtor | null;
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for the jitter (tests). */
  random?: () => number;
  /** A welcome (WebSocket) or first byte (SSE) must arrive within this (default 10 000 ms). */
  openTimeoutMs?: number;
  /** Heartbeat assumed for SSE, where no `welcome` states it (default 20 000 ms). */
  sseHeartbeatMs?: number;
  logger?: Logger | null;
}

/** Counters for dashboards and tests. */
export interface ClientStats {
  /** Connections that completed (`welcome`, or an SSE stream's `subscribed`). */
  connects: number;
  /** Connections after the first. */
  reconnects: number;
  /** Resubscribes with `since` the server answered `recovered:true`. */
  resumes: number;
  /** Resubscribes answered `recovered:false` (onReset called). */
  resets: number;
  /** Attempts that ended without a healthy connection (refused, timed out, malformed). */
  failures: number;
  /** Malformed server frames seen (each one ends its connection). */
  malformed: number;
  /** Events delivered to `onEvent`. */
  events: number;
  /** Events skipped as duplicates (offset not past the cursor). */
  duplicates: number;
  /** Sum of `gap.dropped`. */
  dropped: number;
}
