// This head's connection to NATS: connects and reconnects for ever, knows whether it is connected now, and closes
// for good when the head stops (no timer or socket of the client outlives it).
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../log.js";

/** How long between two attempts to reach NATS, at first and after a loss. */
const RETRY_MS = 1_000;

/**
 * The client's defaults give up after 10 reconnects and notice a silent loss only after 2 minutes of pings; a head
 * must outlast any outage (it serves on meanwhile) and say within 10–15 s that NATS is away (docs/scaling.md §9).
 */
const connectionOptions = {
  maxReconnectAttempts: -1,
  reconnectTimeWait: RETRY_MS,
  pingInterval: 5_000,
  maxPingOut: 2,
} as const;

/** The oldest nats-server whose JetStream key-value buckets behave as docs/scaling.md §2 relies on. */
const OLDEST_SERVER = [2, 9] as const;

/** Whether a server of this version (e.g. "2.9.10") is new enough. */
export function isSupported(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map((part) => Number.parseInt(part, 10) || 0);
  return major > OLDEST_SERVER[0] || (major === OLDEST_SERVER[0] && minor >= OLDEST_SERVER[1]);
}

/** Told of each connection: the first, and each after a reconnect (what the head had set up may be gone). */
export type OnConnected = (connection: NatsConnection) => void;

export class NatsLink {
  private connection: NatsConnection | undefined;
  private up = false;
  private readonly closing = new AbortController();
  private running: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<OnConnected>();

  constructor(
    private readonly servers: readonly string[],
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.up;
  }

  /** The connection while connected. */
  get current(): NatsConnection | undefined {
    return this.up ? this.connection : undefined;
  }

  /** Tells `listener` of each connection from now on (and of the current one at once); returns how to stop. */
  onConnected(listener: OnConnected): () => void {
    this.listeners.add(listener);
    const current = this.current;
    if (current) listener(current);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.running = this.run().catch((error: unknown) => this.log.error({ err: error }, "the NATS connection failed for good"));
  }

  /** Closes the connection, or stops trying to make one. */
  async close(): Promise<void> {
    this.closing.abort();
    this.up = false;
    await this.connection?.close();
    await this.running;
  }

  private async run(): Promise<void> {
    const connection = await this.firstConnection();
    if (connection === undefined) return;
    if (this.closing.signal.aborted) return void (await connection.close());
    const version = connection.info?.version ?? "0.0.0";
    if (!isSupported(version)) {
      this.log.error({ version, oldest: OLDEST_SERVER }, `nats-server ${version} is older than ${OLDEST_SERVER.join(".")}, whose key-value buckets the heads rely on; serving on alone until this head restarts`);
      return void (await connection.close());
    }
    this.connection = connection;
    this.change(true);
    // The iterator ends when the connection closes.
    for await (const status of connection.status()) {
      if (status.type === "disconnect") this.change(false);
      else if (status.type === "reconnect") this.change(true);
      else if (status.type === "error") this.log.warn({ err: status.error }, "NATS reported an error");
    }
    // Closed by the client itself (e.g. refused credentials), not by close(): it will not come back.
    if (!this.closing.signal.aborted) {
      this.up = false;
      this.log.error("the NATS connection closed for good; serving on alone until this head restarts");
    }
  }

  /**
   * Tries until NATS answers, so a head starts (and serves) before NATS is up. The client's own waitOnFirstConnect
   * would do the same, but offers no way to stop it before it connects: the head could not close then.
   */
  private async firstConnection(): Promise<NatsConnection | undefined> {
    let warned = false;
    while (!this.closing.signal.aborted) {
      try {
        return await connect({ servers: [...this.servers], ...connectionOptions });
      } catch (error) {
        if (!warned) this.log.warn({ err: error, servers: this.servers.map(withoutCredentials) }, "NATS is not reachable; serving on alone and trying again every second");
        warned = true;
        await sleep(RETRY_MS, undefined, { signal: this.closing.signal }).catch(() => undefined);
      }
    }
    return undefined;
  }

  private change(up: boolean): void {
    if (up === this.up || this.closing.signal.aborted) return;
    this.up = up;
    const connection = this.connection;
    if (up && connection) {
      this.log.info({ server: connection.getServer() }, "connected to NATS");
      for (const listener of [...this.listeners]) listener(connection);
    } else {
      this.log.warn("lost NATS; serving on with what this head knows, and reconnecting");
    }
  }
}

/** A server's URL as logs may show it: a user and password in it stay out. */
function withoutCredentials(server: string): string {
  const url = new URL(server);
  return `${url.protocol}//${url.host}`;
}
