// The cluster as JSON: workers, their slots and models, queue depths (read by /v1/cluster, metrics and the dashboard).
import type { WorkerRegistry } from "./registry.js";
import { isTerminal } from "./task.js";

export function clusterView(registry: WorkerRegistry, queueDepths: ReadonlyMap<string, number>, liveTasks: number) {
  const workers = [...registry.all()].map((w) => ({
    id: w.id,
    name: w.name,
    engine: w.engine,
    state: w.state,
    device: w.device,
    models: w.models,
    maxConcurrency: w.maxConcurrency,
    inflight: [...w.slots.values()].filter((t) => !isTerminal(t.state)).map((t) => t.id),
    /** Cancelled tasks whose slot waits for the worker's acknowledgement. */
    cancelling: [...w.slots.values()].filter((t) => isTerminal(t.state)).map((t) => t.id),
    completionTokens: w.completionTokens,
    reportedRunning: w.reportedRunning,
    connectedAt: new Date(w.connectedAt).toISOString(),
  }));
  const models = registry.models().map(({ info, workers: serving }) => ({
    id: info.id,
    contextLength: info.contextLength,
    format: info.format,
    workers: serving.map((w) => w.id),
    queueDepth: queueDepths.get(info.id) ?? 0,
  }));
  return { workers, models, tasks: { live: liveTasks } };
}

export type ClusterView = ReturnType<typeof clusterView>;
