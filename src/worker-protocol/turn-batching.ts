// Frames sent in one turn of the event loop leave in one system call, on either end of a worker connection.
import type { WebSocket } from "ws";

/** The TCP socket under a ws WebSocket (ws keeps it as `_socket` and has no public way to cork it). */
type Transport = { cork(): void; uncork(): void; destroyed: boolean };

/** Sockets corked in the current turn, with the bytes they still had unsent when the turn's first frame came. */
const corked = new WeakMap<WebSocket, number>();

/**
 * Call before each `send`: the first call in a turn corks the connection and the turn's end (`setImmediate`, once
 * the turn's I/O callbacks have run) uncorks it, so the frames of many tasks whose timers or reads fired together
 * go out in one `writev` instead of one each. A lone frame still leaves at the end of its own turn.
 *
 * Returns the bytes that were still unsent when the turn began: 0 means the network keeps up (what is corked in
 * this turn leaves at its end and does not count as a backlog).
 */
export function batchFramesThisTurn(socket: WebSocket): number {
  const backlog = corked.get(socket);
  if (backlog !== undefined) return backlog;
  const transport = (socket as unknown as { _socket?: Transport })._socket;
  const before = socket.bufferedAmount;
  if (!transport || transport.destroyed) return before;
  corked.set(socket, before);
  transport.cork();
  setImmediate(() => {
    corked.delete(socket);
    transport.uncork();
  });
  return before;
}
