// Reading a whole upstream response body with a ceiling: a broken or hostile upstream cannot make the worker hold
// more than it expects of an answer (the streamed replies need none: they are read a chunk at a time).

export interface BoundedBody {
  /** The body as UTF-8 text, cut at the ceiling. */
  text: string;
  /** False when the body was longer than the ceiling: the rest was not read, and the connection was let go. */
  complete: boolean;
}

/** Reads at most `maxBytes` of `response`'s body; the fetch's signal still aborts the read. */
export async function readBounded(response: Response, maxBytes: number): Promise<BoundedBody> {
  if (!response.body) return { text: "", complete: true };
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const bytes of response.body) {
    const room = maxBytes - size;
    if (bytes.byteLength > room) {
      parts.push(bytes.subarray(0, room));
      return { text: Buffer.concat(parts).toString("utf8"), complete: false }; // leaving the loop cancels the body
    }
    parts.push(bytes);
    size += bytes.byteLength;
  }
  return { text: Buffer.concat(parts).toString("utf8"), complete: true };
}
