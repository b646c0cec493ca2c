// A `text/event-stream` parser (the WHATWG rules this client needs): `data:` lines joined by
// "\n", `event:` names, `:` comments, CR/LF/CRLF line ends, chunks split anywhere.

export interface SseSink {
  event(name: string, data: string): void;
  comment(): void;
}

/** Longest line kept (a hostile server cannot grow memory without bound). */
const MAX_LINE = 8 * 1024 * 1024;

export class SseParser {
  private buf = "";
  private data: string[] = [];
  private name = "";
  private skipLf = false;

  constructor(private readonly sink: SseSink) {}

  /** Feeds decoded text; throws `RangeError` on a line over the limit. */
  push(chunk: string): void {
    let text = this.buf + chunk;
    this.buf = "";
    let start = 0;
    if (this.skipLf && text.startsWith("\n")) start = 1;
    this.skipLf = false;
    for (;;) {
      let i = start;
      while (i < text.length && text[i] !== "\n" && text[i] !== "\r") i++;
      if (i === text.length) break;
      this.line(text.slice(start, i));
      if (text[i] === "\r") {
        if (i + 1 === text.length) this.skipLf = true;
        else if (text[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    text = text.slice(start);
    if (text.length > MAX_LINE) throw new RangeError("SSE line too long");
    this.buf = text;
  }

  private line(l: string): void {
    if (l === "") {
      if (this.data.length > 0) this.sink.event(this.name || "message", this.data.join("\n"));
      this.data = [];
      this.name = "";
      return;
    }
    if (l.startsWith(":")) {
      this.sink.comment();
      return;
    }
    const c = l.indexOf(":");
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? "" : l.slice(c + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.name = value;
  }
}
