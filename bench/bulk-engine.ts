// A bench-only engine that hands its sink large pieces of text (64 KiB, say) as fast as the process can: a worker
// whose output is limited only by the network, for measuring what a relay buffers for clients that do not read.
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Engine, EngineDescription, GenerationRequest, GenerationResult, GenerationSink } from "../src/worker/engines/engine.js";

export interface BulkOptions {
  /** Characters (ASCII, so bytes) per piece; each piece counts as one token. */
  pieceBytes: number;
  /** Pieces per reply (max_tokens lowers it). */
  pieces: number;
}

/** What a bulk engine or worker announces: one model, named as the simulator's so that requests need not change. */
export const bulkDescription: EngineDescription = {
  device: { kind: "simulator", name: "bench", memoryBytes: 0 },
  models: [{ id: "simulator", contextLength: 1_000_000, format: "think", ownedBy: "bench" }],
};

export class BulkEngine implements Engine {
  readonly kind = "bulk";
  private readonly piece: string;

  constructor(private readonly options: BulkOptions) {
    this.piece = "x".repeat(options.pieceBytes);
  }

  async start(): Promise<EngineDescription> {
    return bulkDescription;
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const total = Math.min(this.options.pieces, request.params.maxTokens ?? Number.POSITIVE_INFINITY);
    let produced = 0;
    while (produced < total) {
      sink.text(this.piece, 1);
      produced += 1;
      // Paused while its client is behind (flow control); then one piece a turn, so that other streams and the
      // socket's I/O get their share and a cancellation is seen at once.
      await sink.ready();
      await nextTurn();
      signal.throwIfAborted();
    }
    return { finishReason: "length", usage: { promptTokens: 1, completionTokens: produced } };
  }

  async close(): Promise<void> {}
}
