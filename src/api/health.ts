// GET /health (the process answers) and GET /ready (it can serve: accepting, with at least one worker).
import { Hono } from "hono";
import type { Master } from "../master/master.js";

export function healthRoutes(master: Master): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const workers = master.workerCount;
    const ready = master.isAccepting() && workers > 0;
    return c.json({ status: ready ? "ready" : "not_ready", workers }, ready ? 200 : 503);
  });
  return app;
}
