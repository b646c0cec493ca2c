import type { BackoffOptions } from "./types.js";
/** Delay before reconnect attempt `attempt` (0-based): uniform in
 * `[0, min(maxMs, initialMs · factor^attempt)]` ("full jitter"), so that clients cut at once
 * spread their reconnects instead of returning together. */
export declare class Backoff {
    readonly initialMs: number;
    readonly maxMs: number;
    readonly factor: number;
    private readonly random;
    constructor(opts?: BackoffOptions, random?: () => number);
    /** The upper bound of attempt `attempt`'s delay. */
    ceiling(attempt: number): number;
    /** The jittered delay in ms. With a server `Retry-After`, at least that long (plus jitter,
     * so clients told the same value do not return in one burst). */
    delay(attempt: number, retryAfterMs?: number | null): number;
}
/** `Retry-After` (delta-seconds or HTTP-date) in ms; `null` when absent or unreadable.
 * Bounded to one hour. */
export declare function parseRetryAfter(value: string | null | undefined, nowMs?: number): number | null;
