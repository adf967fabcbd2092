// Server-sent events decoding for the upstream's chat completion streams.

/**
 * Server-sent events decoder (WHATWG rules): lines end in CRLF, LF or CR; `:` lines are comments; `data:` lines of
 * one event join with "\n"; a blank line ends the event. Yields each event's data (other fields are not needed).
 */
export class SseDecoder {
  private buffer = "";
  private data: string[] = [];

  /** Feeds decoded text; returns the data of every event completed by it. */
  push(text: string): string[] {
    this.buffer += text;
    const events: string[] = [];
    for (;;) {
      const end = /\r\n|\r|\n/.exec(this.buffer);
      if (!end) break;
      if (end[0] === "\r" && end.index === this.buffer.length - 1 && text !== "") break; // a "\n" may follow
      const line = this.buffer.slice(0, end.index);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      const event = this.line(line);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  private line(line: string): string | undefined {
    if (line === "") {
      if (this.data.length === 0) return undefined;
      const data = this.data.join("\n");
      this.data = [];
      return data;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== "data") return undefined; // event, id, retry: not used by chat completion streams
    const value = colon < 0 ? "" : line.slice(colon + 1);
    this.data.push(value.startsWith(" ") ? value.slice(1) : value);
    return undefined;
  }
}
