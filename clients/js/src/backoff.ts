// Reconnect delays: exponential backoff with full jitter, and `Retry-After` parsing.

import type { BackoffOptions } from "./types.js";

/** Delay before reconnect attempt `attempt` (0-based): uniform in
 * `[0, min(maxMs, initialMs · factor^attempt)]` ("full jitter"), so that clients cut at once
 * spread their reconnects instead of returning together. */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}, random: () => number = Math.random) {
    this.initialMs = opts.initialMs ?? 500;
    this.maxMs = opts.maxMs ?? 30_000;
    this.factor = opts.factor ?? 2;
    if (!(this.initialMs > 0 && this.initialMs <= this.maxMs) || !(this.factor >= 1)) {
      throw new RangeError("backoff needs 0 < initialMs <= maxMs and factor >= 1");
    }
    this.random = random;
  }

  /** The upper bound of attempt `attempt`'s delay. */
  ceiling(attempt: number): number {
    if (attempt >= 64) return this.maxMs; // before factor^attempt overflows
    return Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, Math.max(0, attempt)));
  }

  /** The jittered delay in ms. With a server `Retry-After`, at least that long (plus jitter,
   * so clients told the same value do not return in one burst). */
  delay(attempt: number, retryAfterMs?: number | null): number {
    let r = this.random();
    if (!(r >= 0 && r < 1)) r = 0.5; // a broken random source must not break reconnects
    const d = r * this.ceiling(attempt);
    return retryAfterMs != null && retryAfterMs > 0 ? retryAfterMs + d : d;
  }
}

/** `Retry-After` (delta-seconds or HTTP-date) in ms; `null` when absent or unreadable.
 * Bounded to one hour. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number | null {
  if (value == null) return null;
  const v = value.trim();
  if (v === "") return null;
  if (/^\d+$/.test(v)) return Math.min(Number(v), 3600) * 1000;
  const when = Date.parse(v);
  if (Number.isNaN(when)) return null;
  return Math.min(Math.max(when - nowMs, 0), 3600_000);
}
