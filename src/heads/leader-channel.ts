// Requests to the head that runs the planner (docs/scaling.md §6), over NATS request/reply: placement changes an
// admin sent to another head, and word that requests on another head wait for a model nobody serves. Only the lease
// holder listens; with none, a request fails at once (NATS answers "no responders") and the admin gets 503.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import type { Logger } from "../log.js";
import type { Planning } from "../master/placement/planning.js";
import { InvalidRequestError, mapError } from "../api/errors.js";
import { PlannerUnavailableError } from "../master/errors.js";
import type { NatsLink } from "./nats-link.js";
import type { PlannerLease } from "./planner-lease.js";

export const LEADER_SUBJECT = "coordinator.leader";
/** How long a head waits for the planner's answer (a placement is decided and written in milliseconds). */
const ASK_TIMEOUT_MS = 5_000;
/** A model's demand is passed on at most this often per model (requests for it may arrive by the thousand). */
const DEMAND_EVERY_MS = 1_000;

/** What a head asks of the planner. `body`: the admin's request body, checked by the planner as its own routes do. */
export const LeaderOp = z.discriminatedUnion("op", [
  z.object({ op: z.literal("place"), body: z.unknown() }),
  z.object({ op: z.literal("unplace"), id: z.string().max(256) }),
  z.object({ op: z.literal("unload"), body: z.unknown() }),
  z.object({ op: z.literal("demand"), model: z.string().min(1).max(256), head: z.string().min(1).max(64) }),
  z.object({ op: z.literal("unloadIdle"), model: z.string().min(1).max(256) }),
  /** `keepAliveMs`: -1 for ever (JSON has no Infinity). */
  z.object({ op: z.literal("keepAlive"), worker: z.string().min(1).max(128), model: z.string().min(1).max(256), keepAliveMs: z.number().int().min(-1) }),
]);
export type LeaderOp = z.infer<typeof LeaderOp>;

/** The planner's answer: what the admin's route answers (status and JSON body). */
export const LeaderReply = z.object({ status: z.number().int().min(100).max(599), body: z.unknown() });
export type LeaderReply = z.infer<typeof LeaderReply>;

export type LeaderHandler = (op: LeaderOp) => Promise<LeaderReply>;

/** Asks the head that plans; rejects with PlannerUnavailableError when none answers. */
export interface LeaderAsk {
  ask(op: LeaderOp): Promise<LeaderReply>;
}

