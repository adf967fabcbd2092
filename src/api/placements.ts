// Explicit placement, an admin action: where a model could go (previews), placing it (pinned instances), listing and
// ending placements. The master's placer decides and applies; this file only parses and shapes.
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Master } from "../master/master.js";
import type { LoadOption } from "../master/placement/planner.js";
import type { PlacementView } from "../master/placement/placer.js";
import type { Pull } from "../master/placement/state.js";
import { validated } from "./chat-request.js";
import { PlannerUnavailableError } from "../master/errors.js";
import type { LeaderAsk, LeaderOp, LeaderReply } from "../heads/leader-channel.js";
import { errorResponse, InvalidRequestError, mapError } from "./errors.js";
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

/** A placement change (not demand, which only the master sends). */
export type PlacementChange = Exclude<LeaderOp, { op: "demand" | "unloadIdle" | "keepAlive" }>;

/**
 * Carries out a placement change on this head, which runs the planner: what the admin's route answers. Another head's
 * admin requests come here too, forwarded (src/heads/leader-channel.ts).
 */
export async function placementChange(master: Master, change: PlacementChange): Promise<LeaderReply> {
  try {
    switch (change.op) {
      case "place": {
        const body = validated(PlacementBody, change.body);
        const view = await master.placer.place({
          model: body.model,
          replicas: body.replicas,
          ...(body.worker !== undefined && { worker: body.worker }),
          ...(body.context_length !== undefined && { contextLength: body.context_length }),
          ...(body.concurrency !== undefined && { concurrency: body.concurrency }),
        });
        return { status: 201, body: placementObject(view) };
      }
      case "unplace":
        return { status: 200, body: { ...placementObject(await master.placer.unplace(change.id)), deleted: true } };
      case "unload": {
        const body = validated(UnloadBody, change.body);
        master.placer.unload(body.model, body.worker);
        return { status: 200, body: { model: body.model, worker: body.worker, state: "unloading" } };
      }
    }
  } catch (error) {
    const { status, body } = mapError(error);
    return { status, body };
  }
}

/** Decides a placement change here when this head plans, else asks the head that does (no leader: 503). */
async function decide(master: Master, leader: LeaderAsk | undefined, change: PlacementChange): Promise<Response> {
  let reply: LeaderReply;
  if (master.planning.leading) reply = await placementChange(master, change);
  else if (!leader) reply = mapError(new PlannerUnavailableError("This head does not run the placement planner."));
  else reply = await leader.ask(change).catch((error: unknown) => mapError(error));
  return Response.json(reply.body, { status: reply.status });
}

const PullBody = z.strictObject({
  url: z
    .string()
    .max(4096)
    .refine((url) => /^https?:\/\//i.test(url), "must be an http:// or https:// URL"),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits").optional(),
  file_name: z.string().min(1).max(200).optional(),
  workers: z.array(z.string().min(1).max(128)).min(1).max(256).optional(),
  headers: z.record(z.string().max(256), z.string().max(8192)).optional(),
});

function pullObject(pull: Pull) {
  return {
    id: pull.id,
    object: "model.pull",
    worker: { id: pull.workerId, name: pull.workerName },
    url: pull.url,
    file_name: pull.fileName ?? null,
    state: pull.state,
    received_bytes: pull.receivedBytes,
    total_bytes: pull.totalBytes ?? null,
    sha256: pull.sha256 ?? null,
    error: pull.error ? { message: pull.error.message, code: pull.error.code ?? null } : null,
    created: Math.floor(pull.startedAt / 1000),
  };
}

/** POST /v1/models/pull (admin): downloads a model file onto workers; 202 with one pull per worker. */
export function pullHandler(master: Master) {
  return async (c: Context) => {
    try {
      const { url, sha256, file_name, workers, headers } = validated(PullBody, await readJson(c));
      const pulls = master.placer.pull({
        url,
        ...(sha256 !== undefined && { sha256: sha256.toLowerCase() }),
        ...(file_name !== undefined && { fileName: file_name }),
        ...(workers !== undefined && { workers }),
        ...(headers !== undefined && { headers }),
      });
      return c.json({ object: "list", data: pulls.map(pullObject) }, 202);
    } catch (error) {
      return errorResponse(error);
    }
  };
}

/** GET /v1/models/pulls (admin): downloads under way and the last ones that ended. */
export function pullsHandler(master: Master) {
  return (c: Context) => c.json({ object: "list", data: master.placer.pulls().map(pullObject) });
}

const UnloadBody = z.strictObject({ model: z.string().min(1).max(256), worker: z.string().min(1).max(128) });

/** POST /v1/models/unload (admin): unloads an idle model that no placement pins from one worker. */
export function unloadHandler(master: Master, leader: LeaderAsk | undefined) {
  return async (c: Context) => {
    try {
      return await decide(master, leader, { op: "unload", body: await readJson(c) });
    } catch (error) {
      return errorResponse(error);
    }
  };
}

export function placementRoutes(master: Master, leader: LeaderAsk | undefined): Hono {
  const app = new Hono();
  app.get("/previews", (c) => {
    const model = c.req.query("model");
    if (!model) return errorResponse(new InvalidRequestError("Say which model to preview: ?model=NAME.", "model", "missing_required_parameter"));
    return c.json({ object: "list", model, data: master.placer.previews(model).map(previewObject) });
  });
  app.get("/", (c) => c.json({ object: "list", data: master.placer.placements().map(placementObject) }));
  app.post("/", async (c) => {
    try {
      return await decide(master, leader, { op: "place", body: await readJson(c) });
    } catch (error) {
      return errorResponse(error);
    }
  });
  app.delete("/:id", (c) => decide(master, leader, { op: "unplace", id: c.req.param("id") }));
  return app;
}
