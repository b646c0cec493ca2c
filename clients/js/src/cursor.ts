// Per-partition resume cursors built from received event ids (`topic/partition/offset`).

import type { Since } from "./types.js";

/** `"topic/partition/offset"` → parts; `null` when malformed. Kafka topic names cannot
 * contain `/`, so the last two fields are split off the right. */
export function parseEventId(id: unknown): { topic: string; partition: number; offset: number } | null {
  if (typeof id !== "string") return null;
  const m = /^(.+)\/(\d{1,10})\/(\d{1,19})$/.exec(id);
  if (m === null) return null;
  const partition = Number(m[2]);
  const offset = Number(m[3]);
  if (!Number.isSafeInteger(offset) || partition > 0x7fffffff) return null;
  return { topic: m[1], partition, offset };
}

/** The last offset received per `topic/partition` of one channel, and the epoch of the log
 * those offsets belong to (`welcome.epoch`; `undefined` while the server sends none). */
export class Cursor {
  private offsets = new Map<string, number>();
  epoch: string | undefined;

  /** From a persisted `since` (application input: throws on a malformed one). */
  constructor(since?: Since) {
    for (const [k, v] of Object.entries(since ?? {})) {
      if (k === "epoch") {
        if (typeof v === "string") this.epoch = v;
        continue;
      }
      if (!/^.+\/\d+$/.test(k)) throw new TypeError(`since key ${JSON.stringify(k)} must be "topic/partition"`);
      if (typeof v !== "number" || !Number.isSafeInteger(v)) {
        throw new TypeError(`since[${JSON.stringify(k)}] must be an integer offset`);
      }
      this.offsets.set(k, v);
    }
  }

  /** Records a received offset; `false` when it is not past the cursor (a duplicate), which
   * the client then does not deliver. */
  advance(topic: string, partition: number, offset: number): boolean {
    const key = `${topic}/${partition}`;
    const last = this.offsets.get(key);
    if (last !== undefined && offset <= last) return false;
    this.offsets.set(key, offset);
    return true;
  }

  /** Positions known for this channel. */
  get size(): number {
    return this.offsets.size;
  }

  /** After `recovered:false`: the old positions are void; start over in `epoch`. */
  reset(epoch: string | undefined): void {
    this.offsets.clear();
    this.epoch = epoch;
  }

  /** The `since` for a resubscribe; `null` when nothing was received yet. `epoch` only when
   * known. */
  since(): Since | null {
    if (this.offsets.size === 0) return null;
    const out: Since = {};
    for (const k of [...this.offsets.keys()].sort()) out[k] = this.offsets.get(k) as number;
    if (this.epoch !== undefined) out.epoch = this.epoch;
    return out;
  }

  /** The SSE form `topic/p:offset,…`; `null` when empty. */
  sinceQuery(): string | null {
    if (this.offsets.size === 0) return null;
    return [...this.offsets.keys()].sort().map((k) => `${k}:${this.offsets.get(k)}`).join(",");
  }
}
