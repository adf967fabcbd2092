// Embedding tasks on an OpenAI-compatible upstream: one POST /embeddings per task, its answer checked, normalised and
// put in input order. A recording upstream (real HTTP), the real engine, and a real worker runtime against a bare master.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../src/log.js";
import { type EmbeddingRequest, EngineRequestError } from "../src/worker/engines/engine.js";
import { OpenAIUpstreamEngine } from "../src/worker/engines/openai-upstream.js";
import { apportionTokens } from "../src/worker/engines/openai-upstream/embeddings.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { decodeEmbedding, type EmbedSpec, normalizeEmbedding, type TaskEmbedding, type TaskFinished } from "../src/worker-protocol/index.js";
import { eventually } from "./support/cluster.js";
import { startBareMaster } from "./support/bare-master.js";
import {
  EMBEDDING_LENGTH,
  embeddingList,
  embeddingOf,
  type RecordingUpstream,
  sendJson,
  startRecordingUpstream,
  tokensOf,
} from "./support/recording-upstream.js";

let upstream: RecordingUpstream;

beforeAll(async () => {
  upstream = await startRecordingUpstream(["embedder", "chatter"]);
});

afterAll(async () => {
  await upstream.close();
});

const engine = (options: { embeddingModels?: string[]; visionModels?: string[]; models?: string[] } = {}) =>
  new OpenAIUpstreamEngine({ baseUrl: upstream.baseUrl, apiKey: "sk-upstream", models: options.models ?? [], maxConcurrency: 4, ...options });

function request(embed: EmbedSpec, model = "embedder"): EmbeddingRequest {
  return { taskId: "t1", model, embed };
}

/** Runs one embedding task and records what the sink got. */
async function embed(req: EmbeddingRequest, signal = new AbortController().signal) {
  const vectors: Array<{ values: number[]; tokens: number }> = [];
  const sink = { vector: (values: Float32Array | readonly number[], tokens: number) => vectors.push({ values: [...values], tokens }), progress() {} };
  const result = await engine().embed(req, sink, signal);
  return { vectors, result, sent: upstream.requests.at(-1) };
}

const expectNear = (actual: readonly number[], expected: readonly number[]) => {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((value, i) => expect(value).toBeCloseTo(expected[i] ?? Number.NaN, 6));
};

describe("an embedding task on the upstream engine", () => {
  it("sends the whole batch in one POST /embeddings: texts and token arrays as given, floats asked for, the api key", async () => {
    const inputs = ["The quick brown fox", [15339, 1917], "jumps"];

    const { sent } = await embed(request({ inputs }));

    expect(upstream.paths.at(-1)).toBe("/v1/embeddings");
    expect(upstream.headers.at(-1)?.authorization).toBe("Bearer sk-upstream");
    expect(sent).toEqual({ model: "embedder", input: inputs, encoding_format: "float" });
  });

  it("asks for the dimensions when the task sets them, and never forwards truncate", async () => {
    const { sent, vectors } = await embed(request({ inputs: ["short"], dimensions: 4, truncate: true }));

    expect(sent).toEqual({ model: "embedder", input: ["short"], encoding_format: "float", dimensions: 4 });
    expect(vectors[0]?.values).toHaveLength(4);
  });

  it("gives each input's vector normalised, in input order, with its share of the upstream's prompt tokens", async () => {
    const inputs: EmbedSpec["inputs"] = ["alpha", [1, 2, 3], "a much longer text than the others"];
    const total = inputs.reduce((sum, input) => sum + tokensOf(input), 0);

    const { vectors, result } = await embed(request({ inputs }));

    expect(vectors).toHaveLength(3);
    inputs.forEach((input, i) => expectNear(vectors[i]?.values ?? [], [...normalizeEmbedding(embeddingOf(input))]));
    for (const { values } of vectors) expect(Math.hypot(...values)).toBeCloseTo(1, 6);
    expect(result).toEqual({ promptTokens: total });
    expect(vectors.reduce((sum, vector) => sum + vector.tokens, 0)).toBe(total);
  });

  it("puts the vectors in index order when the upstream answers them out of order", async () => {
    upstream.reply("shuffler", (res, body) => {
      const list = embeddingList(body);
      sendJson(res, 200, { ...list, data: [list.data[2], list.data[0], list.data[1]] });
    });
    const inputs = ["first", "second", "third"];

    const { vectors } = await embed(request({ inputs }, "shuffler"));

    inputs.forEach((input, i) => expectNear(vectors[i]?.values ?? [], [...normalizeEmbedding(embeddingOf(input))]));
  });
});

