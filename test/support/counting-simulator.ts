// A simulator engine that counts the generations it runs at once and the tasks it was told to stop, and may take a
// while to stop once aborted (an engine finishing its current batch): for tests of who runs what, and how many.
import type { GenerationRequest, GenerationResult, GenerationSink } from "../../src/worker/engines/engine.js";
import { defaultSimulatorOptions, SimulatorEngine } from "../../src/worker/engines/simulator.js";

export interface CountingOptions {
  tokensPerSecond: number;
  /** Extra answer tokens (a long reply). */
  replyTokens?: number;
  /** How long a generation takes to stop once its task is aborted. */
  stopMs?: number;
}

export class CountingSimulator extends SimulatorEngine {
  running = 0;
  mostAtOnce = 0;
  readonly aborted = new Set<string>();
  private readonly stopMs: number;

  constructor(options: CountingOptions) {
    super([], { ...defaultSimulatorOptions, prefillMs: 0, tokensPerSecond: options.tokensPerSecond, replyTokens: options.replyTokens ?? 0 });
    this.stopMs = options.stopMs ?? 0;
  }

  override async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    this.running += 1;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.running);
    try {
      return await super.generate(request, sink, signal);
    } finally {
      if (signal.aborted) {
        this.aborted.add(request.taskId);
        if (this.stopMs > 0) await new Promise((resolve) => setTimeout(resolve, this.stopMs));
      }
      this.running -= 1;
    }
  }
}
