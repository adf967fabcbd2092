// Raw TCP clients of the HTTP port, for tests that send a request a few bytes at a time, or never finish it.
import { connect, type Socket } from "node:net";

export interface RawClient {
  socket: Socket;
  /** Everything the server sent so far. */
  received(): string;
  /** Resolves when the connection is closed (by either side), with the time it happened. */
  closed: Promise<number>;
  /** Writes `bytes` every `intervalMs` until the connection closes. */
  drip(bytes: string, intervalMs: number): void;
}

export function connectRaw(url: string): Promise<RawClient> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  let text = "";
  socket.on("data", (data: Buffer) => {
    text += data.toString();
  });
  // A server that drops the connection may reset it; the close event says all a test needs.
  socket.on("error", () => {});
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  const drip = (bytes: string, intervalMs: number) => {
    const timer = setInterval(() => socket.write(bytes), intervalMs);
    socket.once("close", () => clearInterval(timer));
  };
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, received: () => text, closed, drip }));
    socket.once("error", reject);
  });
}
