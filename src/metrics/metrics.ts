// Prometheus metrics of one coordinator: a master observer plus the API's request and stream counts, in a
// registry of its own (several coordinators in one process never share a series).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SseObserver } from "../api/sse.js";
import type { Heads } from "../heads/heads.js";
import type { Master } from "../master/master.js";
import type { MasterObserver, TaskOutcome } from "../master/observer.js";
import type { PlacementNotice } from "../master/placement/placer.js";
import { memoryOf } from "../master/placement/state.js";
import type { WorkerEntry } from "../master/registry.js";
import type { Task } from "../master/task.js";
import { processRegistry } from "./process-metrics.js";

const latencyBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80];
const queueBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const interTokenBuckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5];
/** A worker's state for the gauge: out of rotation (ejected, probation) over ready or draining. */
const workerStates = ["ready", "draining", "ejected", "probation"] as const;

/** Connections not yet shown to be clients: `http` before their first request, `worker` before their Hello. */
export type PendingKind = "http" | "worker";

/**
 * Labels stay bounded: routes are route patterns, models are only those workers serve, workers are named by
 * their configured names, stages, outcomes and codes come from fixed sets. No task ids, no user text.
 */
export class CoordinatorMetrics implements MasterObserver {
  readonly registry = new Registry();
  /** Chat SSE responses report here: streams open now and keepalive comments sent. */
  readonly sse: SseObserver;

  private readonly requests = this.counter("coordinator_http_requests_total", "HTTP requests answered, by route pattern, model and status", ["route", "model", "status"]);
  private readonly activeStreams = this.gauge("coordinator_active_streams", "Chat completion SSE streams open now");
  private readonly keepalives = this.counter("coordinator_sse_keepalives_total", "SSE keepalive comments sent on chat streams");
  private readonly queued = this.counter("coordinator_queued_requests_total", "Tasks that had to wait in their model's queue", ["model"]);
  private readonly queueWait = this.histogram("coordinator_queue_wait_seconds", "Time from admission (or re-queueing) to assignment to a worker", ["model"], queueBuckets);
  private readonly ttft = this.histogram("coordinator_time_to_first_token_seconds", "Time from admission to the first generated text", ["model"], latencyBuckets);
  private readonly interToken = this.histogram("coordinator_inter_token_latency_seconds", "Gap between chunks divided by the tokens in the later chunk", ["model"], interTokenBuckets);
  private readonly duration = this.histogram("coordinator_task_duration_seconds", "Time from admission to the end of the task", ["model", "outcome"], latencyBuckets);
  private readonly tasks = this.counter("coordinator_tasks_total", "Tasks ended, by outcome (finished, failed, cancelled)", ["model", "outcome"]);
  private readonly promptTokensIn = this.counter("coordinator_prompt_tokens_total", "Prompt tokens of finished tasks, as their worker counted them", ["model", "worker"]);
  private readonly completionTokensOut = this.counter("coordinator_completion_tokens_total", "Tokens generated, as they arrive from workers", ["model", "worker"]);
  private readonly cancellations = this.counter("coordinator_cancellations_total", "Tasks cancelled, by the stage they were in (queued, prefill, thinking, streaming)", ["model", "stage"]);
  private readonly failovers = this.counter("coordinator_failovers_total", "Tasks sent back to the queue because their worker was lost before producing anything", ["model"]);
  private readonly refusals = this.counter("coordinator_task_refusals_total", "Tasks a worker refused (TaskRefused: no free slot, or draining) and that went to another worker or waited", ["worker", "reason"]);
  private readonly workerEvents = this.counter("coordinator_worker_events_total", "Workers that joined or left", ["event"]);
  private readonly protocolErrors = this.counter("coordinator_protocol_errors_total", "Workers disconnected for breaking the protocol, by error code", ["code"]);
  private readonly stalls = this.counter("coordinator_task_stalls_total", "Running tasks given up on because their worker showed no progress for --task-stall-ms", ["model", "worker"]);
  private readonly ejections = this.counter("coordinator_worker_ejections_total", "Times a worker was taken out of rotation because its tasks kept failing or stalling", ["worker"]);
  private readonly cachedTokensIn = this.counter(
    "coordinator_cached_prompt_tokens_total",
    "Prompt tokens of finished tasks that their worker's engine reused from its cache (divide by coordinator_prompt_tokens_total for the hit ratio)",
    ["model", "worker"],
  );
  private readonly routingDecisions = this.counter("coordinator_routing_decisions_total", "Workers chosen for tasks, by model, routing policy and reason", ["model", "policy", "reason"]);
  private readonly modelLoads = this.counter("coordinator_model_loads_total", "Model loads on workers that load on command, by outcome (started, loaded, failed)", ["model", "worker", "outcome"]);
  private readonly modelUnloads = this.counter("coordinator_model_unloads_total", "Model unloads, by cause (idle, evicted to make room, unplaced, abandoned when nobody waited)", ["model", "worker", "cause"]);
  private readonly modelLoadTime = this.histogram("coordinator_model_load_seconds", "Time from LoadModel to the worker's loaded (or failed) report", ["model", "outcome"], [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320]);
  private readonly staleMessages = this.counter("coordinator_stale_messages_total", "Late or duplicate worker messages ignored, by message type", ["type"]);
  private readonly pendingDropped = this.counter("coordinator_pending_connections_dropped_total", "Connections dropped for the cap on pending ones: http (no request yet) or worker (no Hello yet)", ["kind"]);
  private readonly tokenFailures = this.counter("coordinator_worker_auth_failures_total", "Worker Hellos refused for a wrong token");
  private readonly bans = this.counter("coordinator_worker_auth_bans_total", "Addresses banned for too many wrong worker tokens");
  private readonly bannedTurnedAway = this.counter("coordinator_worker_auth_banned_refusals_total", "Worker connections from a banned address, turned away before their Hello was read");
  /** How many connections of each kind are pending now, read at each scrape. */
  private readonly pendingCounts = new Map<PendingKind, () => number>();

