// The llama engine's library: the GGUF files it offers (those in --models-dir and those given with --model), each
// described from its metadata, memory estimate included, without loading its weights.
import { readdir, stat } from "node:fs/promises";
import { basename, extname, join, resolve } from "node:path";
import type { GgufInsights, Llama } from "node-llama-cpp";
import type { LibraryModel } from "../../../worker-protocol/index.js";
import type { NodeLlamaCpp } from "./backend.js";
import { needsWholeInputBatch } from "./embedding.js";
import { describeKind } from "./loaded-model.js";

/** A model file on offer. */
export interface ModelFile {
  path: string;
  model: LibraryModel;
}

export interface LibraryOptions {
  /** Scanned for `*.gguf` files, not its subfolders. */
  dir?: string;
  /** Files given one by one (--model): they come first, and keep their id when a file in `dir` has the same name. */
  paths: readonly string[];
  /** Caps each model's default context length (the length it was trained on). */
  contextLength?: number;
  /** Text models also compute embeddings (their estimate counts an embedding context). */
  embeddings: boolean;
  /** A file that is not offered, and why (not a GGUF, unreadable, a name already taken); once per file and reason. */
  onSkippedFile?: (path: string, reason: string) => void;
}

/** What a model needs memory for once loaded. */
export interface MemoryPlan {
  contextLength: number;
  /** Context sequences of its chat context. */
  sequences: number;
  /** A text model also has an embedding context. */
  embeddings: boolean;
}

/** node-llama-cpp's own assumption (for its estimates) about a file that does not say what it was trained on. */
const UNKNOWN_TRAINED_CONTEXT = 4096;

interface Seen {
  mtimeMs: number;
  size: number;
  /** Undefined: the file was skipped. */
  file?: ModelFile;
}

/** The id a model file is served under: its name without `.gguf`. */
export function modelId(path: string): string {
  return basename(path, extname(path));
}

/** Reads a GGUF file's metadata and tensor list (not its weights): enough for node-llama-cpp's insights and estimates. */
export async function readInsights(lib: NodeLlamaCpp, llama: Llama, path: string): Promise<GgufInsights> {
  const fileInfo = await lib.readGgufFileInfo(path, { sourceType: "filesystem", logWarnings: false });
  return lib.GgufInsights.from(fileInfo, llama);
}

/**
 * Bytes the model needs when loaded for `plan`: its weights, its chat context and, when it embeds, its embedding
 * context, as node-llama-cpp estimates them from the file (llama.cpp's allocations simulated without the weights).
 * On a GPU, as if every layer were offloaded; RAM and VRAM are added up.
 */
export async function estimateMemory(llama: Llama, insights: GgufInsights, plan: MemoryPlan): Promise<number> {
  const fileInfo = insights.ggufFileInfo;
  const gpuLayers = llama.gpu === false ? 0 : insights.totalLayers;
  const { embeddingOnly } = describeKind(fileInfo, plan.embeddings);
  const context = { contextSize: plan.contextLength, modelGpuLayers: gpuLayers };
  const parts = [insights.estimateModelResourceRequirementsV2({ gpuLayers })];
  if (!embeddingOnly) parts.push(insights.estimateContextResourceRequirementsV2({ ...context, sequences: plan.sequences }));
  if (embeddingOnly || plan.embeddings) {
    // As the Embedder makes it: one sequence, and the whole context in one batch for models that pool over a batch.
    const batch = needsWholeInputBatch(fileInfo) ? { batchSize: plan.contextLength } : {};
    parts.push(insights.estimateContextResourceRequirementsV2({ ...context, ...batch, sequences: 1, isEmbeddingContext: true }));
  }
  const estimates = await Promise.all(parts);
  return Math.ceil(estimates.reduce((sum, { cpuRam, gpuVram }) => sum + cpuRam + gpuVram, 0));
}

/**
 * The files on offer, as of the last scan. A file is read again only once its size or modification time changed, so
 * a scan of an unchanged folder costs a `stat` per file.
 */
