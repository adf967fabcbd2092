// Reads a raw SSE response the way a byte-level client would, to see comments and framing the SDK hides.

export interface RawSse {
  /** Every frame in order: `: keepalive` comments and `data: …` lines, as written. */
  frames: string[];
  /** Parsed JSON of each data frame (except [DONE]). */
  data: Array<Record<string, unknown>>;
  done: boolean;
  status: number;
  headers: Headers;
}

export async function postSse(url: string, body: unknown, signal?: AbortSignal): Promise<RawSse> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  const frames = text.split("\n\n").filter((f) => f.length > 0);
  const data: Array<Record<string, unknown>> = [];
  let done = false;
  for (const frame of frames) {
    if (!frame.startsWith("data: ")) continue;
    const payload = frame.slice(6);
    if (payload === "[DONE]") done = true;
    else data.push(JSON.parse(payload) as Record<string, unknown>);
  }
  return { frames, data, done, status: response.status, headers: response.headers };
}
