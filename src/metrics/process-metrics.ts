// The process's own metrics (CPU, memory, event loop lag, GC, handles): one set per process, however many
// coordinators it runs, because collecting them installs process-wide observers that have no off switch.
import { collectDefaultMetrics, Registry } from "prom-client";

let registry: Registry | undefined;

export function processRegistry(): Registry {
  if (!registry) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
  }
  return registry;
}
