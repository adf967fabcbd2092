// Which worker connections the master listens to at all: only so many at once that have yet to say Hello.
import type { WebSocket } from "ws";
import { PENDING_GRACE_MS, PendingConnections } from "../pending-connections.js";
import { CloseCode } from "../worker-protocol/index.js";

export interface WorkerAdmissionOptions {
  /** Worker connections at once that have not sent their Hello yet. */
  maxPending: number;
  /** A connection was closed for the cap. */
  onDropped(): void;
}

/** Sends the close frame and drops the connection at once: a turned-away peer gets no time to hold its socket. */
function turnAway(socket: WebSocket, reason: string): void {
  socket.close(CloseCode.tryAgainLater, reason);
  socket.terminate();
}

export class WorkerAdmission {
  private readonly pending: PendingConnections<WebSocket>;

  constructor(options: WorkerAdmissionOptions) {
    this.pending = new PendingConnections({
      max: options.maxPending,
      graceMs: PENDING_GRACE_MS,
      drop: (socket) => {
        turnAway(socket, "too many connections waiting to say Hello; try again");
        options.onDropped();
      },
    });
  }

  /** Worker connections that have not sent a message yet. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Counts a new connection as pending until its first message (the Hello) or its end. */
  admit(socket: WebSocket): void {
    this.pending.add(socket);
    const spoke = () => this.pending.release(socket);
    socket.once("message", spoke);
    socket.once("close", spoke);
  }

  close(): void {
    this.pending.close();
  }
}
