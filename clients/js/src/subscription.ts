// One subscription: its callbacks, filter and cursor. Created by `FanlineClient.subscribe`.

import type { Cursor } from "./cursor.js";
import type { FanlineEvent, Filter, GapInfo, ResetInfo, Since, SubscribeOptions, SubscriptionError } from "./types.js";

export class Subscription {
  readonly channel: string;
  readonly filter: Filter | undefined;
  /** The server acknowledged the subscribe on the current connection. */
  acked = false;
  /** @internal acknowledged on some connection (a later resubscribe sends a cursor). */
  everAcked = false;
  /** @internal */ readonly cursor: Cursor;
  /** @internal */ sentGen = -1;
  /** @internal */ sentSince: Since | null = null;
  /** @internal */ readonly onEvent?: (ev: FanlineEvent) => void;
  /** @internal */ readonly onGap?: (g: GapInfo) => void;
  /** @internal */ readonly onReset?: (r: ResetInfo) => void;
  /** @internal */ readonly onError?: (e: SubscriptionError) => void;
  /** @internal */ readonly onSubscribed?: SubscribeOptions["onSubscribed"];
  private readonly stop: () => void;

  /** @internal */
  constructor(channel: string, o: SubscribeOptions, cursor: Cursor, stop: () => void) {
    this.channel = channel;
    this.filter = o.filter && Object.keys(o.filter).length > 0 ? o.filter : undefined;
    this.cursor = cursor;
    this.onEvent = o.onEvent;
    this.onGap = o.onGap;
    this.onReset = o.onReset;
    this.onError = o.onError;
    this.onSubscribed = o.onSubscribed;
    this.stop = stop;
  }

  /** The position received so far (last offset per `topic/partition`, and `epoch`): persist
   * it and pass it as `subscribe(channel, { since })` to resume after a restart. */
  since(): Since | null {
    return this.cursor.since();
  }

  unsubscribe(): void {
    this.stop();
  }
}
