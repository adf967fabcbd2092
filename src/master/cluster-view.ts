// The cluster as JSON: workers, their slots and models, queue depths (read by /v1/cluster, metrics and the dashboard).
import type { ModelPlacer } from "./placement/placer.js";
import { memoryOf } from "./placement/state.js";
import type { WorkerRegistry } from "./registry.js";
import type { Router } from "./routing/router.js";

/** A worker's library, memory and models as placement sees them (workers that load models on command). */
function placementOf(placer: ModelPlacer | undefined, workerId: string) {
  const worker = placer?.state.workers.get(workerId);
  if (!worker) return null;
  return {
    memory: memoryOf(worker),
    /** Whether it downloads model files on command (POST /v1/models/pull). */
    canPull: worker.pulls,
    library: [...worker.library.values()],
    models: [...worker.slots.values()].map((s) => ({
      id: s.model,
      state: s.state,
      progress: s.progress,
      memoryBytes: s.memoryBytes,
      pinned: s.pin ?? null,
      lastUsedAt: new Date(s.lastUsedAt).toISOString(),
    })),
  };
}

export function clusterView(
  registry: WorkerRegistry,
  queueDepths: ReadonlyMap<string, number>,
  liveTasks: number,
  routing: ReturnType<Router["stats"]> = [],
  placer?: ModelPlacer,
) {
  const workers = [...registry.all()].map((w) => ({
    id: w.id,
    name: w.name,
    engine: w.engine,
    state: w.state,
    device: w.device,
    models: w.models,
    maxConcurrency: w.maxConcurrency,
    inflight: [...w.slots.keys()],
    /** Tasks assigned here that the worker has shown no sign of working on yet. */
    unstarted: w.unstarted,
    /** Cancelled tasks whose slot waits for the worker's acknowledgement. */
    cancelling: [...w.cancelling.keys()],
    /** Outlier ejection: healthy, ejected (out of rotation until `ejectedUntil`) or probation (one task at a time). */
    health: {
      state: w.health.state,
      consecutiveFailures: w.health.consecutiveFailures,
      ejections: w.health.ejections,
      ejectedUntil: w.health.state === "ejected" ? new Date(w.health.ejectedUntil).toISOString() : null,
    },
    completionTokens: w.completionTokens,
    reportedRunning: w.reportedRunning,
    /** Prompt caching: what its engine holds per model, and how much of the prompts it finished came from cache. */
    cache: {
      models: w.cache,
      promptTokens: w.promptTokens,
      cachedTokens: w.cachedTokens,
      hitRatio: w.promptTokens > 0 ? w.cachedTokens / w.promptTokens : 0,
    },
    /** For a worker that loads models on command: its memory, library, and models with their state (else null). */
    placement: placementOf(placer, w.id),
    connectedAt: new Date(w.connectedAt).toISOString(),
  }));
  const models = registry.models().map(({ info, workers: serving }) => ({
    id: info.id,
    contextLength: info.contextLength,
    format: info.format,
    workers: serving.map((w) => w.id),
    queueDepth: queueDepths.get(info.id) ?? 0,
    /** The model's routing policy (once a task of it was routed), and what that policy remembers. */
    routing: routing.find((r) => r.model === info.id) ?? null,
  }));
  const placements = placer?.placements().map((p) => ({ id: p.id, model: p.model, replicas: p.replicas, instances: p.instances })) ?? [];
  const pulls = placer?.pulls() ?? [];
  return { workers, models, placements, pulls, tasks: { live: liveTasks } };
}

export type ClusterView = ReturnType<typeof clusterView>;
