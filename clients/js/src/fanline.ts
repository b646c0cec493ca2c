// fanline client for browsers and Node ≥ 20: subscribe to channels of a fanline gateway over
// WebSocket or SSE; resumes by Kafka offset after every reconnect (SPEC §10).
//
//   import { FanlineClient } from "./dist/fanline.js";
//   const c = new FanlineClient({ url: "ws://host:8080/v1/ws", token, transport: "auto" });
//   c.on("state", (s) => {});
//   const sub = c.subscribe("issues", { filter, onEvent: (ev) => {}, onGap: (g) => {}, onReset: (info) => {} });
//   sub.unsubscribe(); c.close();

export { FanlineClient, defaultSseUrl } from "./client.js";
export type { OpenEvent, ReconnectEvent } from "./client.js";
export { Subscription } from "./subscription.js";
export { Backoff, parseRetryAfter } from "./backoff.js";
export { Cursor, parseEventId } from "./cursor.js";
export { SseParser } from "./sse-parse.js";
export { streamUrl } from "./sse-link.js";
export type * from "./types.js";
