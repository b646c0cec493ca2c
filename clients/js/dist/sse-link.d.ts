import { type LinkSink } from "./link.js";
import type { EventSourceCtor, Filter, Logger } from "./types.js";
/** What a stream is opened for. */
export interface StreamSpec {
    channel: string;
    filter?: Filter;
    /** `topic/p:offset,…`; `""` an empty cursor; `null` none (start live). */
    since: string | null;
}
/** The stream URL: `channels`, `filter.<key>=v` (repeated for a list), `since`, and with
 * EventSource (no headers) the token as `?token=`. */
export declare function streamUrl(base: string, s: StreamSpec, token: string | null): string;
export declare class SseLink {
    private readonly base;
    private readonly token;
    private readonly ES;
    private readonly sink;
    private readonly heartbeatMs;
    private readonly log;
    readonly kind: "sse";
    private readonly out;
    private readonly streams;
    private ended;
    private up;
    private readonly openTimer;
    private watchdog;
    private lastRx;
    private connectionId;
    constructor(base: string, token: string | null, ES: EventSourceCtor | null, sink: LinkSink, openTimeoutMs: number, heartbeatMs: number, log: Logger);
    /** Opens the stream of one subscription (replacing an earlier one of that channel). */
    openStream(spec: StreamSpec): void;
    closeStream(channel: string): void;
    abort(why: string): void;
    private finish;
    private checkUp;
    private data;
    private failed;
    private startWatchdog;
    private viaEventSource;
    private viaFetch;
}
