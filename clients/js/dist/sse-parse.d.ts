export interface SseSink {
    event(name: string, data: string): void;
    comment(): void;
}
export declare class SseParser {
    private readonly sink;
    private buf;
    private data;
    private name;
    private skipLf;
    constructor(sink: SseSink);
    /** Feeds decoded text; throws `RangeError` on a line over the limit. */
    push(chunk: string): void;
    private line;
}
