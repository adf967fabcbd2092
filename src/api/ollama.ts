// Ollama's API on the main port (so OLLAMA_HOST=http://head:52415 works): /api/chat and /api/generate as dialects of
// the task route (NDJSON streams), /api/embed and /api/embeddings on the embedding route, and the model listings
// clients probe (/api/tags, /api/show, /api/ps, /api/version).
import { type Context, Hono } from "hono";
import { ModelNotFoundError } from "../master/errors.js";
import type { Master } from "../master/master.js";
import type { WorkerEntry } from "../master/registry.js";
import { CAPABILITIES, type ModelInfo } from "../worker-protocol/index.js";
import { embeddingRoute } from "./embedding-route.js";
import { InvalidRequestError } from "./errors.js";
import { ollamaEmbeddingsDialect, ollamaEmbedDialect } from "./ollama-embed.js";
import { keepaliveLine, ollamaStream, ollamaWhole } from "./ollama-response.js";
import { ollamaReasoningMode, type OllamaRequest, parseOllamaChat, parseOllamaGenerate, toOllamaTask } from "./ollama-request.js";
import { ollamaErrorResponse } from "./route-errors.js";
import { keepAliveMs } from "./keep-alive.js";
import { ollamaPreload } from "./ollama-preload.js";
import { type Dialect, readJson, taskRoute, type TaskRouteOptions } from "./task-route.js";

/** The Ollama version this API follows, reported by /api/version (clients check it for features). */
export const OLLAMA_API_VERSION = "0.12.0";

/** A request cannot have more context than the worker loaded the model with. */
function checkContext(request: OllamaRequest, model: ModelInfo | undefined): void {
  const asked = request.body.options?.num_ctx;
  if (model === undefined || asked === undefined || asked <= model.contextLength) return;
  throw new InvalidRequestError(
    `options.num_ctx: ${asked} is more than the context '${model.id}' was loaded with (${model.contextLength} tokens); the worker decides the context here.`,
    "options.num_ctx",
  );
}

function dialect(parse: (json: unknown, limits: TaskRouteOptions["limits"]) => OllamaRequest): Dialect<OllamaRequest> {
  const reply = (request: OllamaRequest) => ({ kind: request.kind, model: request.body.model });
  return {
    parse,
    model: (request) => request.body.model,
    // Ollama streams unless told not to.
    streams: (request) => request.body.stream !== false,
    check: checkContext,
    paramNames: { response_format: "format", messages: "messages", top_k: "options.top_k", min_p: "options.min_p" },
    toTask: toOllamaTask,
    reasoningMode: ollamaReasoningMode,
    errorResponse: ollamaErrorResponse,
    keepAliveMs: (request) => keepAliveMs(request.body.keep_alive),
    keepaliveFrame: (request) => keepaliveLine(reply(request)),
    streamContentType: "application/x-ndjson",
    streamEncoder: (request) => ollamaStream(reply(request)),
    wholeReply: (request) => ollamaWhole(reply(request)),
  };
}

export const ollamaChatDialect = dialect(parseOllamaChat);
export const ollamaGenerateDialect = dialect(parseOllamaGenerate);

/** Ollama's `details` of a model: what the coordinator knows of it (workers do not report families or sizes). */
function details(info: ModelInfo) {
  return { parent_model: "", format: "gguf", family: info.format ?? "", families: null, parameter_size: "", quantization_level: "" };
}

function tagOf(info: ModelInfo, workers: readonly WorkerEntry[]) {
  return {
    name: info.id,
    model: info.id,
    modified_at: new Date(workers.length > 0 ? Math.min(...workers.map((w) => w.connectedAt)) : Date.now()).toISOString(),
    size: 0,
    digest: "",
    details: details(info),
  };
}

/** Ollama's capability names for what the model's workers announce. */
function ollamaCapabilities(capabilities: readonly string[]): string[] {
  const out: string[] = [];
  if (capabilities.includes(CAPABILITIES.chat)) out.push("completion");
  if (capabilities.includes(CAPABILITIES.embeddings)) out.push("embedding");
  if (capabilities.includes(CAPABILITIES.tools)) out.push("tools");
  if (capabilities.includes(CAPABILITIES.vision)) out.push("vision");
  return out;
}

export function ollamaRoutes(master: Master, options: TaskRouteOptions): Hono {
  const app = new Hono();
  const preload = ollamaPreload(master, master.options.queueTimeoutMs);
  app.post("/chat", preload, taskRoute(master, ollamaChatDialect, options));
  app.post("/generate", preload, taskRoute(master, ollamaGenerateDialect, options));
  app.post("/embed", embeddingRoute(master, ollamaEmbedDialect, options));
  app.post("/embeddings", embeddingRoute(master, ollamaEmbeddingsDialect, options));
  app.get("/version", (c) => c.json({ version: OLLAMA_API_VERSION }));
  // As Ollama lists every model it has (loaded or not): those served, then those a worker can load on demand.
  app.get("/tags", (c) =>
    c.json({
      models: [
        ...master.servedModels().map(({ info, workers }) => tagOf(info, workers)),
        ...master.placer.loadable().map(({ info, offers }) => ({ ...tagOf(info, []), size: offers[0]?.sizeBytes ?? 0 })),
      ],
    }),
  );
  app.get("/ps", (c) =>
    c.json({
      models: master.servedModels().map(({ info, workers }) => ({
        ...tagOf(info, workers),
        // Loaded on its workers for as long as they serve it.
        expires_at: "0001-01-01T00:00:00Z",
        size_vram: 0,
        context_length: info.contextLength,
      })),
    }),
  );
  app.post("/show", async (c: Context) => {
    try {
      const body = (await readJson(c)) as { model?: unknown; name?: unknown } | null;
      const id = typeof body?.model === "string" ? body.model : typeof body?.name === "string" ? body.name : undefined;
      if (id === undefined) throw new InvalidRequestError("model is required", "model");
      const served = master.servedModels().find(({ info }) => info.id === id);
      const info = served?.info ?? master.modelInfo(id);
      if (!info) throw new ModelNotFoundError(id);
      return c.json({
        modelfile: "",
        parameters: "",
        template: "",
        details: details(info),
        model_info: { "general.architecture": info.format ?? "unknown", "general.context_length": info.contextLength },
        capabilities: ollamaCapabilities(master.capabilitiesOf(id) ?? []),
        modified_at: tagOf(info, served?.workers ?? []).modified_at,
      });
    } catch (error) {
      return ollamaErrorResponse(error);
    }
  });
  return app;
}

/**
 * GET / as Ollama answers it ("Ollama is running", what clients probe) unless a browser asks for HTML: then the
 * dashboard (the next handler).
 */
export function ollamaProbe() {
  return async (c: Context, next: () => Promise<void>) => {
    if ((c.req.header("accept") ?? "").includes("text/html")) return next();
    return c.text("Ollama is running");
  };
}
