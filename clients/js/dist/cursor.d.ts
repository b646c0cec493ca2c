import type { Since } from "./types.js";
/** `"topic/partition/offset"` → parts; `null` when malformed. Kafka topic names cannot
 * contain `/`, so the last two fields are split off the right. */
export declare function parseEventId(id: unknown): {
    topic: string;
    partition: number;
    offset: number;
} | null;
/** The last offset received per `topic/partition` of one channel, and the epoch of the log
 * those offsets belong to (`welcome.epoch`; `undefined` while the server sends none). */
export declare class Cursor {
    private offsets;
    epoch: string | undefined;
    /** From a persisted `since` (application input: throws on a malformed one). */
    constructor(since?: Since);
    /** Records a received offset; `false` when it is not past the cursor (a duplicate), which
     * the client then does not deliver. */
    advance(topic: string, partition: number, offset: number): boolean;
    /** Positions known for this channel. */
    get size(): number;
    /** After `recovered:false`: the old positions are void; start over in `epoch`. */
    reset(epoch: string | undefined): void;
    /** The `since` for a resubscribe; `null` when nothing was received yet. `epoch` only when
     * known. */
    since(): Since | null;
    /** The SSE form `topic/p:offset,…`; `null` when empty. */
    sinceQuery(): string | null;
}
