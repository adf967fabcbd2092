// GET /metrics: Prometheus text exposition of the coordinator's metrics and the process's.
import type { Context } from "hono";
import type { CoordinatorMetrics } from "../metrics/metrics.js";

export function metricsHandler(metrics: CoordinatorMetrics) {
  return async (c: Context): Promise<Response> =>
    c.body(await metrics.text(), 200, { "Content-Type": metrics.contentType, "Cache-Control": "no-store" });
}
