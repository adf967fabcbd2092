// What the cluster is doing right now, for the dashboard: requests in flight, the last few that ended, tokens per
// second for the cluster and each worker, which models are loaded where, and what each worker is pulling. A master
// observer; it keeps no timer.
import type { ClusterView as MasterClusterView } from "../master/cluster-view.js";
import type { HeadView, Heads } from "../heads/heads.js";
import type { Master } from "../master/master.js";
import type { MasterObserver, TaskOutcome } from "../master/observer.js";
import type { WorkerEntry } from "../master/registry.js";
import type { Pull, SlotState } from "../master/placement/state.js";
import type { CancelStage, Task } from "../master/task.js";
import type { DeviceInfo } from "../worker-protocol/index.js";
import { RateWindow } from "./rate-window.js";

/** Seconds of cluster throughput history (the sparkline): at most, and at least once just started. */
const HISTORY_SECONDS = 300;
const MIN_HISTORY_SECONDS = 60;
/** Seconds a worker's tokens/s is averaged over. */
const WORKER_RATE_SECONDS = 3;
const MAX_LISTED_REQUESTS = 50;
const MAX_RECENT = 12;
/** Library models listed per worker, and placements listed: a big models dir shows its first ones and a count. */
const MAX_LISTED_LIBRARY = 64;
const MAX_LISTED_PLACEMENTS = 64;
/** Pulls listed per worker: those downloading, then the last ones that ended. */
const MAX_LISTED_PULLS = 8;

export interface RequestView {
  id: string;
  requestId: string | undefined;
  /** The API route the request came in on (which dialect). */
  route: string | undefined;
  model: string;
  stage: CancelStage;
  tokens: number;
  /** Prompt processing as the worker reported it, while in prefill (`total` when the engine knows it). */
  prompt?: { done: number; total: number | undefined };
  durationMs: number;
  worker: string | undefined;
}

export interface EndedRequestView extends RequestView {
  outcome: TaskOutcome["state"];
  endedAt: number;
}

/** A worker's models as placement sees them, for the worker that loads models on command. */
export interface WorkerPlacementView {
  memory: { totalBytes: number; usedBytes: number; freeBytes: number };
  /** Its models loading, loaded or unloading; `pinned`: the placement that pins it, "startup", or null. */
  models: Array<{ id: string; state: SlotState; progress: number; memoryBytes: number; pinned: string | null }>;
  /** Models of its library not loaded here (the ones it could load), by id. */
  library: Array<{ id: string; sizeBytes: number; memoryBytes: number }>;
  /** Models of its library not loaded here beyond those listed. */
  moreLibrary: number;
  /** Whether it downloads model files on command (POST /v1/models/pull). */
  canPull: boolean;
  /** Its pulls, newest first: those downloading, then the last ones that ended. */
  pulls: PullView[];
}

/** A download onto a worker; `totalBytes` null while the file's size is not known. */
export interface PullView {
  id: string;
  /** The file's name in the models dir, or the URL's last segment until the worker names it. */
  fileName: string;
  state: Pull["state"];
  receivedBytes: number;
  totalBytes: number | null;
  error: string | null;
}

export interface WorkerView {
  id: string;
  name: string;
  engine: string;
  state: string;
  /** Outlier ejection state: healthy, ejected or probation. */
  health: string;
  device: DeviceInfo;
  models: string[];
  maxConcurrency: number;
  inflight: number;
  tokensPerSecond: number;
  completionTokens: number;
  connectedAt: number;
  /** Prompt caching: tokens held in the engine's caches (all models), and the share of prompt tokens reused. */
  cachedTokensHeld: number;
  cacheHitRatio: number;
  /** Null for a worker that serves fixed models (no library). */
  placement: WorkerPlacementView | null;
}

/** The dashboard's picture of the cluster at one moment. */
export interface ClusterView {
  at: number;
  workers: WorkerView[];
  models: Array<{ id: string; queueDepth: number; workers: number }>;
  /** Explicit placements (their instances are the models that `pinned` names). */
  placements: Array<{ id: string; model: string; replicas: number }>;
  /** Placements beyond those listed. */
  morePlacements: number;
  requests: RequestView[];
  /** Requests in flight beyond those listed. */
  moreRequests: number;
  recent: EndedRequestView[];
  /** Tokens per second now, and per second over the last minutes (oldest first). */
  throughput: { tokensPerSecond: number; history: number[] };
  /** The cluster's heads, this one first (docs/scaling.md); one without --nats. */
  heads: HeadView[];
}

export class ClusterActivity implements MasterObserver {
  private readonly live = new Map<string, Task>();
  /** The name of the worker each live task was last assigned to (kept even after that worker left). */
  private readonly workerNames = new Map<string, string>();
  /** The last tasks that ended, newest first, described only when the dashboard asks (not on every task's end). */
  private readonly recent: Array<{ task: Task; outcome: TaskOutcome; worker: string | undefined }> = [];
  private readonly cluster = new RateWindow(HISTORY_SECONDS + 1);
  private readonly perWorker = new Map<string, RateWindow>();
  private readonly startedAt = Date.now();

  constructor(
    private readonly master: Master,
    private readonly heads: Pick<Heads, "list">,
  ) {}

  taskQueued(task: Task): void {
    this.live.set(task.id, task);
  }

  taskAssigned(task: Task, worker: WorkerEntry): void {
    this.live.set(task.id, task);
    this.workerNames.set(task.id, worker.name);
  }

  taskTokens(_task: Task, worker: WorkerEntry, tokens: number): void {
    this.cluster.add(tokens);
    this.workerRate(worker.id).add(tokens);
  }