  /** Since when each queued task waits (admission, or the moment it was re-queued after a failover). */
  private readonly queuedSince = new Map<string, number>();
  /** When the previous chunk of each streaming task arrived. */
  private readonly lastChunkAt = new Map<string, number>();

  constructor(private readonly master: Master) {
    const registry = this.registry;
    const [promptTokens, cachedTokens] = [this.promptTokensIn, this.cachedTokensIn];
    new Gauge({
      name: "coordinator_cache_hit_ratio",
      help: "Share of finished tasks' prompt tokens that their worker's engine reused from its cache, since the coordinator started (coordinator_cached_prompt_tokens_total over coordinator_prompt_tokens_total)",
      labelNames: ["model", "worker"],
      registers: [registry],
      // Derived from the two counters at each scrape.
      async collect() {
        const seriesKey = (labels: Partial<Record<string, string | number>>) => `${labels.model}\u0000${labels.worker}`;
        const [prompt, cached] = await Promise.all([promptTokens.get(), cachedTokens.get()]);
        const cachedBy = new Map(cached.values.map((v) => [seriesKey(v.labels), v.value]));
        this.reset();
        for (const { labels, value } of prompt.values) {
          if (value > 0) this.set({ model: String(labels.model), worker: String(labels.worker) }, (cachedBy.get(seriesKey(labels)) ?? 0) / value);
        }
      },
    });
    new Gauge({
      name: "coordinator_queue_depth",
      help: "Tasks waiting in each served model's queue",
      labelNames: ["model"],
      registers: [registry],
      collect() {
        this.reset();
        for (const model of master.snapshot().models) this.set({ model: model.id }, model.queueDepth);
      },
    });
    new Gauge({
      name: "coordinator_workers",
      help: "Connected workers, by state (ready, draining, or ejected / probation when taken out of rotation)",
      labelNames: ["state"],
      registers: [registry],
      collect() {
        const counts = new Map<string, number>(workerStates.map((state) => [state, 0]));
        for (const worker of master.registry.all()) {
          const state = worker.health.state === "healthy" ? worker.state : worker.health.state;
          counts.set(state, (counts.get(state) ?? 0) + 1);
        }
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });
    new Gauge({
      name: "coordinator_worker_busy_slots",
      help: "Task slots in use on each connected worker",
      labelNames: ["worker"],
      registers: [registry],
      collect() {
        this.reset();
        for (const worker of master.registry.all()) this.set({ worker: worker.name }, worker.slots.size);
      },
    });
    const pendingCounts = this.pendingCounts;
    new Gauge({
      name: "coordinator_pending_connections",
      help: "Connections that have not sent a request (http) or a Hello (worker) yet",
      labelNames: ["kind"],
      registers: [registry],
      collect() {
        for (const [kind, count] of pendingCounts) this.set({ kind }, count());
      },
    });
    new Gauge({
      name: "coordinator_worker_memory_bytes",
      help: "Memory of each worker that loads models on command: total (within --memory-limit) and used by its models",
      labelNames: ["worker", "kind"],
      registers: [registry],
      collect() {
        this.reset();
        for (const worker of master.placer.state.workers.values()) {
          const memory = memoryOf(worker);
          this.set({ worker: worker.name, kind: "total" }, memory.totalBytes);
          this.set({ worker: worker.name, kind: "used" }, memory.usedBytes);
        }
      },
    });
    new Gauge({
      name: "coordinator_live_tasks",
      help: "Tasks admitted and not yet ended (queued or running)",
      registers: [registry],
      collect() {
        this.set(master.liveTasks);
      },
    });
    this.sse = {
      opened: () => this.activeStreams.inc(),
      keepalive: () => this.keepalives.inc(),
      released: () => this.activeStreams.dec(),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text: this coordinator's series, then the process's (CPU, memory, event loop, GC). */
  async text(): Promise<string> {
    const [own, process] = await Promise.all([this.registry.metrics(), processRegistry().metrics()]);
    return `${own}\n${process}`;
  }

  /** `model` as a label value: itself when a worker serves it, else empty (a client's typo is not a series). */
  modelLabel(model: string | undefined): string {
    return model !== undefined && this.master.registry.isServed(model) ? model : "";
  }

  httpRequest(route: string, model: string | undefined, status: number): void {
    this.requests.inc({ route, model: this.modelLabel(model), status: String(status) });
  }

  /** Reports the connections of `kind` pending at each scrape. */
  watchPending(kind: PendingKind, count: () => number): void {
    this.pendingCounts.set(kind, count);
  }

  /** Heads known (this one included) and, with --nats, whether NATS is connected; read at each scrape. */
  watchHeads(heads: Heads): void {
    new Gauge({
      name: "coordinator_heads",
      help: "Heads of the cluster this head knows, itself included (through NATS with --nats; else 1)",
      registers: [this.registry],
      collect() {
        this.set(heads.list().length);
      },
    });
    if (heads.nats === "off") return;
    new Gauge({
      name: "coordinator_nats_connected",
      help: "1 while this head is connected to NATS, else 0 (it serves on with what it knows)",
      registers: [this.registry],
      collect() {
        this.set(heads.nats === "connected" ? 1 : 0);
      },
    });
    new Gauge({
      name: "coordinator_planner_leader",
      help: "1 while this head runs the placement planner (holds the planner lease), else 0",
      registers: [this.registry],
      collect() {
        this.set(heads.list()[0]?.planner ? 1 : 0);
      },
    });
  }

  /** With --nats: the other heads' cache summaries this head holds for its cache-aware policies; read at each scrape. */
  watchCacheHints(stats: () => { summaries: number; hashes: number }): void {
    new Gauge({
      name: "coordinator_cache_hint_summaries",
      help: "Cache summaries from other heads (one per model, worker and head) this head routes by",
      registers: [this.registry],
      collect() {
        this.set(stats().summaries);
      },
    });
    new Gauge({
      name: "coordinator_cache_hint_hashes",
      help: "Block hashes in the cache summaries from other heads this head holds",
      registers: [this.registry],
      collect() {
        this.set(stats().hashes);
      },
    });
  }

  pendingConnectionDropped(kind: PendingKind): void {
    this.pendingDropped.inc({ kind });
  }

  workerTokenFailed(): void {
    this.tokenFailures.inc();
  }

  workerAddressBanned(): void {
    this.bans.inc();
  }

  workerBannedTurnedAway(): void {
    this.bannedTurnedAway.inc();
  }

  /** A finished task's prompt tokens, and how many of them its worker's engine reused from its cache (at most those). */
  promptTokens(model: string, worker: string, tokens: number, cached = 0): void {
    const labels = { model: this.modelLabel(model), worker };
    if (tokens > 0) this.promptTokensIn.inc(labels, tokens);
    if (cached > 0) this.cachedTokensIn.inc(labels, cached);
  }

  modelPlacement(notice: PlacementNotice): void {
    if (notice.kind === "unload") {
      this.modelUnloads.inc({ model: notice.model, worker: notice.worker, cause: notice.cause });
      return;
    }
    const outcome = notice.kind === "load_started" ? "started" : notice.kind === "loaded" ? "loaded" : "failed";
    this.modelLoads.inc({ model: notice.model, worker: notice.worker, outcome });
    if (notice.kind !== "load_started") this.modelLoadTime.observe({ model: notice.model, outcome }, seconds(notice.loadMs));
  }

  routed(model: string, policy: string, reason: string): void {
    this.routingDecisions.inc({ model: this.modelLabel(model), policy, reason });
  }

  // ---------- the master's events ----------

  taskQueued(task: Task): void {
    this.queuedSince.set(task.id, Date.now());
    this.queued.inc({ model: task.model });
  }

  taskAssigned(task: Task): void {
    const since = this.queuedSince.get(task.id) ?? task.createdAt;
    this.queuedSince.delete(task.id);
    this.queueWait.observe({ model: task.model }, seconds(Date.now() - since));
  }

  taskFirstToken(task: Task): void {
    this.ttft.observe({ model: task.model }, seconds((task.firstTokenAt ?? Date.now()) - task.createdAt));
  }

  taskTokens(task: Task, worker: WorkerEntry, tokens: number): void {
    this.completionTokensOut.inc({ model: task.model, worker: worker.name }, tokens);
    const now = Date.now();
    const last = this.lastChunkAt.get(task.id);
    this.lastChunkAt.set(task.id, now);
    // The first chunk's wait is time to first token; each later one gives the gap per token.
    if (last !== undefined) this.interToken.observe({ model: task.model }, seconds(now - last) / Math.max(1, tokens));
  }

  taskEnded(task: Task, outcome: TaskOutcome): void {
    this.queuedSince.delete(task.id);
    this.lastChunkAt.delete(task.id);
    this.tasks.inc({ model: task.model, outcome: outcome.state });
    this.duration.observe({ model: task.model, outcome: outcome.state }, seconds((task.endedAt ?? Date.now()) - task.createdAt));
    if (outcome.state === "cancelled") this.cancellations.inc({ model: task.model, stage: outcome.stage });
  }

  taskRetried(task: Task): void {
    this.lastChunkAt.delete(task.id);
    this.failovers.inc({ model: task.model });
  }

  taskRefused(_task: Task, worker: WorkerEntry, reason: string): void {
    this.refusals.inc({ worker: worker.name, reason });
  }

  workerJoined(): void {
    this.workerEvents.inc({ event: "joined" });
  }

  workerLeft(): void {
    this.workerEvents.inc({ event: "left" });
  }

  taskStalled(task: Task, worker: WorkerEntry): void {
    this.stalls.inc({ model: task.model, worker: worker.name });
  }

  workerHealthChanged(worker: WorkerEntry): void {
    if (worker.health.state === "ejected") this.ejections.inc({ worker: worker.name });
  }

  protocolError(code: string): void {
    this.protocolErrors.inc({ code });
  }

  staleMessage(type: string): void {
    this.staleMessages.inc({ type });
  }

  // ---------- construction ----------

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}

function seconds(ms: number): number {
  return Math.max(0, ms) / 1000;
}
