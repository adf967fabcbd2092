// The "raw" format: model text passes through untouched as content.

import type { ParseEvent, StreamParser } from "./types.js";

export class RawParser implements StreamParser {
  readonly unterminated = undefined;

  feed(chunk: string): ParseEvent[] {
    return chunk.length === 0 ? [] : [{ kind: "content", text: chunk }];
  }

  finish(): ParseEvent[] {
    return [];
  }
}