  taskEnded(task: Task, outcome: TaskOutcome): void {
    if (!this.live.delete(task.id)) return;
    this.recent.unshift({ task, outcome, worker: this.workerNames.get(task.id) });
    this.workerNames.delete(task.id);
    if (this.recent.length > MAX_RECENT) this.recent.length = MAX_RECENT;
  }

  workerLeft(worker: WorkerEntry): void {
    this.perWorker.delete(worker.id);
  }

  view(): ClusterView {
    const now = Date.now();
    const snapshot = this.master.snapshot();
    const workers = snapshot.workers.map((w) => ({
      id: w.id,
      name: w.name,
      engine: w.engine,
      state: w.state,
      health: w.health.state,
      device: w.device,
      models: w.models.map((m) => m.id),
      maxConcurrency: w.maxConcurrency,
      inflight: w.inflight.length,
      tokensPerSecond: round(this.perWorker.get(w.id)?.rate(WORKER_RATE_SECONDS) ?? 0),
      completionTokens: w.completionTokens,
      connectedAt: Date.parse(w.connectedAt),
      cachedTokensHeld: w.cache.models.reduce((sum, m) => sum + m.tokens, 0),
      cacheHitRatio: round(w.cache.hitRatio),
      placement: w.placement && placementView(w.placement, snapshot.pulls.filter((p) => p.workerId === w.id)),
    }));
    const models = snapshot.models.map((m) => ({ id: m.id, queueDepth: m.queueDepth, workers: m.workers.length }));
    const placements = snapshot.placements.slice(0, MAX_LISTED_PLACEMENTS).map((p) => ({ id: p.id, model: p.model, replicas: p.replicas }));
    const live = [...this.live.values()];
    const requests = live.slice(-MAX_LISTED_REQUESTS).reverse().map((task) => this.describe(task, now));
    return {
      at: now,
      workers,
      models,
      placements,
      morePlacements: snapshot.placements.length - placements.length,
      requests,
      moreRequests: live.length - requests.length,
      recent: this.recent.map(({ task, outcome, worker }) => {
        const endedAt = task.endedAt ?? now;
        const stage = outcome.state === "cancelled" ? outcome.stage : task.stage;
        return { ...this.describe(task, endedAt, worker), stage, outcome: outcome.state, endedAt };
      }),
      throughput: { tokensPerSecond: round(this.cluster.rate(WORKER_RATE_SECONDS)), history: this.cluster.series(this.historyLength(now)) },
      heads: this.heads.list(),
    };
  }

  /** A young coordinator shows the minutes it has lived, not five minutes of zeros before it started. */
  private historyLength(now: number): number {
    const lived = Math.ceil((now - this.startedAt) / 1000);
    return Math.min(HISTORY_SECONDS, Math.max(MIN_HISTORY_SECONDS, lived));
  }

  private describe(task: Task, now: number, worker = this.workerNames.get(task.id)): RequestView {
    return {
      id: task.id,
      requestId: task.requestId,
      route: task.route,
      model: task.model,
      stage: task.stage,
      tokens: task.completionTokens,
      ...(task.state === "assigned" && task.promptTokensDone > 0 && { prompt: { done: task.promptTokensDone, total: task.promptTokens } }),
      durationMs: (task.endedAt ?? now) - task.createdAt,
      worker: task.state === "queued" ? undefined : worker,
    };
  }

  private workerRate(workerId: string): RateWindow {
    let window = this.perWorker.get(workerId);
    if (!window) {
      window = new RateWindow(WORKER_RATE_SECONDS + 2);
      this.perWorker.set(workerId, window);
    }
    return window;
  }
}

/** A worker's memory and models, the first models of its library that it could load, and its latest pulls. */
function placementView(placement: NonNullable<MasterClusterView["workers"][number]["placement"]>, pulls: Pull[]): WorkerPlacementView {
  const here = new Set(placement.models.map((m) => m.id));
  const loadable = placement.library.filter((entry) => !here.has(entry.id)).sort((a, b) => a.id.localeCompare(b.id));
  return {
    memory: placement.memory,
    models: placement.models.map(({ id, state, progress, memoryBytes, pinned }) => ({ id, state, progress: round(progress, 100), memoryBytes, pinned })),
    library: loadable.slice(0, MAX_LISTED_LIBRARY).map(({ id, sizeBytes, memoryBytes }) => ({ id, sizeBytes, memoryBytes })),
    moreLibrary: Math.max(0, loadable.length - MAX_LISTED_LIBRARY),
    canPull: placement.canPull,
    pulls: latestPulls(pulls).map(pullView),
  };
}

/** Those downloading, then those that ended, each newest first (pulls are kept in the order they started). */
function latestPulls(pulls: Pull[]): Pull[] {
  const newest = [...pulls].reverse();
  const downloading = newest.filter((p) => p.state === "downloading");
  const ended = newest.filter((p) => p.state !== "downloading");
  return [...downloading, ...ended].slice(0, MAX_LISTED_PULLS);
}

function pullView(pull: Pull): PullView {
  return {
    id: pull.id,
    fileName: pull.fileName ?? lastSegment(pull.url),
    state: pull.state,
    receivedBytes: pull.receivedBytes,
    totalBytes: pull.totalBytes ?? null,
    error: pull.error?.message ?? null,
  };
}

/** "model.gguf" of "https://host/org/repo/resolve/main/model.gguf?download=true". */
function lastSegment(url: string): string {
  const path = url.split(/[?#]/, 1)[0] ?? url;
  return path.split("/").filter(Boolean).pop() ?? url;
}

function round(value: number, scale = 10): number {
  return Math.round(value * scale) / scale;
}
