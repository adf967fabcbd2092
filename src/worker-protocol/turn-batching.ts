// Frames sent in one turn of the event loop leave in one system call, on either end of a worker connection.
import type { WebSocket } from "ws";

/** The TCP socket under a ws WebSocket (ws keeps it as `_socket` and has no public way to cork it). */
type Transport = { cork(): void; uncork(): void; destroyed: boolean };

const corked = new WeakSet<WebSocket>();

/**
 * Call before each `send`: the first call in a turn corks the connection and the turn's end (`setImmediate`, once
 * the turn's I/O callbacks have run) uncorks it, so the frames of many tasks whose timers or reads fired together
 * go out in one `writev` instead of one each. A lone frame still leaves at the end of its own turn.
 */
export function batchFramesThisTurn(socket: WebSocket): void {
  if (corked.has(socket)) return;
  const transport = (socket as unknown as { _socket?: Transport })._socket;
  if (!transport || transport.destroyed) return;
  corked.add(socket);
  transport.cork();
  setImmediate(() => {
    corked.delete(socket);
    transport.uncork();
  });
}
