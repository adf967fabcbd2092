// The master's state: the workers and the models each serves, the live tasks and the queues, the routing policies'
// indexes, and what is loaded where. Changed only by `apply` (apply.ts); read by the master, the API and hearers.
import { PlacementState } from "../placement/state.js";
import { WorkerRegistry } from "../registry.js";
import type { Router } from "../routing/router.js";
import { ModelQueues } from "../scheduler.js";
import type { Task } from "../task.js";

export class ClusterState {
  readonly workers = new WorkerRegistry();
  /** Tasks not yet in a terminal state. */
  readonly tasks = new Map<string, Task>();
  readonly queues: ModelQueues;
  readonly placement = new PlacementState();

  constructor(
    queueMaxLength: number,
    /** Each model's routing policy, told of assignments, releases and workers leaving (its index of who holds what). */
    readonly router: Router,
    /** Flow control: a task's worker is granted consumed bytes back once this many are due. */
    readonly grantBatchBytes: number,
  ) {
    this.queues = new ModelQueues(queueMaxLength);
  }
}