export class ModelCatalogue {
  private files = new Map<string, ModelFile>();
  private readonly seen = new Map<string, Seen>();
  private readonly reported = new Map<string, string>();

  constructor(
    private readonly lib: NodeLlamaCpp,
    private readonly llama: Llama,
    private readonly options: LibraryOptions,
  ) {}

  get(id: string): ModelFile | undefined {
    return this.files.get(id);
  }

  list(): LibraryModel[] {
    return [...this.files.values()].map((file) => file.model);
  }

  /** Reads the folder and the files again; resolves once `list()` says what is on offer now. */
  async scan(): Promise<void> {
    const paths = [...new Set([...this.options.paths.map((path) => resolve(path)), ...(await this.folderFiles())])];
    const files = new Map<string, ModelFile>();
    for (const path of paths) {
      const file = await this.read(path);
      if (!file) continue;
      const taken = files.get(file.model.id);
      if (taken) this.skip(path, `${taken.path} is offered as '${file.model.id}' already`);
      else files.set(file.model.id, file);
    }
    for (const path of this.seen.keys()) if (!paths.includes(path)) this.seen.delete(path);
    for (const path of this.reported.keys()) if (!paths.includes(path)) this.reported.delete(path);
    this.files = files;
  }

  private async folderFiles(): Promise<string[]> {
    const { dir } = this.options;
    if (dir === undefined) return [];
    const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
      throw new Error(`cannot read the models dir ${dir}: ${reasonOf(error)}`, { cause: error });
    });
    return entries
      .filter((entry) => !entry.isDirectory() && extname(entry.name).toLowerCase() === ".gguf")
      .map((entry) => resolve(join(dir, entry.name)))
      .sort();
  }

  private async read(path: string): Promise<ModelFile | undefined> {
    let stats: { mtimeMs: number; size: number };
    try {
      stats = await stat(path);
    } catch (error) {
      this.skip(path, reasonOf(error));
      return undefined;
    }
    const before = this.seen.get(path);
    if (before && before.mtimeMs === stats.mtimeMs && before.size === stats.size) return before.file;
    let file: ModelFile | undefined;
    try {
      file = { path, model: await this.describe(path, stats.size) };
      this.reported.delete(path); // a file fixed, then broken again, is reported again
    } catch (error) {
      this.skip(path, reasonOf(error));
    }
    this.seen.set(path, { mtimeMs: stats.mtimeMs, size: stats.size, file });
    return file;
  }

  private async describe(path: string, sizeBytes: number): Promise<LibraryModel> {
    const insights = await readInsights(this.lib, this.llama, path);
    const { ggufFileInfo } = insights;
    if (ggufFileInfo.splicedParts > 1) throw new Error("a GGUF split into several files is not supported");
    // node-llama-cpp reads a cut header as blanks rather than failing; its tensors end exactly at the end of the file.
    const needed = (ggufFileInfo.infoEndOffset ?? 0) + insights.modelSize;
    if (sizeBytes < needed) throw new Error(`the file is cut short: it has ${sizeBytes} bytes, its header and tensors take ${needed}`);
    if (!insights.isSupportedByLlamaCpp) {
      throw new Error(`llama.cpp does not run the architecture '${String(ggufFileInfo.metadata.general.architecture)}'`);
    }
    const trained = insights.trainContextSize ?? UNKNOWN_TRAINED_CONTEXT;
    const contextLength = Math.min(trained, this.options.contextLength ?? trained);
    const { embeddings } = this.options;
    const memoryBytes = await estimateMemory(this.llama, insights, { contextLength, sequences: 1, embeddings });
    const { format, capabilities } = describeKind(ggufFileInfo, embeddings);
    return { id: modelId(path), sizeBytes, memoryBytes, contextLength, ...(format !== undefined && { format }), capabilities };
  }

  private skip(path: string, reason: string): void {
    if (this.reported.get(path) === reason) return;
    this.reported.set(path, reason);
    this.options.onSkippedFile?.(path, reason);
  }
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
