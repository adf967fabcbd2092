// Clients that stop reading: a raw HTTP connection that sends a streaming chat request, takes the response's first
// bytes, then never reads again (the kernel's buffers fill and the server's writes back up).
import { connect, type Socket } from "node:net";

export interface NonReadingClient {
  socket: Socket;
  /** Closes the connection (the server sees the client leave). */
  destroy(): void;
}

/** Opens a streaming chat completion for `model` on 127.0.0.1:`port` and stops reading once the response began. */
export async function openNonReadingStream(port: number, model: string): Promise<NonReadingClient> {
  const body = JSON.stringify({ model, messages: [{ role: "user", content: "flood me" }], stream: true, reasoning_format: "raw" });
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("data", () => resolve());
    socket.once("close", () => reject(new Error("the connection closed before the response began")));
  });
  socket.pause();
  return { socket, destroy: () => socket.destroy() };
}

/** The resident set size of process `pid`, in bytes (Linux). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const match = status.match(/^VmRSS:\s+(\d+) kB$/m);
  if (!match?.[1]) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}