describe("the upstream's failures on an embedding task", () => {
  it("gives an upstream 4xx back as the client's error, with the upstream's message, and a 5xx as the worker's", async () => {
    upstream.reply("refuses", (res) => sendJson(res, 400, { error: { message: "this model does not support embeddings", type: "invalid_request_error" } }));
    upstream.reply("too-long", (res) => sendJson(res, 400, { error: { message: "input is too long", code: "context_length_exceeded" } }));
    upstream.reply("broken", (res) => sendJson(res, 500, { error: { message: "CUDA out of memory" } }));

    const refused = embed(request({ inputs: ["hi"] }, "refuses"));
    await expect(refused).rejects.toBeInstanceOf(EngineRequestError);
    await expect(refused).rejects.toMatchObject({ code: "invalid_request", message: "the upstream answered 400: this model does not support embeddings" });
    await expect(embed(request({ inputs: ["hi"] }, "too-long"))).rejects.toMatchObject({ code: "context_length_exceeded" });
    const broken = embed(request({ inputs: ["hi"] }, "broken"));
    await expect(broken).rejects.toThrow("the upstream answered 500: CUDA out of memory");
    await expect(broken).rejects.not.toBeInstanceOf(EngineRequestError);
  });

  it("fails as the worker's error on an answer that is not one vector per input of one length", async () => {
    const answers: Record<string, (body: Record<string, unknown>) => unknown> = {
      "not-json": () => "<html>Bad Gateway</html>",
      "no-data": () => ({ object: "list", usage: { prompt_tokens: 1 } }),
      "not-numbers": (body) => ({ ...embeddingList(body), data: [{ index: 0, embedding: ["a", "b"] }, { index: 1, embedding: [1, 2] }] }),
      "one-short": (body) => ({ ...embeddingList(body), data: embeddingList(body).data.slice(0, 1) }),
      "index-twice": (body) => ({ ...embeddingList(body), data: embeddingList(body).data.map((item) => ({ ...item, index: 0 })) }),
      "ragged": (body) => {
        const list = embeddingList(body);
        return { ...list, data: list.data.map((item, i) => ({ ...item, embedding: item.embedding.slice(i) })) };
      },
    };
    for (const [model, answer] of Object.entries(answers)) {
      upstream.reply(model, (res, body) => {
        const value = answer(body);
        if (typeof value === "string") res.writeHead(200, { "content-type": "text/html" }).end(value);
        else sendJson(res, 200, value);
      });
    }

    const messages = {
      "not-json": "not an OpenAI embedding list: <html>Bad Gateway</html>",
      "no-data": "not an OpenAI embedding list",
      "not-numbers": "not an OpenAI embedding list",
      "one-short": "the upstream returned 1 embeddings for 2 inputs",
      "index-twice": "not indexed 0 to 1",
      "ragged": `different lengths (${EMBEDDING_LENGTH} and ${EMBEDDING_LENGTH - 1} values)`,
    };
    for (const [model, message] of Object.entries(messages)) {
      const failed = embed(request({ inputs: ["one", "two"] }, model));
      await expect(failed, model).rejects.toThrow(message);
      await expect(failed, model).rejects.not.toBeInstanceOf(EngineRequestError);
    }
  });

  it("refuses as the client's error vectors of another length than the dimensions asked for (an upstream that ignores them)", async () => {
    upstream.reply("full-length", (res, body) => sendJson(res, 200, embeddingList({ ...body, dimensions: undefined })));

    const ignored = embed(request({ inputs: ["hi"], dimensions: 4 }, "full-length"));

    await expect(ignored).rejects.toBeInstanceOf(EngineRequestError);
    await expect(ignored).rejects.toThrow(`vectors of ${EMBEDDING_LENGTH} values, not the 4 dimensions asked for`);
  });

  it("stops reading an answer larger than its vectors can be, and lets the connection go", async () => {
    upstream.reply("flood", (res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write(`{"object":"list","data":[{"index":0,"embedding":[1,2]}],"padding":"`);
      const block = "x".repeat(64 * 1024);
      // Written until the engine hangs up (an upstream that never ends its answer).
      const more = () => {
        while (!res.destroyed && res.write(block));
        if (!res.destroyed) res.once("drain", more);
      };
      more();
    });

    await expect(embed(request({ inputs: ["hi"], dimensions: 2 }, "flood"))).rejects.toThrow(/the upstream's embeddings answer is larger than \d+ bytes/);
    await eventually(() => upstream.cutOff.some((body) => body.model === "flood"), "the upstream to see the connection close");
  });

  it("cancels the upstream request when the task is aborted", async () => {
    upstream.reply("slow", () => {}); // never answers
    const controller = new AbortController();

    const pending = embed(request({ inputs: ["wait for me"] }, "slow"), controller.signal);
    await eventually(() => upstream.requests.at(-1)?.model === "slow", "the upstream to receive the request");
    controller.abort();

    await expect(pending).rejects.toThrow();
    await eventually(() => upstream.cutOff.some((body) => body.model === "slow"), "the upstream to see the connection close");
  });
});

describe("the prompt tokens of a batch", () => {
  it("are split by the inputs' sizes and add up to the upstream's count", () => {
    expect(apportionTokens(10, [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10]])).toEqual([4, 6]);
    expect(apportionTokens(7, ["abcdefgh", [1, 2, 3, 4, 5]])).toEqual([2, 5]);
    expect(apportionTokens(5, ["same", "same", "same"])).toEqual([2, 2, 1]);
    expect(apportionTokens(3, ["", ""])).toEqual([2, 1]);
    expect(apportionTokens(0, ["anything", [1]])).toEqual([0, 0]);
    for (const total of [0, 1, 17, 1000]) {
      const shares = apportionTokens(total, ["a", "bb bb", [1, 2, 3], "", "a longer text of several words"]);
      expect(shares.reduce((a, b) => a + b, 0)).toBe(total);
    }
  });
});

