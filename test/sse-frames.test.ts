// SSE framing shared by every dialect: `data:` and `event:` frames, and a dialect's own keepalive frame.
import { describe, expect, it } from "vitest";
import { dataFrame, eventFrame, SseStream } from "../src/api/sse.js";

describe("SSE frames", () => {
  it("writes data and event frames, and refuses an event name that would forge another field", () => {
    expect(dataFrame('{"a":1}')).toBe('data: {"a":1}\n\n');
    expect(eventFrame("message_start", '{"type":"message_start"}')).toBe('event: message_start\ndata: {"type":"message_start"}\n\n');
    expect(() => eventFrame("ping\ndata: forged", "{}")).toThrow(/line break/);
    expect(() => eventFrame("ping\r", "{}")).toThrow(/line break/);
  });

  it("sends the dialect's own keepalive frame during silence, then the last frames and the end", async () => {
    const controller = new AbortController();
    const ping = eventFrame("ping", '{"type":"ping"}');
    const { sse, response } = SseStream.open(
      { keepaliveMs: 20, keepaliveFrame: ping, slowClientMs: 10_000, slowClientBytes: 1024 * 1024 },
      controller.signal,
    );
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes(ping)) text += (await reader.read()).value ?? "";
    sse.end(eventFrame("message_stop", '{"type":"message_stop"}'));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    expect(text.startsWith(ping)).toBe(true);
    expect(text.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n')).toBe(true);
    expect(text).not.toContain(": keepalive");
  });
});
