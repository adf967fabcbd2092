// Simulator workers as real child processes (`coordinator worker`), for tests that kill, freeze or restart them.
import type { RunningCoordinator } from "../../src/coordinator.js";
import { TEST_TOKEN } from "./cluster.js";
import { type CliProcess, spawnCli } from "./processes.js";

export interface ChildWorkerOptions {
  name: string;
  join?: string;
  model?: string;
  maxConcurrency?: number;
  tokensPerSecond?: number;
  prefillMs?: number;
  replyTokens?: number;
}

/** Starts `coordinator worker --engine sim …` and resolves once it has joined. */
export async function startChildWorker(coordinator: RunningCoordinator | { workerUrl: string }, options: ChildWorkerOptions): Promise<CliProcess> {
  const args = [
    "worker",
    "--join",
    options.join ?? coordinator.workerUrl,
    "--token",
    TEST_TOKEN,
    "--name",
    options.name,
    "--log-format",
    "json",
    "--max-concurrency",
    String(options.maxConcurrency ?? 4),
    "--sim-tokens-per-second",
    String(options.tokensPerSecond ?? 100),
    "--sim-prefill-ms",
    String(options.prefillMs ?? 0),
    "--sim-reply-tokens",
    String(options.replyTokens ?? 0),
  ];
  if (options.model) args.push("--model", options.model);
  const worker = spawnCli(args);
  await worker.waitFor(/joined the coordinator/);
  return worker;
}