describe("the upstream engine's embedding capabilities", () => {
  it("announces embeddings, besides chat, only for the models named with --upstream-embeddings", async () => {
    const capabilities = async (options: Parameters<typeof engine>[0]) =>
      Object.fromEntries((await engine(options).start()).models.map((model) => [model.id, model.capabilities ?? []]));

    const none = await capabilities({});
    const named = await capabilities({ embeddingModels: ["embedder"], visionModels: ["*"] });
    const all = await capabilities({ embeddingModels: ["*"] });

    for (const model of ["embedder", "chatter"]) {
      expect(none[model]).toContain("chat");
      expect(none[model]).not.toContain("embeddings");
      expect(none[model]).not.toContain("embedding_dimensions");
    }
    expect(named.embedder).toEqual(expect.arrayContaining(["chat", "tools", "vision", "embeddings", "embedding_dimensions"]));
    expect(named.chatter).toContain("vision");
    expect(named.chatter).not.toContain("embeddings");
    expect(all.embedder).toEqual(expect.arrayContaining(["chat", "embeddings", "embedding_dimensions"]));
    expect(all.chatter).toEqual(expect.arrayContaining(["chat", "embeddings", "embedding_dimensions"]));
  });
});

describe("an embedding task through a worker", () => {
  it("sends one TaskEmbedding per input, in order, with the upstream's vectors normalised, then TaskFinished with the tokens", async () => {
    const inputs: EmbedSpec["inputs"] = ["hello", [7, 8, 9, 10], "world wide"];
    const master = await startBareMaster({ taskId: "t1", model: "embedder", messages: [], params: {}, embed: { inputs } });
    const workerEngine = engine({ embeddingModels: ["embedder"] });
    const runtime = new WorkerRuntime(workerEngine, await workerEngine.start(), {
      join: master.url,
      token: "t",
      name: "embedder",
      maxConcurrency: 1,
      reconnect: false,
      log: silentLogger,
    });
    try {
      await runtime.start();
      await eventually(master.finished, "TaskFinished");

      const embeddings = master.received.filter((m): m is TaskEmbedding => m.type === "TaskEmbedding");
      expect(embeddings.map((m) => m.index)).toEqual([0, 1, 2]);
      inputs.forEach((input, i) => expectNear([...(decodeEmbedding(embeddings[i]?.embedding ?? "") ?? [])], [...normalizeEmbedding(embeddingOf(input))]));
      const total = inputs.reduce((sum, input) => sum + tokensOf(input), 0);
      expect(embeddings.reduce((sum, m) => sum + m.tokens, 0)).toBe(total);
      const finished = master.received.find((m): m is TaskFinished => m.type === "TaskFinished");
      expect(finished?.usage).toEqual({ promptTokens: total, completionTokens: 0 });
    } finally {
      await runtime.stop();
      await master.close();
    }
  });
});
