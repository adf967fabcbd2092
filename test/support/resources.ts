// Tracking the timers, sockets and servers (and other async resources) made during a test, to check none is left.
import { createHook } from "node:async_hooks";

const DEFAULT_TYPES = ["Timeout", "TCPWRAP", "TCPSERVERWRAP", "TCPCONNECTWRAP", "HTTPINCOMINGMESSAGE"];

export interface TrackedResources {
  /** The tracked resources alive now, by async id. */
  live: Map<number, string>;
  /** Their types, sorted and joined: "" when none is left. */
  summary(): string;
  stop(): void;
}

/** Records every resource of `types` created while enabled, and forgets each one when it is destroyed. */
export function trackResources(types: readonly string[] = DEFAULT_TYPES): TrackedResources {
  const tracked = new Set(types);
  const live = new Map<number, string>();
  const hook = createHook({
    init(asyncId, type) {
      if (tracked.has(type)) live.set(asyncId, type);
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  return {
    live,
    summary: () => [...live.values()].sort().join(", "),
    stop: () => hook.disable(),
  };
}

/**
 * Waits for the tracked resources (those `which` picks) to be destroyed, polling on immediates (untracked) so the
 * wait adds no timer of its own.
 */
export async function settled(resources: TrackedResources, which: (type: string) => boolean = () => true): Promise<void> {
  const deadline = Date.now() + 5_000;
  const waiting = () => [...resources.live.values()].some(which);
  while (waiting() && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
}
