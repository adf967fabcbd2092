// A worker's live status on a terminal: whether it joined, tasks running, tokens per second, tokens served.
import type { Engine, GenerationRequest, GenerationResult, GenerationSink } from "../worker/engines/engine.js";
import { RateWindow } from "../metrics/rate-window.js";
import { StatusLine } from "./status-line.js";

/** Wraps an engine to count what passes through it; it changes nothing else. */
export class MeteredEngine implements Engine {
  readonly kind: string;
  running = 0;
  tokens = 0;
  private readonly rate = new RateWindow(6);
  /** The inner engine's embed, counted; absent when it has none, as the runtime must see. */
  readonly embed?: Engine["embed"];
  /** The inner engine's cache report, as is. */
  readonly cacheStats?: Engine["cacheStats"];
  readonly library?: Engine["library"];

  constructor(private readonly inner: Engine) {
    this.kind = inner.kind;
    const embed = inner.embed?.bind(inner);
    if (embed) this.embed = (request, sink, signal) => this.counted(() => embed(request, sink, signal));
    this.cacheStats = inner.cacheStats?.bind(inner);
    this.library = inner.library;
  }

  start() {
    return this.inner.start();
  }

  generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const counting: GenerationSink = {
      text: (text, tokens, logprobs) => {
        const n = tokens ?? 1;
        this.tokens += n;
        this.rate.add(n);
        sink.text(text, tokens, logprobs);
      },
      progress: (done, total) => sink.progress(done, total),
      ready: () => sink.ready(),
    };
    return this.counted(() => this.inner.generate(request, counting, signal));
  }

  close() {
    return this.inner.close();
  }

  get tokensPerSecond(): number {
    return this.rate.rate(3);
  }

  /** Counts a task as running while it runs. */
  private async counted<T>(run: () => Promise<T>): Promise<T> {
    this.running += 1;
    try {
      return await run();
    } finally {
      this.running -= 1;
    }
  }
}

export interface WorkerStatusSource {
  name: string;
  models: string[];
  maxConcurrency: number;
  engine: MeteredEngine;
  /** The id the master gave this connection; undefined until it joined. */
  workerId(): string | undefined;
}

const dim = (text: string) => `\x1b[2m${text}\x1b[22m`;
const green = (text: string) => `\x1b[32m${text}\x1b[39m`;
const yellow = (text: string) => `\x1b[33m${text}\x1b[39m`;

export function describeWorker(source: WorkerStatusSource): string {
  const id = source.workerId();
  const state = id ? `${green("●")} joined as ${id}` : `${yellow("●")} joining…`;
  const { engine } = source;
  const rate = engine.tokensPerSecond;
  return [
    state,
    `${source.name} ${dim(`(${engine.kind}: ${source.models.join(", ")})`)}`,
    `${engine.running}/${source.maxConcurrency} running`,
    `${rate >= 100 ? Math.round(rate) : rate.toFixed(1)} tok/s`,
    `${engine.tokens} tokens`,
  ].join(dim("  │  "));
}

/** Redraws the status every second until the returned function is called. */
export function showWorkerStatus(line: StatusLine, source: WorkerStatusSource): () => void {
  const draw = () => line.set(describeWorker(source));
  draw();
  const timer = setInterval(draw, 1_000);
  timer.unref();
  return () => {
    clearInterval(timer);
    line.stop();
  };
}
