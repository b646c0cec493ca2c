import { Subscription } from "./subscription.js";
import type { ClientOptions, ClientStats, State, SubscribeOptions } from "./types.js";
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
/** `ws://h/v1/ws` → `http://h/v1/sse`. */
export declare function defaultSseUrl(wsUrl: string): string;
export declare class FanlineClient {
    /** Counters (connects, resumes, resets, failures, malformed frames, events, …). */
    readonly stats: ClientStats;
    /** `welcome.connection_id` of the current WebSocket (or the first SSE stream's id). */
    connectionId: string | undefined;
    /** `welcome.epoch` of the current connection. */
    epoch: string | undefined;
    private readonly opts;
    private readonly log;
    private readonly backoff;
    private readonly WS;
    private readonly ES;
    private readonly sseUrl;
    private mode;
    private readonly kind;
    private st;
    private announced;
    private link;
    private linkUp;
    private gen;
    private attempt;
    private wsEverOpened;
    private closed;
    private retryTimer;
    private readonly subs;
    private readonly pending;
    private req;
    private readonly listeners;
    constructor(opts: ClientOptions);
    /** The current state. */
    get state(): State;
    /** The transport in use (`auto` resolves to one of these). */
    get transport(): "websocket" | "sse";
    on<K extends keyof Listeners>(event: K, fn: Listeners[K]): () => void;
    /** Subscribes to `channel`, now and again (with `since`) after every reconnect. */
    subscribe(channel: string, o?: SubscribeOptions): Subscription;
    /** Closes the connection (1000) and stops reconnecting. */
    close(): void;
    private connect;
    private tokenValue;
    private opened;
    private ended;
    private sendSubscribe;
    private unsubscribe;
    private handle;
    private setState;
    private emit;
    private call;
}
export {};
