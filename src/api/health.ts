// GET /health (the process answers) and GET /ready (it can serve: accepting, with at least one worker; and whether
// NATS, when configured, is there).
import { Hono } from "hono";
import type { Heads } from "../heads/heads.js";
import type { Master } from "../master/master.js";

export function healthRoutes(master: Master, heads: Heads): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const workers = master.workerCount;
    const ready = master.isAccepting() && workers > 0;
    const nats = heads.nats;
    // Without NATS a head serves on with what it knows (docs/scaling.md §9): degraded, still ready.
    const degraded = nats === "disconnected";
    return c.json({ status: ready ? "ready" : "not_ready", workers, nats, ...(degraded && { degraded }) }, ready ? 200 : 503);
  });
  return app;
}
