// The routing policies by name: one instance per model, made by createPolicy.
import { type CacheAwareOptions, CacheAwarePolicy } from "./cache-aware.js";
import { LeastLoadedPolicy } from "./least-loaded.js";
import type { PolicyName, RoutingPolicy } from "./policy.js";
import { type PowerOfTwoOptions, PowerOfTwoPolicy } from "./power-of-two.js";
import { type SessionOptions, SessionPolicy } from "./session.js";

export type { CacheAwareOptions, RemoteCacheHints } from "./cache-aware.js";
export type { PowerOfTwoOptions } from "./power-of-two.js";
export type { SessionOptions } from "./session.js";
export * from "./policy.js";

/** Options of every policy, each read only by its own. */
export interface PolicyOptions {
  powerOfTwo?: PowerOfTwoOptions;
  session?: SessionOptions;
  cacheAware?: CacheAwareOptions;
}

/** A new policy (with state of its own: make one per model). */
export function createPolicy(name: PolicyName, options: PolicyOptions = {}): RoutingPolicy {
  switch (name) {
    case "least-loaded":
      return new LeastLoadedPolicy();
    case "power-of-two":
      return new PowerOfTwoPolicy(options.powerOfTwo);
    case "session":
      return new SessionPolicy(options.session);
    case "cache-aware":
      return new CacheAwarePolicy(options.cacheAware);
  }
}