function decode<T>(schema: z.ZodType<T>, data: Uint8Array): T | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(new TextDecoder().decode(data)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export class LeaderChannel implements LeaderAsk {
  private subscription: Subscription | undefined;
  private handler: LeaderHandler | undefined;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(
    private readonly link: NatsLink,
    private readonly lease: PlannerLease,
    private readonly log: Logger,
  ) {
    this.unsubscribe.push(
      lease.onChange(() => this.listen()),
      link.onConnected(() => this.listen()),
    );
  }

  /** Answers requests with `handler` whenever this head holds the lease. */
  serve(handler: LeaderHandler): void {
    this.handler = handler;
    this.listen();
  }

  async ask(op: LeaderOp): Promise<LeaderReply> {
    const connection = this.link.current;
    if (!connection) throw new PlannerUnavailableError("NATS is not reachable from this head, so the head that runs the placement planner cannot be asked; try again shortly.");
    let answer: Uint8Array;
    try {
      answer = (await connection.request(LEADER_SUBJECT, JSON.stringify(op), { timeout: ASK_TIMEOUT_MS })).data;
    } catch (error) {
      const none = (error as { isNoResponders?: () => boolean }).isNoResponders?.() === true || (error as Error).name === "NoRespondersError";
      const message = none
        ? "No head runs the placement planner right now (one takes over within seconds of the last one's loss); try again shortly."
        : `The head that runs the placement planner did not answer: ${(error as Error).message}`;
      throw new PlannerUnavailableError(message);
    }
    const reply = decode(LeaderReply, answer);
    if (!reply) throw new PlannerUnavailableError("The head that runs the placement planner answered with something this head cannot read.");
    return reply;
  }

  close(): void {
    for (const stop of this.unsubscribe.splice(0)) stop();
    this.subscription?.unsubscribe();
    this.subscription = undefined;
  }

  /** Listens while leading (and connected); stops listening otherwise. */
  private listen(): void {
    const connection = this.link.current;
    const should = this.lease.leading && this.handler !== undefined && connection !== undefined;
    if (!should) {
      this.subscription?.unsubscribe();
      this.subscription = undefined;
      return;
    }
    // The client subscribes again by itself after a reconnect.
    if (this.subscription && !this.subscription.isClosed()) return;
    this.subscription = this.subscribe(connection);
  }

  private subscribe(connection: NatsConnection): Subscription {
    return connection.subscribe(LEADER_SUBJECT, {
      callback: (error, message) => {
        if (error) return void this.log.warn({ err: error }, "the planner's request subscription failed");
        const op = decode(LeaderOp, message.data);
        const handler = this.handler;
        // Errors in the API's one shape (mapError): the asking head passes the reply on to its client as it is.
        const reply = (answer: LeaderReply) => message.respond(JSON.stringify(answer));
        if (!op || !handler) return void reply(mapError(new InvalidRequestError("unreadable request to the planner")));
        handler(op).then(reply, (err: unknown) => {
          this.log.error({ err }, "the planner failed a request from another head");
          reply(mapError(err));
        });
      },
    });
  }
}

/** Planning for a head among several: it plans while it holds the lease, and otherwise tells the holder what waits. */
export class SharedPlanning implements Planning {
  private readonly lastAsked = new Map<string, number>();
  /** The keep_alive last passed on per worker and model: only a change is sent (requests may carry it by the thousand). */
  private readonly keptAlive = new Map<string, number>();

  constructor(
    private readonly lease: PlannerLease,
    private readonly leader: LeaderAsk,
    private readonly headId: string,
    private readonly log: Logger,
  ) {}

  get leading(): boolean {
    return this.lease.leading;
  }

  get epoch(): number | undefined {
    return this.lease.epoch;
  }

  onChange(listener: () => void): () => void {
    return this.lease.onChange(listener);
  }

  wantLoad(model: string): void {
    const now = Date.now();
    if (now - (this.lastAsked.get(model) ?? 0) < DEMAND_EVERY_MS) return;
    this.lastAsked.set(model, now);
    if (this.lastAsked.size > 1_024) for (const [key, at] of this.lastAsked) if (now - at >= DEMAND_EVERY_MS) this.lastAsked.delete(key);
    // Repeated at every sweep while requests wait, so a failure here is retried shortly.
    this.leader.ask({ op: "demand", model, head: this.headId }).catch((error: unknown) => this.log.debug({ err: error, model }, "could not tell the planner a model is wanted"));
  }

  keepAlive(workerName: string, model: string, keepAliveMs: number): void {
    const key = `${workerName}\n${model}`;
    if (this.keptAlive.get(key) === keepAliveMs) return;
    if (this.keptAlive.size >= 4_096) this.keptAlive.clear();
    this.keptAlive.set(key, keepAliveMs);
    const sent = Number.isFinite(keepAliveMs) ? Math.round(keepAliveMs) : -1;
    this.leader.ask({ op: "keepAlive", worker: workerName, model, keepAliveMs: sent }).catch((error: unknown) => {
      // Sent again by the next request that asks it.
      this.keptAlive.delete(key);
      this.log.warn({ err: error, model }, "could not pass a keep_alive on to the planner");
    });
  }

  wantUnloadIdle(model: string): void {
    this.leader.ask({ op: "unloadIdle", model }).catch((error: unknown) => this.log.warn({ err: error, model }, "could not ask the planner to unload an idle model (keep_alive 0); it unloads when idle for long enough"));
  }
}
