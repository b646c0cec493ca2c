// Server → client frames (protocol v1) parsed into typed messages. Anything that does not
// have the shape the protocol promises is a `Malformed` error: the client logs it and
// reconnects, it never throws into the application.

import { parseEventId } from "./cursor.js";
import type { FanlineEvent } from "./types.js";

/** A server frame that does not follow protocol v1. */
export class Malformed extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "Malformed";
  }
}

export type ServerMessage =
  | { type: "welcome"; connectionId: string; epoch?: string; heartbeatMs?: number; rate: number; burst: number }
  | { type: "event"; event: FanlineEvent }
  | { type: "subscribed"; id?: string; channels: string[]; recovered?: boolean; replayed?: number; reason?: string; connectionId?: string }
  | { type: "unsubscribed" }
  | { type: "gap"; channel: string; dropped: number; reason?: string }
  | { type: "error"; id?: string; code: string; message: string }
  | { type: "status"; kafka?: string }
  | { type: "pong" }
  | { type: "unknown"; name: string };

const snip = (s: string) => (s.length > 200 ? s.slice(0, 200) + "…" : s);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** Parses one text frame (WebSocket message or SSE `data:`). */
export function parseServerMessage(raw: unknown): ServerMessage {
  if (typeof raw !== "string") throw new Malformed("binary frame");
  let m: unknown;
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
        heartbeatMs: typeof hb === "number" && hb > 0 && Number.isFinite(hb) ? hb : undefined,
        rate,
        burst,
      };
    }
    case "subscribed": {
      const ch = m.channels;
      if (!Array.isArray(ch) || !ch.every((c) => typeof c === "string")) {
        throw new Malformed(`subscribed without channels: ${snip(raw)}`);
      }
      if (m.recovered !== undefined && typeof m.recovered !== "boolean") throw new Malformed(`bad recovered: ${snip(raw)}`);
      return {
        type: "subscribed",
        id: str(m.id),
        channels: ch as string[],
        recovered: m.recovered as boolean | undefined,
        replayed: isCount(m.replayed) ? m.replayed : undefined,
        reason: str(m.reason),
        connectionId: str(m.connection_id), // SSE: the stream's connection
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

function parseEvent(m: Record<string, unknown>, raw: string): FanlineEvent {
  const p = parseEventId(m.id);
  if (typeof m.channel !== "string" || p === null) throw new Malformed(`bad event: ${snip(raw)}`);
  const ev: FanlineEvent = { channel: m.channel, id: m.id as string, ...p, data: m.data };
  if (typeof m.ts === "number" && Number.isFinite(m.ts)) ev.ts = m.ts;
  if (typeof m.event_type === "string") ev.event_type = m.event_type;
  if (typeof m.correlation_id === "string") ev.correlation_id = m.correlation_id;
  return ev;
}
