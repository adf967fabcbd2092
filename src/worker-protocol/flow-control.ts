// Flow control of task output: how much a TokenChunk counts against its task's window (both sides agree on it).

/** A chunk's size against the window: the UTF-8 bytes of its text, an empty text counting as 1. */
export function chunkCost(text: string): number {
  return text.length === 0 ? 1 : Buffer.byteLength(text, "utf8");
}
