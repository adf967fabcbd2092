// GET /v1/cluster: the live state of workers, tasks and queues as JSON (the dashboard reads it), and the heads.
import { Hono } from "hono";
import type { Heads } from "../heads/heads.js";
import type { Master } from "../master/master.js";

export function clusterRoutes(master: Master, heads: Heads): Hono {
  const app = new Hono();
  app.get("/", (c) => c.json({ ...master.snapshot(), heads: heads.list() }));
  return app;
}
