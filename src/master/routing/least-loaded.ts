// The least-loaded policy: the worker with the lowest load that has a free slot, whatever the task.
import type { Candidates, Decision, PolicyStats, RoutableWorker, RoutedTask, RoutingPolicy } from "./policy.js";

export class LeastLoadedPolicy implements RoutingPolicy {
  readonly name = "least-loaded";

  pick<W extends RoutableWorker>(_task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined {
    const worker = candidates.leastLoaded();
    return worker && { worker, reason: "least_loaded" };
  }

  assigned(): void {}
  released(): void {}
  workerRemoved(): void {}

  stats(): PolicyStats {
    return { entries: 0, bytes: 0 };
  }
}
