// The oracle routing policy, for benchmarks only: it looks into every simulator worker's prompt cache (which a real
// master cannot) and sends a task to the worker holding the longest prefix of its conversation.
import type { Candidates, Decision, PolicyStats, RoutableWorker, RoutedTask, RoutingPolicy } from "../src/master/routing/index.js";
import { Task } from "../src/master/task.js";
import type { SimulatorEngine } from "../src/worker/engines/simulator.js";

export class OraclePolicy implements RoutingPolicy {
  readonly name = "oracle";

  /** `engines`: each worker's engine, by the id the master gave the worker (filled in as workers join). */
  constructor(private readonly engines: ReadonlyMap<string, SimulatorEngine>) {}

  /**
   * Among the workers with a free slot, the one whose cache holds the longest prefix of the task's messages (ties:
   * the least loaded); the least-loaded worker when none holds any.
   */
  pick<W extends RoutableWorker>(task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined {
    const least = candidates.leastLoaded();
    if (least === undefined) return undefined;
    // The master hands policies its own tasks; the oracle needs their messages, which RoutedTask does not carry.
    if (!(task instanceof Task)) throw new Error("the oracle policy runs inside a Master only");
    let best: { worker: W; cached: number } | undefined;
    for (const worker of candidates.all()) {
      if (!worker.hasCapacity) continue;
      const cached = this.engines.get(worker.id)?.cachedPrefix(task.model, task.request.messages) ?? 0;
      if (cached > 0 && (best === undefined || cached > best.cached || (cached === best.cached && worker.load < best.worker.load))) {
        best = { worker, cached };
      }
    }
    return best ? { worker: best.worker, reason: "cache_hit" } : { worker: least, reason: "cache_miss" };
  }

  assigned(): void {}
  released(): void {}
  workerRemoved(): void {}

  stats(): PolicyStats {
    return { entries: 0, bytes: 0 };
  }
}
