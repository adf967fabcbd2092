// GET /v1/models and /v1/models/:id: the models served by connected workers, in OpenAI's list shape.
import { Hono } from "hono";
import type { Master } from "../master/master.js";
import type { WorkerEntry } from "../master/registry.js";
import type { ModelInfo } from "../worker-protocol/index.js";
import { errorResponse } from "./errors.js";
import { ModelNotFoundError } from "../master/errors.js";

function modelObject(info: ModelInfo, workers: readonly WorkerEntry[], capabilities: readonly string[] | undefined) {
  return {
    id: info.id,
    object: "model",
    created: Math.floor(Math.min(...workers.map((w) => w.connectedAt)) / 1000),
    owned_by: info.ownedBy ?? (workers.every((w) => w.engine === "simulator") ? "coordinator-simulator" : "coordinator"),
    context_length: info.contextLength,
    /** What every worker serving the model can do (see docs/api.md); a request needing more is refused. */
    capabilities: capabilities ?? [],
    workers: workers.map((w) => ({ id: w.id, name: w.name, engine: w.engine })),
  };
}

/** A model no worker serves now but some worker can load (GET /v1/models?loadable=true). */
function loadableObject(master: Master, entry: ReturnType<Master["placer"]["loadable"]>[number]) {
  return {
    id: entry.info.id,
    object: "model",
    created: 0,
    owned_by: "coordinator",
    context_length: entry.info.contextLength,
    capabilities: master.capabilitiesOf(entry.info.id) ?? [],
    loaded: false,
    /** Where it could be loaded, and what it would take. */
    loadable_on: entry.offers.map((o) => ({ worker: { id: o.workerId, name: o.workerName }, memory_bytes: o.memoryBytes, size_bytes: o.sizeBytes })),
  };
}

export function modelsRoutes(master: Master): Hono {
  const app = new Hono();
  app.get("/", (c) => {
    const served = master.servedModels().map(({ info, workers }) => ({ ...modelObject(info, workers, master.capabilitiesOf(info.id)), loaded: true }));
    const loadable = c.req.query("loadable") === "true" ? master.placer.loadable().map((entry) => loadableObject(master, entry)) : [];
    return c.json({ object: "list", data: [...served, ...loadable] });
  });
  app.get("/:id{.+}", (c) => {
    const id = c.req.param("id");
    const served = master.servedModels().find(({ info }) => info.id === id);
    if (!served) return errorResponse(new ModelNotFoundError(id));
    return c.json(modelObject(served.info, served.workers, master.capabilitiesOf(id)));
  });
  return app;
}
