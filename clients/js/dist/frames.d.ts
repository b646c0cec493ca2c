import type { FanlineEvent } from "./types.js";
/** A server frame that does not follow protocol v1. */
export declare class Malformed extends Error {
    constructor(msg: string);
}
export type ServerMessage = {
    type: "welcome";
    connectionId: string;
    epoch?: string;
    heartbeatMs?: number;
    rate: number;
    burst: number;
} | {
    type: "event";
    event: FanlineEvent;
} | {
    type: "subscribed";
    id?: string;
    channels: string[];
    recovered?: boolean;
    replayed?: number;
    reason?: string;
    connectionId?: string;
} | {
    type: "unsubscribed";
} | {
    type: "gap";
    channel: string;
    dropped: number;
    reason?: string;
} | {
    type: "error";
    id?: string;
    code: string;
    message: string;
} | {
    type: "status";
    kafka?: string;
} | {
    type: "pong";
} | {
    type: "unknown";
    name: string;
};
/** Parses one text frame (WebSocket message or SSE `data:`). */
export declare function parseServerMessage(raw: unknown): ServerMessage;
