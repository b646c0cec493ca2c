import { type LinkSink } from "./link.js";
import type { Logger, WebSocketCtor } from "./types.js";
/** A WebSocket link. The token travels as `Sec-WebSocket-Protocol: bearer, <token>`, which
 * browsers can send (they cannot set `Authorization` on a WebSocket). */
export declare class WsLink {
    private readonly sink;
    private readonly log;
    readonly kind: "websocket";
    private readonly sock;
    private readonly out;
    private ended;
    private welcomed;
    private openTimer;
    private watchdog;
    private lastRx;
    private pinged;
    private queue;
    private tokens;
    private rate;
    private burst;
    private refilledAt;
    private flushTimer;
    constructor(Ctor: WebSocketCtor, url: string, token: string | null, sink: LinkSink, openTimeoutMs: number, log: Logger);
    /** Queues a message; sent as the pacing allows. */
    send(msg: object): void;
    /** Ends the link now (no further callbacks except the one `end`). */
    abort(why: string, code?: number): void;
    private finish;
    private onMessage;
    /** Dead-peer detection: after `hb` of silence send a `ping` (browsers cannot see protocol
     * pings); nothing at all within 1.5 × `hb` → reconnect. */
    private startWatchdog;
    private flush;
}
