// Explicit placement, an admin action: where a model could go (previews), placing it (pinned instances), listing and
// ending placements. The master's placer decides and applies; this file only parses and shapes.
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Master } from "../master/master.js";
import type { LoadOption } from "../master/placement/planner.js";
import type { PlacementView } from "../master/placement/placer.js";
import { errorResponse, InvalidRequestError } from "./errors.js";
import { readJson } from "./task-route.js";

const PlacementBody = z.strictObject({
  model: z.string().min(1).max(256),
  worker: z.string().min(1).max(128).optional(),
  replicas: z.number().int().min(1).max(64).default(1),
  context_length: z.number().int().min(16).max(16_777_216).optional(),
  concurrency: z.number().int().min(1).max(4096).optional(),
});

function previewObject(option: LoadOption) {
  return {
    worker: { id: option.workerId, name: option.workerName },
    fits: option.fits,
    memory_needed_bytes: option.memoryBytes,
    memory_free_bytes: option.freeBytes,
    would_unload: option.evict,
    running_tasks: option.busy,
  };
}

function placementObject(view: PlacementView) {
  return {
    id: view.id,
    object: "placement",
    model: view.model,
    replicas: view.replicas,
    worker: view.worker ?? null,
    context_length: view.contextLength ?? null,
    concurrency: view.concurrency ?? null,
    created: Math.floor(view.createdAt / 1000),
    instances: view.instances.map((i) => ({ worker: { id: i.workerId, name: i.workerName }, state: i.state, progress: i.progress })),
  };
}

/** A schema's first complaint as a 400 naming the field (an unknown field as unsupported_parameter). */
function invalid(issue: z.core.$ZodIssue | undefined): InvalidRequestError {
  const param = issue?.path.join(".") || null;
  const unknown = issue?.code === "unrecognized_keys" ? issue.keys.join(", ") : undefined;
  return new InvalidRequestError(
    unknown ? `Unrecognized request argument(s): ${unknown}.` : `Invalid request: ${param ?? "body"}: ${issue?.message ?? "invalid"}.`,
    unknown ?? param,
    unknown ? "unsupported_parameter" : "invalid_value",
  );
}

async function parsePlacement(c: Context) {
  const parsed = PlacementBody.safeParse(await readJson(c));
  if (parsed.success) return parsed.data;
  throw invalid(parsed.error.issues[0]);
}

const UnloadBody = z.strictObject({ model: z.string().min(1).max(256), worker: z.string().min(1).max(128) });

/** POST /v1/models/unload (admin): unloads an idle model that no placement pins from one worker. */
export function unloadHandler(master: Master) {
  return async (c: Context) => {
    try {
      const parsed = UnloadBody.safeParse(await readJson(c));
      if (!parsed.success) throw invalid(parsed.error.issues[0]);
      master.placer.unload(parsed.data.model, parsed.data.worker);
      return c.json({ model: parsed.data.model, worker: parsed.data.worker, state: "unloading" });
    } catch (error) {
      return errorResponse(error);
    }
  };
}

export function placementRoutes(master: Master): Hono {
  const app = new Hono();
  app.get("/previews", (c) => {
    const model = c.req.query("model");
    if (!model) return errorResponse(new InvalidRequestError("Say which model to preview: ?model=NAME.", "model", "missing_required_parameter"));
    return c.json({ object: "list", model, data: master.placer.previews(model).map(previewObject) });
  });
  app.get("/", (c) => c.json({ object: "list", data: master.placer.placements().map(placementObject) }));
  app.post("/", async (c) => {
    try {
      const body = await parsePlacement(c);
      const view = master.placer.place({
        model: body.model,
        replicas: body.replicas,
        ...(body.worker !== undefined && { worker: body.worker }),
        ...(body.context_length !== undefined && { contextLength: body.context_length }),
        ...(body.concurrency !== undefined && { concurrency: body.concurrency }),
      });
      return c.json(placementObject(view), 201);
    } catch (error) {
      return errorResponse(error);
    }
  });
  app.delete("/:id", (c) => {
    try {
      return c.json({ ...placementObject(master.placer.unplace(c.req.param("id"))), deleted: true });
    } catch (error) {
      return errorResponse(error);
    }
  });
  return app;
}
