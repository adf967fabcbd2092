// GET /health (the process answers) and GET /ready (it can serve: accepting, with at least one worker, knowing which
// keys exist; and whether NATS, when configured, is there).
import { Hono } from "hono";
import type { Heads } from "../heads/heads.js";
import type { Master } from "../master/master.js";
import type { KeyRing } from "./key-ring.js";

export function healthRoutes(master: Master, heads: Heads, keys: KeyRing): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const workers = master.workerCount;
    // A head that has not read the shared keys yet answers guarded routes with 503: not ready either.
    const keysRead = keys.ready;
    const ready = master.isAccepting() && workers > 0 && keysRead;
    const nats = heads.nats;
    // Without NATS a head serves on with what it knows (docs/scaling.md §9): degraded, still ready.
    const degraded = nats === "disconnected";
    const body = { status: ready ? "ready" : "not_ready", workers, nats, ...(!keysRead && { keys: "unavailable" }), ...(degraded && { degraded }) };
    return c.json(body, ready ? 200 : 503);
  });
  return app;
}
