import type { Filter, Since } from "./types.js";
export declare class Subscription {
    readonly channel: string;
    readonly filter: Filter | undefined;
    /** The server acknowledged the subscribe on the current connection. */
    acked: boolean;
    private readonly stop;
    /** The position received so far (last offset per `topic/partition`, and `epoch`): persist
     * it and pass it as `subscribe(channel, { since })` to resume after a restart. */
    since(): Since | null;
    unsubscribe(): void;
}
