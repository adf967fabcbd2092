// Micro-benchmark of the reply parsers: MB/s and µs per chunk for each format on a realistic stream of 4-character
// chunks. Run with `npx tsx bench/parsers.ts`.

import { pathToFileURL } from "node:url";
import { createParser } from "../src/parser/index.js";

const chunkSize = 4;

const paragraph =
  "Let me think about this carefully. The user asks for the weather in Paris and Tokyo — 東京 — and wants it in °C. 🌦️ " +
  "I should call the tool twice, then compare: if one is warmer, say so. Code like `if (a < b) { return x; }` is fine.\n";

const answer =
  "Here is the comparison you asked for:\n\n| City | Temp |\n|---|---|\n| Paris | 18 °C |\n| Tokyo | 24 °C |\n\n" +
  "Tokyo is warmer by 6 degrees. 😀 Use `<b>` tags if you want it bold.\n";

const args = '{"city": "Paris", "units": {"temperature": "celsius"}, "days": [1, 2, 3], "note": "line \\"quoted\\" 😀"}';

/** A reply of `size` characters in the given family's markup: mostly reasoning, then an answer, then tool calls. */
function reply(format: string, size: number): string {
  const reasoning = paragraph.repeat(Math.ceil((size * 0.6) / paragraph.length));
  const content = answer.repeat(Math.ceil((size * 0.35) / answer.length));
  const hermes = `<tool_call>\n{"name": "get_weather", "arguments": ${args}}\n</tool_call>\n`;
  switch (format) {
    case "raw":
    case "think":
    case "auto":
      return `<think>\n${reasoning}</think>\n\n${content}${hermes.repeat(2)}`;
    case "think-prefilled":
      return `${reasoning}</think>\n\n${content}${hermes.repeat(2)}`;
    case "mistral":
      return `[THINK]${reasoning}[/THINK]${content}[TOOL_CALLS]get_weather[ARGS]${args}[TOOL_CALLS]get_weather[ARGS]${args}`;
    case "seed":
      return `<seed:think>${reasoning}</seed:think>${content}`;
    case "harmony":
    case "auto (harmony)":
      return (
        `<|channel|>analysis<|message|>${reasoning}<|end|>` +
        `<|start|>assistant<|channel|>commentary<|message|>${content}<|end|>` +
        `<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>${args}<|call|>`
      );
    case "llama3":
      return `${content}`;
    default:
      throw new Error(`no sample reply for ${format}`);
  }
}

function chunksOf(text: string): string[] {
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += chunkSize) chunks.push(text.slice(i, i + chunkSize));
  return chunks;
}

/**
 * Parses the chunks once; returns the milliseconds of CPU time this process spent, which other processes on a
 * busy machine disturb much less than wall-clock time.
 */
function parseOnce(format: string, chunks: readonly string[]): number {
  const parser = createParser(format.replace(" (harmony)", ""));
  const started = process.cpuUsage();
  let events = 0;
  for (const chunk of chunks) events += parser.feed(chunk).length;
  events += parser.finish().length;
  const used = process.cpuUsage(started);
  const elapsed = (used.user + used.system) / 1000;
  if (events === 0) throw new Error(`${format}: no events`);
  return elapsed;
}

export interface ParserBenchResult {
  format: string;
  megabytesPerSecond: number;
  microsecondsPerChunk: number;
  /** Time for a 4× longer reply divided by 4× the time for the base one: about 1 when parsing is linear. */
  linearity: number;
}

function bestOf(runs: number, format: string, chunks: readonly string[]): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) best = Math.min(best, parseOnce(format, chunks));
  return best;
}

export function benchParsers(size = 1024 * 1024): ParserBenchResult[] {
  const formats = ["raw", "think", "think-prefilled", "mistral", "seed", "harmony", "llama3", "auto", "auto (harmony)"];
  return formats.map((format) => {
    const text = reply(format, size);
    const chunks = chunksOf(text);
    const longChunks = chunksOf(reply(format, size * 4));
    bestOf(3, format, chunks); // warm-up
    const ms = bestOf(7, format, chunks);
    const longMs = bestOf(3, format, longChunks);
    const megabytes = Buffer.byteLength(text, "utf8") / 1e6;
    return {
      format,
      megabytesPerSecond: megabytes / (ms / 1000),
      microsecondsPerChunk: (ms * 1000) / chunks.length,
      linearity: longMs / (4 * ms * (longChunks.length / (4 * chunks.length))),
    };
  });
}

/**
 * A degenerate reply: only newlines (models that loop do this). Whitespace is held back in several places, so this
 * checks that it is never rescanned: the ratio of 4× the input to 4× the time stays near 1.
 */
export function benchWhitespaceFlood(size = 256 * 1024): { format: string; linearity: number }[] {
  const formats = ["think", "think-prefilled", "mistral", "harmony", "llama3", "auto"];
  return formats.map((format) => {
    const chunks = chunksOf(`${"\n".repeat(size)}done`);
    const longChunks = chunksOf(`${"\n".repeat(size * 4)}done`);
    bestOf(2, format, chunks);
    return { format, linearity: bestOf(3, format, longChunks) / (4 * bestOf(3, format, chunks)) };
  });
}

function main(): void {
  console.log(`parsers: ${chunkSize}-character chunks, best of 7 runs on a ~1 MiB reply, CPU time`);
  console.log("format            MB/s    µs/chunk  linearity (4× input)");
  for (const r of benchParsers()) {
    console.log(
      `${r.format.padEnd(16)} ${r.megabytesPerSecond.toFixed(1).padStart(6)}  ${r.microsecondsPerChunk.toFixed(3).padStart(9)}  ${r.linearity.toFixed(2).padStart(9)}`,
    );
  }
  const flood = benchWhitespaceFlood().map((r) => `${r.format} ${r.linearity.toFixed(2)}`);
  console.log(`whitespace flood, linearity (4× input): ${flood.join(", ")}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
