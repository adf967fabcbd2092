// The bench's HTTP client: streams a reply (chat completions, or another dialect's route) over keep-alive sockets
// and hands back SSE frames as they arrive.
import http from "node:http";
import { nowMicros, STAMP } from "./stamped-engine.js";

/** The API dialects a stream can go through: the route, and the frame that ends a complete reply. */
export const DIALECTS = {
  chat: { route: "/v1/chat/completions", isEnd: (frame: string) => frame === "data: [DONE]" },
  messages: { route: "/v1/messages", isEnd: (frame: string) => frame.startsWith("event: message_stop\n") },
  responses: { route: "/v1/responses", isEnd: (frame: string) => frame.startsWith("event: response.completed\n") },
} as const;
export type DialectName = keyof typeof DIALECTS;

const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });

export interface StreamOptions {
  url: string;
  body: object;
  headers?: Record<string, string>;
  /** Which route the stream goes through (default: chat completions). */
  dialect?: DialectName;
  /** Called with each whole SSE frame's text (without the trailing blank line). */
  onFrame?: (frame: string) => void;
  /** Called once when the response headers arrive. */
  onHeaders?: () => void;
  /** Called once when the first data frame arrives. */
  onFirstData?: () => void;
}

export interface StreamHandle {
  /** Settles when the stream ends: `done` is true when the dialect's end (`[DONE]` for chat) was read. */
  result: Promise<{ status: number; done: boolean; bytes: number; error?: string }>;
  /** Drops the connection, as a client that goes away does. */
  abort(): void;
}

export function streamChat(options: StreamOptions): StreamHandle {
  const payload = JSON.stringify({ stream: true, ...options.body });
  const dialect = DIALECTS[options.dialect ?? "chat"];
  let request!: http.ClientRequest;
  const result = new Promise<{ status: number; done: boolean; bytes: number; error?: string }>((resolve) => {
    request = http.request(`${options.url}${dialect.route}`, {
      method: "POST",
      agent,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload), ...options.headers },
    });
    let status = 0;
    let bytes = 0;
    let done = false;
    let carry: string[] = [];
    let carryEndsWithNewline = false;
    let sawData = false;
    request.on("response", (res) => {
      status = res.statusCode ?? 0;
      options.onHeaders?.();
      res.setEncoding("utf8");
      res.on("data", (text: string) => {
        bytes += text.length;
        if (!sawData && text.includes("data: ")) {
          sawData = true;
          options.onFirstData?.();
        }
        // An unfinished frame is kept as its pieces and joined once, when its end arrives: a frame of megabytes (the
        // Responses API repeats the whole text at its end) arriving in 64 KiB pieces is then read in linear time.
        let from = 0;
        const frameEnd = (frame: string) => {
          if (dialect.isEnd(frame)) done = true;
          options.onFrame?.(frame);
        };
        if (carryEndsWithNewline && text.startsWith("\n")) {
          frameEnd(carry.join("").slice(0, -1));
          carry = [];
          from = 1;
        }
        let end = text.indexOf("\n\n", from);
        while (end >= 0) {
          frameEnd(carry.length > 0 ? carry.join("") + text.slice(from, end) : text.slice(from, end));
          carry = [];
          from = end + 2;
          end = text.indexOf("\n\n", from);
        }
        if (from < text.length) carry.push(text.slice(from));
        carryEndsWithNewline = carry.length > 0 && text.endsWith("\n");
      });
      res.on("end", () => resolve({ status, done, bytes }));
      res.on("error", (error) => resolve({ status, done, bytes, error: error.message }));
      res.on("close", () => resolve({ status, done, bytes }));
    });
    request.on("error", (error) => resolve({ status, done, bytes, error: error.message }));
    request.end(payload);
  });
  return { result, abort: () => request.destroy() };
}

export interface UnreadStream {
  status: number;
  /** Whether the server has closed the connection (it gave up on the client). */
  readonly ended: boolean;
  /** Drops the connection. */
  close(): void;
}

/**
 * Opens a stream on a connection of its own, waits for the response head, then never reads the body: the client's
 * receive buffer fills, the server's writes back up, as with a client that stopped reading but stays connected.
 */
export function openUnreadStream(options: Omit<StreamOptions, "onFrame" | "onHeaders" | "onFirstData">, timeoutMs = 10_000): Promise<UnreadStream> {
  const payload = JSON.stringify({ stream: true, ...options.body });
  const request = http.request(`${options.url}/v1/chat/completions`, {
    method: "POST",
    agent: false,
    headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload), ...options.headers },
  });
  let ended = false;
  const close = () => request.destroy();
  return new Promise<UnreadStream>((resolve, reject) => {
    const timer = setTimeout(() => request.destroy(new Error(`no response head within ${timeoutMs} ms`)), timeoutMs);
    request.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.on("response", (res) => {
      clearTimeout(timer);
      res.pause();
      // Errors after the head (the server dropping the connection) are what the scenario watches for, not failures.
      request.removeAllListeners("error");
      request.on("error", () => {});
      res.on("error", () => {});
      res.socket.once("close", () => (ended = true));
      resolve({
        status: res.statusCode ?? 0,
        get ended() {
          return ended;
        },
        close,
      });
    });
    request.end(payload);
  });
}

/** Starts `count` streams evenly over `rampMs` (the i-th by `start(i)`), resolving once the last has started. */
export async function rampStreams(count: number, rampMs: number, start: (i: number) => StreamHandle): Promise<StreamHandle[]> {
  const started = performance.now();
  const handles: StreamHandle[] = [];
  for (let i = 0; i < count; i++) {
    handles.push(start(i));
    const due = ((i + 1) / count) * rampMs - (performance.now() - started);
    if (due > 1) await sleep(due);
  }
  return handles;
}

/** Records, for every stamped token in a frame, how long ago (µs) its worker emitted it. */
export function latencyRecorder(into: number[], accept: () => boolean = () => true): (frame: string) => void {
  return (frame) => {
    if (!accept()) return;
    const now = nowMicros();
    for (const match of frame.matchAll(STAMP)) into.push(now - Number(match[1]));
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
