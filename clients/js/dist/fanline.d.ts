export { FanlineClient, defaultSseUrl } from "./client.js";
export type { OpenEvent, ReconnectEvent } from "./client.js";
export { Subscription } from "./subscription.js";
export { Backoff, parseRetryAfter } from "./backoff.js";
export { Cursor, parseEventId } from "./cursor.js";
export { SseParser } from "./sse-parse.js";
export { streamUrl } from "./sse-link.js";
export type * from "./types.js";
