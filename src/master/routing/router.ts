// The master's router: one routing policy per model (the configured one), asked for a worker whenever a task could
// start, and told of assignments, releases and workers leaving. Policies are made on a model's first task and
// dropped with its last worker.
import type { WorkerEntry } from "../registry.js";
import type { ModelWorkers } from "../worker-heap.js";
import type { Decision, PolicyName, PolicyStats, RoutedTask, RoutingPolicy } from "./policy.js";

export interface RouterOptions {
  /** The policy of each model. */
  policyOf(model: string): PolicyName;
  /** Makes a policy by name. */
  create(name: PolicyName): RoutingPolicy;
  /** Hears every decision (metrics). */
  onDecision?(model: string, policy: string, reason: string): void;
}

export class Router {
  private readonly policies = new Map<string, RoutingPolicy>();

  constructor(private readonly options: RouterOptions) {}

  /** A worker with a free slot for `task` among `candidates`, as its model's policy chooses; undefined when none. */
  pick(task: RoutedTask, candidates: ModelWorkers<WorkerEntry> | undefined): WorkerEntry | undefined {
    if (!candidates) return undefined;
    const policy = this.policy(task.model);
    const decision: Decision<WorkerEntry> | undefined = policy.pick(task, candidates);
    if (!decision) return undefined;
    this.options.onDecision?.(task.model, policy.name, decision.reason);
    return decision.worker;
  }

  assigned(task: RoutedTask, worker: WorkerEntry): void {
    this.policies.get(task.model)?.assigned(task, worker.id);
  }

  released(task: RoutedTask, worker: WorkerEntry): void {
    this.policies.get(task.model)?.released(task, worker.id);
  }

  /** The worker left: every policy of its models forgets it; a model no worker serves any more drops its policy. */
  workerRemoved(worker: WorkerEntry, stillServed: (model: string) => boolean): void {
    for (const model of worker.models) this.modelRemoved(worker, model.id, stillServed(model.id));
  }

  /** The worker no longer serves `model` (it left, or unloaded it); the model's policy goes when nobody serves it. */
  modelRemoved(worker: WorkerEntry, model: string, stillServed: boolean): void {
    const policy = this.policies.get(model);
    if (!policy) return;
    if (stillServed) policy.workerRemoved(worker.id);
    else this.policies.delete(model);
  }

  /** Each model's policy and what it holds. */
  stats(): Array<{ model: string; policy: string } & PolicyStats> {
    return [...this.policies].map(([model, policy]) => ({ model, policy: policy.name, ...policy.stats() }));
  }

  private policy(model: string): RoutingPolicy {
    let policy = this.policies.get(model);
    if (!policy) {
      policy = this.options.create(this.options.policyOf(model));
      this.policies.set(model, policy);
    }
    return policy;
  }
}
