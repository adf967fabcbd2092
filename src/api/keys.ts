// Keys added and revoked at run time, an admin action: POST /v1/keys shows a new key once, GET lists them (never the
// key), DELETE /v1/keys/{id} revokes one on every head. The key ring keeps them and holds the rules; this file only
// parses and shapes.
import { type Context, Hono } from "hono";
import { z } from "zod";
import { validated } from "./chat-request.js";
import { errorResponse, InvalidRequestError } from "./errors.js";
import { KeyKind, type KeyRing, MAX_LABEL_LENGTH, type RuntimeKey } from "./key-ring.js";
import { readJson } from "./task-route.js";

const KeyBody = z.strictObject({
  kind: KeyKind,
  label: z.string().max(MAX_LABEL_LENGTH).optional(),
});

function keyObject(record: RuntimeKey) {
  return {
    object: "api_key",
    id: record.id,
    kind: record.kind,
    label: record.label,
    created_at: Math.floor(record.createdAt / 1000),
  };
}

export function keyRoutes(keys: KeyRing): Hono {
  const app = new Hono();
  app.get("/", (c) => c.json({ object: "list", data: keys.list().map(keyObject), configured: keys.configured }));
  app.post("/", async (c: Context) => {
    try {
      const body = validated(KeyBody, await readJson(c));
      const { key, record } = await keys.add(body.kind, body.label ?? null);
      return c.json({ ...keyObject(record), key }, 201);
    } catch (error) {
      return errorResponse(error);
    }
  });
  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    try {
      const revoked = await keys.revoke(id);
      if (!revoked) throw new InvalidRequestError(`No key added at run time has the id '${id.slice(0, 100)}'.`, "id", "key_not_found", 404);
      return c.json({ object: "api_key", id: revoked.id, deleted: true });
    } catch (error) {
      return errorResponse(error);
    }
  });
  return app;
}
