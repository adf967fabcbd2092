#!/usr/bin/env node
// The `coordinator` command: `coordinator [--demo]` serves the master; `coordinator worker …` runs a worker.
import { networkInterfaces } from "node:os";
import { parseArgs } from "node:util";
import type { z } from "zod";
import { camel, type OptionSpec, ServeConfig, serveOptions, WorkerConfig, workerOptions } from "./config.js";
import { startCoordinator } from "./coordinator.js";
import { createLogger, type Logger } from "./log.js";
import { StatusLine } from "./terminal/status-line.js";
import { MeteredEngine, showWorkerStatus } from "./terminal/worker-status.js";
import { CloseCode } from "./worker-protocol/index.js";
import { createEngine } from "./worker/engines/index.js";
import { parseSimulatedModel } from "./worker/engines/simulated-library.js";
import { WorkerRuntime } from "./worker/runtime.js";

class UsageError extends Error {}

function help(command: string, summary: string, specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const flag = `--${s.name}${s.type === "string" ? " <value>" : ""}`;
    const extra = [s.default !== undefined ? `default ${s.default}` : "", `env ${s.env}`].filter(Boolean).join("; ");
    return `  ${flag.padEnd(34)}${s.description} (${extra})`;
  });
  return `Usage: ${command}\n\n${summary}\n\nOptions:\n${rows.join("\n")}\n  ${"--help".padEnd(34)}Show this help\n`;
}

/** Flags, then environment variables, then defaults; validated by `schema`. */
function readConfig<S extends z.ZodType>(args: string[], specs: readonly OptionSpec[], schema: S, usage: string): z.infer<S> | "help" {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = { help: { type: "boolean" } };
  for (const spec of specs) options[spec.name] = { type: spec.type, ...(spec.multiple && { multiple: true }) };
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${usage}`);
  }
  if (values.help) return "help";
  const raw: Record<string, unknown> = {};
  for (const spec of specs) {
    const key = camel(spec.name);
    const fromEnv = process.env[spec.env];
    if (values[spec.name] !== undefined) raw[key] = values[spec.name];
    else if (fromEnv !== undefined && fromEnv !== "") {
      if (spec.type === "boolean") raw[key] = /^(1|true|yes|on)$/i.test(fromEnv);
      else raw[key] = spec.multiple ? fromEnv.split(",").map((v) => v.trim()).filter(Boolean) : fromEnv;
    } else if (spec.default !== undefined) raw[key] = spec.default;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const flag = issue?.path[0] ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : "";
    throw new UsageError(`${flag ? `${flag}: ` : ""}${issue?.message ?? "invalid configuration"}\n\n${usage}`);
  }
  return parsed.data;
}

function lanAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const address of list ?? []) if (address.family === "IPv4" && !address.internal) return address.address;
  }
  return undefined;
}

function onSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1); // a second signal: leave at once
    stopping = true;
    log.info({ signal }, "shutting down");
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

async function serveCommand(args: string[]): Promise<void> {
  const usage = help("coordinator [options]", "Starts the coordinator: the OpenAI-compatible API and the worker endpoint on one port.", serveOptions);
  const config = readConfig(args, serveOptions, ServeConfig, usage);
  if (config === "help") return void process.stdout.write(usage);
  const log = createLogger(config.logLevel, "coordinator", { format: config.logFormat });
  const coordinator = await startCoordinator(config, log);
  const head = config.host === "0.0.0.0" || config.host === "::" ? (lanAddress() ?? "127.0.0.1") : config.host;
  const join = `npx coordinator worker --join ws://${head}:${coordinator.port} --token ${config.workerToken} --engine sim`;
  process.stdout.write(
    [
      "",
      `  coordinator is up`,
      `  API:          ${coordinator.url}/v1  (OpenAI-compatible)`,
      `  Dashboard:    ${coordinator.url}/`,
      `  Metrics:      ${coordinator.url}/metrics  (Prometheus)`,
      `  Cluster:      ${coordinator.url}/v1/cluster`,
      `  API keys:     ${keysLine(config)}`,
      ...(config.nats ? [`  Heads:        known to each other through NATS (this one: "${config.headName}")`] : []),
      config.demo ? `  Demo worker:  in-process simulator serving model "simulator"` : `  Workers:      none yet`,
      `  Join a worker:`,
      `    ${join}`,
      "",
      "",
    ].join("\n"),
  );
  onSignals(log, () => coordinator.shutdown(config.shutdownGraceMs));
}

