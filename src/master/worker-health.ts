// Outlier ejection (a circuit breaker) for one worker: repeated stalls or engine failures take it out of rotation.
//
// As Envoy's outlier detection and SMG's circuit breaker do: `failureThreshold` consecutive failures (a success in
// between resets the count) eject the worker for `baseEjectionMs`, doubling with each ejection in a row up to
// `maxEjectionMs`. When that time is up the worker is on probation: it may run one task at a time; the first task
// it finishes puts it back in rotation, the first that fails or stalls ejects it again for longer. An ejection
// another head shared (docs/scaling.md §7) takes the worker out of rotation here too; probation stays per head.

export type HealthState = "healthy" | "ejected" | "probation";

export interface HealthPolicy {
  failureThreshold: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
}

export const defaultHealthPolicy: HealthPolicy = {
  failureThreshold: 3,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
};

export class WorkerHealth {
  state: HealthState = "healthy";
  /** Failures since the last success. */
  consecutiveFailures = 0;
  /** Ejections in a row (reset by a successful probe); sets how long the next one lasts. */
  ejections = 0;
  /** While ejected: when probation begins. */
  ejectedUntil = 0;

  constructor(private readonly policy: HealthPolicy = defaultHealthPolicy) {}

  /** A task on this worker failed or stalled. Returns true when the worker's state changed. */
  failure(now: number): boolean {
    this.consecutiveFailures += 1;
    if (this.state === "ejected") return false;
    if (this.state === "probation" || this.consecutiveFailures >= this.policy.failureThreshold) {
      this.eject(now);
      return true;
    }
    return false;
  }

  /** A task on this worker finished. Returns true when the worker's state changed. */
  success(): boolean {
    this.consecutiveFailures = 0;
    if (this.state !== "probation") return false;
    this.state = "healthy";
    this.ejections = 0;
    return true;
  }

  /** Moves an ejected worker to probation once its time is up. Returns true when the state changed. */
  tick(now: number): boolean {
    if (this.state !== "ejected" || now < this.ejectedUntil) return false;
    this.state = "probation";
    this.consecutiveFailures = 0;
    return true;
  }

  /**
   * Another head ejected the worker until `until`: out of rotation here too, unless already ejected until then or
   * later. Returns true when the state or the ejection's end changed.
   */
  shared(until: number, ejections: number): boolean {
    if (this.state === "ejected" && this.ejectedUntil >= until) return false;
    this.state = "ejected";
    this.ejectedUntil = until;
    this.ejections = Math.max(this.ejections, ejections);
    return true;
  }

  /** How many tasks the worker may hold at once in this state, given what it announced. */
  capacity(maxConcurrency: number): number {
    if (this.state === "healthy") return maxConcurrency;
    return this.state === "probation" ? 1 : 0;
  }

  private eject(now: number): void {
    this.ejections += 1;
    const duration = Math.min(this.policy.maxEjectionMs, this.policy.baseEjectionMs * 2 ** (this.ejections - 1));
    this.state = "ejected";
    this.ejectedUntil = now + duration;
  }
}
