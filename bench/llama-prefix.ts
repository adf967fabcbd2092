// KV-cache reuse on the llama engine (docs/benchmarks.md): long conversations turn by turn on the real engine
// (node-llama-cpp on the CPU, in this process) with a larger scripted model, the prompt cache on and off; time to
// first token and prompt tokens evaluated per turn.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestModel } from "../scripts/make-test-model.js";
import { textSink } from "../src/worker/engines/engine.js";
import { LlamaEngine } from "../src/worker/engines/llama.js";
import type { ChatMessage } from "../src/worker-protocol/index.js";
import { percentile } from "./client.js";
import type { Row } from "./report.js";

export interface LlamaPrefixOptions {
  /** Conversations per variant, each with its own system prompt (so that every first turn is cold). */
  conversations: number;
  /** Turns per conversation. */
  turns: number;
  /** Characters of the system prompt (about one token each with the scripted model's byte-level vocabulary). */
  systemChars: number;
  /** The model: transformer blocks and width (see scripts/make-test-model.ts). */
  layers: number;
  width: number;
}

interface Turn {
  ttftMs: number;
  promptTokens: number;
  cachedTokens: number;
  reply: string;
}

export async function llamaPrefixScenario(options: LlamaPrefixOptions): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), "bench-llama-prefix-"));
  try {
    const model = await makeTestModel(join(dir, "prefix.gguf"), { layers: options.layers, width: options.width, contextLength: 8192 });
    const scenario = `llama-prefix (${options.layers}×${options.width}, ${(model.bytes / 2 ** 20).toFixed(0)} MiB)`;
    const [on, off] = await conversations(model.path, options);
    const rows: Row[] = [];
    for (let turn = 0; turn < options.turns; turn++) {
      const withCache = on.flatMap((turns) => turns.slice(turn, turn + 1));
      const without = off.flatMap((turns) => turns.slice(turn, turn + 1));
      const ttft = (turns: Turn[]) => percentile(turns.map((t) => t.ttftMs), 50);
      const evaluated = (turns: Turn[]) => percentile(turns.map((t) => t.promptTokens - t.cachedTokens), 50);
      const label = `turn ${turn + 1}`;
      rows.push(
        { scenario, metric: `${label}: prompt tokens (p50)`, unit: "tokens", coordinator: percentile(withCache.map((t) => t.promptTokens), 50) },
        { scenario, metric: `${label}: evaluated, prompt cache on (p50)`, unit: "tokens", coordinator: evaluated(withCache) },
        { scenario, metric: `${label}: evaluated, prompt cache off (p50)`, unit: "tokens", coordinator: evaluated(without) },
        { scenario, metric: `${label}: time to first token, prompt cache on (p50)`, unit: "ms", coordinator: ttft(withCache) },
        { scenario, metric: `${label}: time to first token, prompt cache off (p50)`, unit: "ms", coordinator: ttft(without) },
        { scenario, metric: `${label}: off ÷ on (time to first token)`, unit: "x", coordinator: ttft(without) / ttft(withCache) },
      );
    }
    const replies = (runs: Turn[][]) => runs.flat().map((turn) => turn.reply);
    const same = replies(on).filter((reply, i) => reply === replies(off)[i]).length;
    rows.push({
      scenario,
      metric: "replies the same with the prompt cache as without",
      unit: "turns",
      coordinator: same,
      target: `all ${replies(off).length}`,
      met: same === replies(off).length && replies(on).length === replies(off).length,
    });
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Each conversation's turns on an engine with the prompt cache, then on one without, conversation by conversation (so
 * that a change in the machine's load falls on both alike), never side by side: each has the CPU to itself. One
 * sequence per engine, as a worker's default.
 */
async function conversations(modelPath: string, options: LlamaPrefixOptions): Promise<[Turn[][], Turn[][]]> {
  const engine = (promptCache: boolean) => new LlamaEngine({ modelPaths: [modelPath], gpu: "cpu", maxConcurrency: 1, promptCache });
  const [cached, uncached] = [engine(true), engine(false)];
  const on: Turn[][] = [];
  const off: Turn[][] = [];
  try {
    await cached.start();
    await uncached.start();
    for (let c = 0; c < options.conversations; c++) {
      on.push(await converse(cached, c, options));
      off.push(await converse(uncached, c, options));
    }
    return [on, off];
  } finally {
    await Promise.all([cached.close(), uncached.close()]);
  }
}

async function converse(engine: LlamaEngine, conversation: number, options: LlamaPrefixOptions): Promise<Turn[]> {
  const messages: ChatMessage[] = [{ role: "system", content: systemPrompt(conversation, options.systemChars) }];
  const turns: Turn[] = [];
  for (let t = 0; t < options.turns; t++) {
    messages.push({ role: "user", content: `Question ${t + 1}: what does rule ${t * 7 + 3} above mean for a newcomer, in two sentences?` });
    const turn = await ask(engine, messages);
    turns.push(turn);
    messages.push({ role: "assistant", content: turn.reply });
  }
  return turns;
}

async function ask(engine: LlamaEngine, messages: ChatMessage[]): Promise<Turn> {
  let reply = "";
  let firstAt: number | undefined;
  const at = performance.now();
  const sink = textSink((text) => {
    firstAt ??= performance.now();
    reply += text;
  });
  const { usage } = await engine.generate({ taskId: `bench-${Math.random()}`, model: "prefix", messages: [...messages], params: { temperature: 0 } }, sink, new AbortController().signal);
  return { ttftMs: (firstAt ?? performance.now()) - at, promptTokens: usage.promptTokens, cachedTokens: usage.cachedTokens ?? 0, reply };
}

/** A long system prompt of numbered rules, distinct per conversation from its first line on. */
function systemPrompt(conversation: number, chars: number): string {
  const lines = [`You are the assistant of conversation ${conversation}. Follow these house rules.`];
  for (let rule = 1; lines.join("\n").length < chars; rule++) {
    lines.push(`Rule ${rule}: keep answers short, cite the rule you apply, and say when a question falls outside them.`);
  }
  return lines.join("\n");
}
