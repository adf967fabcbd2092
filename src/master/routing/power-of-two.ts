// The power-of-two-choices policy: of two workers drawn at random among those with a free slot, the less loaded.
// Nearly as even as least-loaded, without every master sending its next task to the same "best" worker at once.
import { Membership } from "./membership.js";
import type { Candidates, Decision, PolicyStats, RoutableWorker, RoutedTask, RoutingPolicy } from "./policy.js";

/** Draws before giving up on finding two workers with a free slot (then: the least-loaded one). */
const DRAWS = 8;

export interface PowerOfTwoOptions {
  /** A uniform number in [0, 1); Math.random by default (tests pass a seeded one). */
  random?: () => number;
}

export class PowerOfTwoPolicy implements RoutingPolicy {
  readonly name = "power-of-two";
  private readonly members = new Membership();
  private readonly random: () => number;

  constructor(options: PowerOfTwoOptions = {}) {
    this.random = options.random ?? Math.random;
  }

  pick<W extends RoutableWorker>(_task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined {
    this.members.sync(candidates);
    const ids = this.members.ids;
    let first: W | undefined;
    let second: W | undefined;
    for (let draw = 0; draw < DRAWS && second === undefined && ids.length > 0; draw++) {
      const worker = candidates.get(ids[Math.floor(this.random() * ids.length)] as string);
      if (worker === undefined) {
        // It left without a workerRemoved: look again next time.
        this.members.markStale();
      } else if (worker.hasCapacity && worker !== first) {
        if (first === undefined) first = worker;
        else second = worker;
      }
    }
    if (first === undefined) {
      const worker = candidates.leastLoaded();
      return worker && { worker, reason: "least_loaded" };
    }
    return { worker: second !== undefined && second.load < first.load ? second : first, reason: "power_of_two" };
  }

  assigned(): void {}
  released(): void {}

  workerRemoved(workerId: string): void {
    this.members.remove(workerId);
  }

  stats(): PolicyStats {
    return { entries: 0, bytes: 0 };
  }
}
