// A bench-only engine: every token carries the monotonic time (µs) the worker emitted it, so a client in another
// process can tell how long the token took to reach it. Tokens look like " @123456789".
import { setTimeout as sleep } from "node:timers/promises";
import type { Engine, EngineDescription, GenerationRequest, GenerationResult, GenerationSink } from "../src/worker/engines/engine.js";

export interface StampedOptions {
  /** Tokens per second per stream; 0 emits them all in one piece. */
  tokensPerSecond: number;
  /** Tokens per reply (max_tokens lowers it). */
  tokens: number;
  /** Silence before the first token (an idle open stream while it lasts). */
  prefillMs: number;
}

/** Microseconds on the monotonic clock, which every process on the machine shares. */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export const STAMP = /@(\d+)/g;

/** The first stamp in `text` (µs), if any. */
export function firstStamp(text: string): number | undefined {
  const match = /@(\d+)/.exec(text);
  return match ? Number(match[1]) : undefined;
}

export class StampedEngine implements Engine {
  readonly kind = "stamped";

  constructor(private readonly options: StampedOptions) {}

  async start(): Promise<EngineDescription> {
    return {
      device: { kind: "simulator", name: "bench", memoryBytes: 0 },
      models: [{ id: "simulator", contextLength: 1_000_000, format: "think", ownedBy: "bench" }],
    };
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const total = Math.min(this.options.tokens, request.params.maxTokens ?? Number.POSITIVE_INFINITY);
    if (this.options.prefillMs > 0) await sleep(this.options.prefillMs, undefined, { signal });
    const interval = this.options.tokensPerSecond > 0 ? 1000 / this.options.tokensPerSecond : 0;
    const started = performance.now();
    let produced = 0;
    if (interval === 0) {
      const at = nowMicros();
      let text = "";
      for (let i = 0; i < total; i++) text += ` @${at}`;
      sink.text(text, total);
      produced = total;
    }
    while (produced < total) {
      sink.text(` @${nowMicros()}`, 1);
      produced += 1;
      if (produced < total) await sleep(Math.max(0, started + produced * interval - performance.now()), undefined, { signal });
    }
    return { finishReason: "stop", usage: { promptTokens: 1, completionTokens: produced } };
  }

  async close(): Promise<void> {}
}
