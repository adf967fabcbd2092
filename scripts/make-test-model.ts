// Writes the tiny scripted GGUF model the tests (and `--demo`) run through real llama.cpp.
//
//   npx tsx scripts/make-test-model.ts [out.gguf] [--endless] [--closes-json] [--encoder] [--layers N] [--width N] [--mixing A]
//
// The model (~100 KB, llama architecture, F32) answers any chat with SCRIPTED_REPLY,
// `<think> The user says hello.</think> Hello! How can I help?`, by greedy decoding: a hand-built "bigram"
// model whose attention and feed-forward weights are zero, so only the last token's embedding reaches the
// output, and whose embedding and output matrices make each reply piece's successor the arg-max.
// The whole construction is explained at the top of src/worker/engines/gguf/scripted-model.ts.
// `--endless` writes a variant that never stops on its own (it repeats the answer), for cancellation tests.
// `--closes-json` writes a variant whose second choices close JSON strings and objects: under a JSON grammar it ends
// its output within a few dozen tokens (the plain model fills a string with its sentence forever), for tests of
// response_format and forced tool calls; without a grammar it writes the same reply.
// `--encoder` writes an embedding-only variant (non-causal attention, mean pooling, as BERT-like models declare), for
// tests of embeddings: it embeds an input as the mean of its tokens' one-hot embeddings.
// `--layers N --width N` write a larger model that says the same but costs more per token (`--layers 8 --width 256`:
// 15 MiB, ~0.4 ms per prompt token on one CPU thread), for measurements of prefill and prompt caching (bench/llama-prefix.ts).
// `--mixing A` gives it small seeded attention weights (A ~0.1), so that its probabilities depend on the whole context.
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { buildScriptedModel, type ScriptedModelOptions } from "../src/worker/engines/gguf/scripted-model.js";

export { SCRIPTED_REPLY, splitIntoPieces, type ScriptedModelOptions } from "../src/worker/engines/gguf/scripted-model.js";

export interface TestModel {
  /** Absolute path of the written GGUF file. */
  path: string;
  /** What greedy decoding generates after any prompt (for an endless model: its first round). */
  scriptedReply: string;
  /** The reply's tokens as text, in order; their count is the completion's token count (`</s>` not included). */
  pieces: string[];
  /** File size in bytes. */
  bytes: number;
}

/** Writes the scripted test model to `path` (creating its folder) and says what it will generate. */
export async function makeTestModel(path: string, options: ScriptedModelOptions = {}): Promise<TestModel> {
  const model = buildScriptedModel(options);
  const absolute = resolve(path);
  await mkdir(dirname(absolute), { recursive: true });
  await writeFile(absolute, model.bytes);
  return { path: absolute, scriptedReply: model.reply, pieces: model.pieces, bytes: model.bytes.length };
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      endless: { type: "boolean" },
      "closes-json": { type: "boolean" },
      encoder: { type: "boolean" },
      layers: { type: "string" },
      width: { type: "string" },
      mixing: { type: "string" },
    },
  });
  const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  const out = positionals[0] ?? "test-artifacts/scripted.gguf";
  const model = await makeTestModel(out, {
    endless: values.endless,
    closesJson: values["closes-json"],
    encoder: values.encoder,
    layers: number(values.layers),
    width: number(values.width),
    mixing: number(values.mixing),
  });
  process.stdout.write(`wrote ${model.path} (${model.bytes} bytes); it replies: ${model.scriptedReply}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