/** Whether the API needs a key, as far as the flags say: keys added at run time (POST /v1/keys) close it too. */
function keysLine(config: ServeConfig): string {
  const fromFlags = config.apiKey.length > 0 || config.apiKeysFile !== undefined || config.adminKey.length > 0 || config.adminKeysFile !== undefined;
  if (fromFlags) return "required (Authorization: Bearer <key>)";
  if (config.nats) return "none from flags; those added on any head (POST /v1/keys) apply once NATS is read";
  return "none (open to anyone who can reach this port, until an admin key is added with POST /v1/keys)";
}

/** `loading qwen3-8b  [██████░░░░░░░░░░░░░░]  31%` for the status line while a model file loads. */
function loadingBar(model: string, fraction: number): string {
  const width = 20;
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `loading ${model}  [${"█".repeat(filled)}${"░".repeat(width - filled)}]  ${Math.round(fraction * 100)}%`;
}

async function workerCommand(args: string[]): Promise<void> {
  const usage = help("coordinator worker --join ws://HEAD:52415 --token T [options]", "Runs a worker: joins a coordinator and serves tasks on an engine (the simulator engine runs no model).", workerOptions);
  const config = readConfig(args, workerOptions, WorkerConfig, usage);
  if (config === "help") return void process.stdout.write(usage);
  // On a terminal, a live status line stays at the bottom and log lines scroll above it.
  const status = process.stdout.isTTY ? new StatusLine(process.stdout) : undefined;
  const log = createLogger(config.logLevel, "worker", { format: config.logFormat, destination: status?.destination });
  const created = await createEngine({
    engine: config.engine,
    models: config.model,
    modelsDir: config.modelsDir,
    memoryLimitBytes: config.memoryLimit,
    maxConcurrency: config.maxConcurrency,
    gpu: config.gpu,
    contextLength: config.contextLength,
    threads: config.threads,
    embeddings: config.embeddings,
    promptCache: !config.noPromptCache,
    onLoadProgress: status ? (model, fraction) => status.set(loadingBar(model, fraction)) : undefined,
    onSkippedFile: (path, reason) => log.warn({ path, reason }, "model file skipped: it is not offered"),
    onLog: (level, message) => (level === "error" ? log.error({ source: "llama.cpp" }, message) : log.debug({ source: "llama.cpp", level }, message)),
    upstream: config.upstream,
    upstreamKey: config.upstreamKey,
    upstreamVision: config.upstreamVision,
    upstreamEmbeddings: config.upstreamEmbeddings,
    upstreamLibrary: config.upstreamLibrary,
    sim: {
      tokensPerSecond: config.simTokensPerSecond,
      prefillMs: config.simPrefillMs,
      prefillMsPerToken: config.simPrefillMsPerToken,
      promptCacheTokens: config.simPromptCacheTokens,
      thinkMs: config.simThinkMs,
      replyTokens: config.simReplyTokens,
      failAfterTokens: config.simFailAfter,
      contextLength: 32_768,
      ...(config.simLibrary.length > 0 && { library: config.simLibrary.map(parseSimulatedModel), memoryBytes: config.memoryLimit, modelsDir: config.modelsDir }),
    },
  });
  const metered = status ? new MeteredEngine(created) : undefined;
  const engine = metered ?? created;
  const description = await engine.start();
  const runtime = new WorkerRuntime(engine, description, {
    join: config.join,
    token: config.token,
    name: config.name,
    maxConcurrency: config.maxConcurrency,
    reconnect: true,
    libraryScanMs: config.libraryScanMs,
    log,
  });
  // SIGTERM/SIGINT: stop taking tasks, finish the running ones, leave (a second signal leaves at once).
  onSignals(log, async () => {
    await runtime.drain();
    await runtime.stop(CloseCode.goingAway, "worker shutting down");
    await engine.close();
  });
  if (status && metered) {
    const stopStatus = showWorkerStatus(status, {
      name: config.name,
      models: description.models.map((model) => model.id),
      maxConcurrency: config.maxConcurrency,
      engine: metered,
      workerId: () => runtime.workerId,
    });
    process.once("exit", stopStatus);
  }
  await runtime.start();
  const closed = await runtime.closed;
  await engine.close();
  if (closed.code !== CloseCode.normal && closed.code !== CloseCode.goingAway) {
    log.error({ code: closed.code, reason: closed.reason }, "worker stopped");
    process.exit(1);
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "worker") return workerCommand(argv.slice(1));
  if (argv[0] === "serve") return serveCommand(argv.slice(1));
  return serveCommand(argv);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    process.stderr.write(`coordinator: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`coordinator: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
