// What a transport link (one connection attempt) reports to the client, and how it ended.

import type { ServerMessage } from "./frames.js";

/** How one connection attempt ended; decides the next backoff. */
export interface Outcome {
  /** The connection completed (`welcome`, or every SSE stream's `subscribed`): the next
   * attempt starts the backoff over. */
  healthy: boolean;
  /** The transport itself opened (the WebSocket `open` event, an SSE `200`): `auto` falls
   * back to SSE only when a WebSocket never opened. */
  opened: boolean;
  /** 429/503 on the handshake, or close 1013 "try again later": back off further. */
  overload: boolean;
  /** `Retry-After` of a refused handshake, in ms. */
  retryAfterMs: number | null;
  /** A malformed server frame ended this connection. */
  malformed: boolean;
  /** WebSocket close code, when one was received. */
  code?: number;
  /** Why, for the log. */
  why: string;
}

export function newOutcome(): Outcome {
  return { healthy: false, opened: false, overload: false, retryAfterMs: null, malformed: false, why: "" };
}

/** What a link has learned once it is up. */
export interface OpenInfo {
  connectionId?: string;
  epoch?: string;
  heartbeatMs?: number;
}

/** The client's side of a link. Every method is called from the link's event handlers; a
 * link calls `end` exactly once and nothing after it. */
export interface LinkSink {
  open(info: OpenInfo): void;
  message(msg: ServerMessage): void;
  malformed(err: Error): void;
  end(outcome: Outcome): void;
}

export type Timer = ReturnType<typeof setTimeout>;
