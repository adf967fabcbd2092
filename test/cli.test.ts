// The `coordinator` command as users run it: real child processes for the coordinator and for a worker.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import OpenAI from "openai";
import { makeTestModel } from "../scripts/make-test-model.js";
import { eventually } from "./support/cluster.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { completionChunk, startRecordingUpstream, streamChunks } from "./support/recording-upstream.js";

const messages = [{ role: "user" as const, content: "Are you there?" }];
const processes: CliProcess[] = [];

function start(args: string[], env: Record<string, string> = {}): CliProcess {
  const process = spawnCli(args, env);
  processes.push(process);
  return process;
}

function clientFor(apiUrl: string): OpenAI {
  return new OpenAI({ baseURL: apiUrl, apiKey: "unused", maxRetries: 0 });
}

describe("the coordinator command", () => {
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.kill()));
  });

  it("serves a completion at once with --demo, and exits 0 on SIGTERM", async () => {
    const coordinator = start(["--demo", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]);
    const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);

    const completion = await clientFor(api as string).chat.completions.create({ model: "simulator", messages });
    expect(completion.choices[0]?.message.content).toContain("simulated model");
    expect(coordinator.output()).toMatch(/coordinator worker --join ws:\/\/\S+ --token [0-9a-f]{32}/);

    coordinator.child.kill("SIGTERM");
    expect(await coordinator.exited).toEqual({ code: 0, signal: null });
  });

  it("takes worker processes that join with the printed command; a task whose worker is killed -9 in prefill moves on", async () => {
    const coordinator = start(["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"], {
      COORDINATOR_WORKER_TOKEN: "token-from-the-environment",
    });
    const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);
    const [, join, token] = await coordinator.waitFor(/--join (ws:\/\/\S+) --token (\S+)/);
    expect(token).toBe("token-from-the-environment");
    const joinArgs = ["worker", "--join", join as string, "--token", token as string];

    const worker = start([...joinArgs, "--name", "child", "--sim-prefill-ms", "0"]);
    await worker.waitFor(/joined the coordinator/);
    const client = clientFor(api as string);
    const completion = await client.chat.completions.create({ model: "simulator", messages });
    expect(completion.choices[0]?.finish_reason).toBe("stop");

    const slow = start([...joinArgs, "--name", "slow", "--model", "big-model", "--sim-prefill-ms", "60000"]);
    await slow.waitFor(/joined the coordinator/);
    const pending = client.chat.completions.create({ model: "big-model", messages });
    await eventually(async () => {
      const state = (await (await fetch(`${api}/cluster`)).json()) as { workers: Array<{ name: string; inflight: string[] }> };
      return state.workers.some((w) => w.name === "slow" && w.inflight.length === 1);
    }, "the slow worker to take the task");
    await slow.kill("SIGKILL");
    const rescuer = start([...joinArgs, "--name", "rescuer", "--model", "big-model", "--sim-prefill-ms", "0"]);
    await rescuer.waitFor(/joined the coordinator/);

    const rescued = await pending;
    expect(rescued.choices[0]?.message.content).toContain("simulated model");
    expect(rescued.choices[0]?.finish_reason).toBe("stop");
  });

  it("refuses a worker with the wrong token, and the worker exits non-zero", async () => {
    const coordinator = start(["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]);
    const [, join] = await coordinator.waitFor(/--join (ws:\/\/\S+)/);

    const worker = start(["worker", "--join", join as string, "--token", "not-the-token"]);

    expect((await worker.exited).code).toBe(1);
    expect(worker.output()).toContain("wrong or missing worker token");
  });

  it("announces embeddings for the models of a llama worker started with --embeddings", { timeout: 90_000 }, async () => {
    const modelsDir = await mkdtemp(join(tmpdir(), "coordinator-models-"));
    try {
      const model = await makeTestModel(join(modelsDir, "scripted.gguf"));
      const coordinator = start(["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]);
      const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);
      const [, joinUrl, token] = await coordinator.waitFor(/--join (ws:\/\/\S+) --token (\S+)/);

      const worker = start(["worker", "--join", joinUrl as string, "--token", token as string, "--engine", "llama", "--gpu", "cpu", "--model", model.path, "--embeddings"]);
      await worker.waitFor(/joined the coordinator/, 60_000); // loading llama.cpp takes ~10 s on a small box

      const models = (await (await fetch(`${api}/models`)).json()) as { data: Array<{ id: string; capabilities: string[] }> };
      expect(models.data.find((m) => m.id === "scripted")?.capabilities).toEqual(expect.arrayContaining(["chat", "tools", "embeddings"]));
    } finally {
      await rm(modelsDir, { recursive: true, force: true });
    }
  });

  it("prints help for each command, with every flag's environment variable", async () => {
    const serveHelp = start(["--help"]);
    const workerHelp = start(["worker", "--help"]);

    expect((await serveHelp.exited).code).toBe(0);
    expect((await workerHelp.exited).code).toBe(0);
    expect(serveHelp.output()).toContain("--keepalive-ms");
    expect(serveHelp.output()).toContain("COORDINATOR_KEEPALIVE_MS");
    expect(workerHelp.output()).toContain("--engine");
    expect(workerHelp.output()).toContain("simulator");
  });

  it("states in --help that the worker token and API keys need at least 8 characters", async () => {
    const serveHelp = start(["--help"]);

    expect((await serveHelp.exited).code).toBe(0);
    for (const flag of ["--worker-token ", "--api-key ", "--api-keys-file "]) {
      const line = serveHelp.output().split("\n").find((row) => row.trimStart().startsWith(flag));
      expect(line, flag).toContain("at least 8 characters");
    }
  });

  it("refuses to start with a worker token or API key under 8 characters, from a flag, the environment or the keys file", async () => {
    const keysDir = await mkdtemp(join(tmpdir(), "coordinator-keys-"));
    try {
      const keysFile = join(keysDir, "keys.txt");
      await writeFile(keysFile, "# clients\nlong-enough-key\n  seven77  \n");
      const listen = ["--host", "127.0.0.1", "--port", "0"];
      const tokenRule = "the worker token must have at least 8 characters";
      const keyRule = "an API key must have at least 8 characters";
      const attempts = [
        { cli: start([...listen, "--worker-token", "seven77"]), code: 2, says: `--worker-token: ${tokenRule}` },
        { cli: start(listen, { COORDINATOR_WORKER_TOKEN: "seven77" }), code: 2, says: `--worker-token: ${tokenRule}` },
        { cli: start([...listen, "--api-key", "long-enough-key", "--api-key", "seven77"]), code: 2, says: `--api-key: ${keyRule}` },
        { cli: start(listen, { COORDINATOR_API_KEY: "seven77" }), code: 2, says: `--api-key: ${keyRule}` },
        { cli: start([...listen, "--api-keys-file", keysFile]), code: 1, says: `--api-keys-file ${keysFile}, line 3: ${keyRule}` },
      ];

      for (const { cli, code, says } of attempts) {
        expect((await cli.exited).code, says).toBe(code);
        expect(cli.output(), says).toContain(says);
        expect(cli.output(), says).not.toContain("coordinator is up");
      }
    } finally {
      await rm(keysDir, { recursive: true, force: true });
    }
  });

  it("announces embeddings for the upstream models named with --upstream-embeddings or COORDINATOR_UPSTREAM_EMBEDDINGS", async () => {
    const upstream = await startRecordingUpstream(["flag-embed", "flag-chat", "env-embed-1", "env-embed-2", "env-chat"]);
    try {
      const coordinator = start(["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]);
      const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);
      const [, join, token] = await coordinator.waitFor(/--join (ws:\/\/\S+) --token (\S+)/);
      const worker = (name: string, models: string[], extra: string[], env: Record<string, string> = {}) =>
        start(["worker", "--join", join as string, "--token", token as string, "--name", name, "--engine", "openai", "--upstream", upstream.baseUrl, ...models.flatMap((m) => ["--model", m]), ...extra], env);

      const flagged = worker("flagged", ["flag-embed", "flag-chat"], ["--upstream-embeddings", "flag-embed", "--upstream-embeddings", "not-served"]);
      const fromEnv = worker("from-env", ["env-embed-1", "env-embed-2", "env-chat"], [], { COORDINATOR_UPSTREAM_EMBEDDINGS: "env-embed-1, env-embed-2" });
      await flagged.waitFor(/joined the coordinator/);
      await fromEnv.waitFor(/joined the coordinator/);

      const list = (await (await fetch(`${api}/models`)).json()) as { data: Array<{ id: string; capabilities: string[] }> };
      const embeds = Object.fromEntries(list.data.map((model) => [model.id, model.capabilities.includes("embeddings")]));
      expect(embeds).toEqual({ "flag-embed": true, "flag-chat": false, "env-embed-1": true, "env-embed-2": true, "env-chat": false });
      for (const model of list.data) expect(model.capabilities, model.id).toContain("chat");
    } finally {
      await upstream.close();
    }
  });

  it("offers the upstream's models to load on demand with --upstream-library or COORDINATOR_UPSTREAM_LIBRARY", async () => {
    const upstream = await startRecordingUpstream(["lib-a", "lib-b"]);
    upstream.reply("lib-a", (res) => streamChunks(res, [completionChunk({ content: "loaded on demand" })]));
    try {
      const coordinator = start(["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]);
      const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);
      const [, join, token] = await coordinator.waitFor(/--join (ws:\/\/\S+) --token (\S+)/);
      const worker = (name: string, extra: string[], env: Record<string, string> = {}) =>
        start(["worker", "--join", join as string, "--token", token as string, "--name", name, "--engine", "openai", "--upstream", upstream.baseUrl, ...extra], env);

      const flagged = worker("flagged", ["--upstream-library"]);
      const fromEnv = worker("from-env", [], { COORDINATOR_UPSTREAM_LIBRARY: "true" });
      await flagged.waitFor(/joined the coordinator/);
      await fromEnv.waitFor(/joined the coordinator/);

      const cluster = (await (await fetch(`${api}/cluster`)).json()) as { workers: Array<{ name: string; placement: { library: Array<{ id: string }> } | null }> };
      for (const name of ["flagged", "from-env"]) {
        expect(cluster.workers.find((w) => w.name === name)?.placement?.library.map((m) => m.id), name).toEqual(["lib-a", "lib-b"]);
      }
      const served = (await (await fetch(`${api}/models`)).json()) as { data: unknown[] };
      expect(served.data).toEqual([]);
      const completion = await clientFor(api as string).chat.completions.create({ model: "lib-a", messages });
      expect(completion.choices[0]?.message.content).toBe("loaded on demand");
    } finally {
      await upstream.close();
    }
  });

  it("routes each model by its own policy with --model-routing or COORDINATOR_MODEL_ROUTING, over --routing; refuses an unknown policy", async () => {
    const policyOf = async (api: string) => {
      const view = (await (await fetch(`${api.replace(/\/v1$/, "")}/v1/cluster`)).json()) as { models: Array<{ id: string; routing: { policy: string } | null }> };
      return view.models.find((m) => m.id === "simulator")?.routing?.policy;
    };
    const base = ["--demo", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"];
    const byFlag = start([...base, "--routing", "session", "--model-routing", "other=power-of-two", "--model-routing", "simulator=cache-aware"]);
    const byEnv = start(base, { COORDINATOR_ROUTING: "session", COORDINATOR_MODEL_ROUTING: "other=cache-aware, simulator=power-of-two" });
    const byDefault = start([...base, "--routing", "session"]);
    const unknown = start([...base, "--model-routing", "simulator=fastest"]);

    for (const [coordinator, policy] of [[byFlag, "cache-aware"], [byEnv, "power-of-two"], [byDefault, "session"]] as const) {
      const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+\/v1)/);
      const completion = await clientFor(api as string).chat.completions.create({ model: "simulator", messages });
      expect(completion.choices[0]?.finish_reason).toBe("stop");
      // (a model's policy is made when its first task is routed)
      expect(await policyOf(api as string)).toBe(policy);
      coordinator.child.kill("SIGTERM");
      expect((await coordinator.exited).code).toBe(0);
    }
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.output()).toMatch(/--model-routing: expected MODEL=POLICY, POLICY one of least-loaded, power-of-two, session, cache-aware/);
  });

  it("rejects an unknown flag and a bad value with exit code 2 and the reason", async () => {
    const unknown = start(["--frobnicate"]);
    const badValue = start(["--reasoning", "loud"]);

    expect((await unknown.exited).code).toBe(2);
    expect(unknown.output()).toContain("--frobnicate");
    expect((await badValue.exited).code).toBe(2);
    expect(badValue.output()).toContain("--reasoning");
  });
});
