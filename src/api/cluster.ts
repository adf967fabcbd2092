// GET /v1/cluster: the live state of workers, tasks and queues as JSON (the dashboard reads it).
import { Hono } from "hono";
import type { Master } from "../master/master.js";

export function clusterRoutes(master: Master): Hono {
  const app = new Hono();
  app.get("/", (c) => c.json(master.snapshot()));
  return app;
}
