// Which worker connections the master listens to at all: none from an address banned for wrong tokens (here, or by
// another head: docs/scaling.md §7), and only so many at once that have yet to say Hello.
import type { WebSocket } from "ws";
import { PENDING_GRACE_MS, PendingConnections } from "../pending-connections.js";
import { CloseCode } from "../worker-protocol/index.js";
import { addressKey, TokenFailureLimiter } from "./token-failures.js";

/** Addresses whose wrong tokens are remembered at once (about 100 bytes each). */
const TRACKED_ADDRESSES = 10_000;

export interface WorkerAdmissionEvents {
  /** A connection that had not said Hello was closed for the pending cap. */
  pendingDropped(): void;
  /** A Hello came with a wrong token. */
  tokenFailed(address: string): void;
  /** An address was banned for its wrong tokens (once per ban). */
  banned(address: string, failures: number): void;
  /** A connection from a banned address was turned away before its Hello was read. */
  bannedTurnedAway(): void;
}

/**
 * Bans every head applies, by address as addressKey counts it: kept in this process without other heads, in a NATS
 * bucket with them. Read synchronously: admission never waits.
 */
export interface SharedBans {
  isBanned(address: string, now: number): boolean;
  /** This head banned the address until `until`: every head is told, in the background (never throws, never waits). */
  banned(address: string, until: number, failures: number): void;
}

export interface WorkerAdmissionOptions {
  /** Worker connections at once that have not sent their Hello yet. */
  maxPending: number;
  /** Wrong tokens from one address within `banMs` that ban it for `banMs`; 0: never ban. */
  maxTokenFailures: number;
  banMs: number;
  /** Where bans are shared with the other heads (default: nowhere, each head bans on its own). */
  bans?: SharedBans;
  events: WorkerAdmissionEvents;
}

/** Sends the close frame and drops the connection at once: a turned-away peer gets no time to hold its socket. */
function turnAway(socket: WebSocket, reason: string): void {
  socket.close(CloseCode.tryAgainLater, reason);
  socket.terminate();
}

export class WorkerAdmission {
  private readonly pending: PendingConnections<WebSocket>;
  private readonly limiter: TokenFailureLimiter;

  constructor(private readonly options: WorkerAdmissionOptions) {
    const { events } = options;
    this.pending = new PendingConnections({
      max: options.maxPending,
      graceMs: PENDING_GRACE_MS,
      drop: (socket) => {
        turnAway(socket, "too many connections waiting to say Hello; try again");
        events.pendingDropped();
      },
    });
    this.limiter = new TokenFailureLimiter({
      maxFailures: options.maxTokenFailures,
      periodMs: options.banMs,
      maxAddresses: TRACKED_ADDRESSES,
      onBanned: (address, failures) => {
        options.bans?.banned(address, Date.now() + options.banMs, failures);
        events.banned(address, failures);
      },
    });
  }

  /** Worker connections that have not sent a message yet. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Turns a connection from a banned address away (false), or counts it as pending until its first message (the
   * Hello) or its end.
   */
  admit(socket: WebSocket, address: string): boolean {
    if (this.limiter.isBanned(address) || this.options.bans?.isBanned(addressKey(address), Date.now())) {
      turnAway(socket, "too many wrong tokens from this address; try again later");
      this.options.events.bannedTurnedAway();
      return false;
    }
    this.pending.add(socket);
    const spoke = () => this.pending.release(socket);
    socket.once("message", spoke);
    socket.once("close", spoke);
    return true;
  }

  /** Counts a Hello's wrong token against the address it came from. */
  tokenFailed(address: string): void {
    this.options.events.tokenFailed(address);
    this.limiter.failed(address);
  }

  close(): void {
    this.pending.close();
  }
}
