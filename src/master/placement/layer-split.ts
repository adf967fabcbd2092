// Splits a model's layers over devices for pipeline parallelism: contiguous ranges in order, on as few devices as
// possible, shared in proportion to free memory (or a weight). Pure, so placement can be tested without a cluster;
// docs/sharding.md has the rules, the guarantees and how an instance spanning workers would use the split.

/** A model as the planner sees it: its repeating layers in order, and the bytes that sit beside them. */
export interface ModelShape {
  layerCount: number;
  /** Weight bytes of each layer in order, or one figure for every layer. */
  layerBytes: number | readonly number[];
  /** KV-cache bytes one token of context takes in each layer (or in every layer), all sequences together. */
  kvBytesPerToken: number | readonly number[];
  /** Tokens of context the cache holds (over all sequences). */
  contextLength: number;
  /** Bytes held with the first layer, on the first shard's device (token embeddings, in a pipeline's order). */
  headBytes?: number;
  /** Bytes held with the last layer, on the last shard's device (the output norm and head). */
  tailBytes?: number;
}

/** A device that could hold part of the model: a worker's memory for models, as its WorkerMemory reports it. */
export interface SplitDevice {
  id: string;
  freeBytes: number;
  /**
   * Its share of the layers relative to the other chosen devices (a speed or bandwidth figure). Give it to every
   * device or to none; without it, devices share in proportion to their free bytes. It never decides which devices
   * are chosen, only how the chosen ones share.
   */
  weight?: number;
}

/** One device's part: layers `firstLayer` to `firstLayer + layerCount - 1`, and the bytes they take with it. */
export interface Shard {
  deviceId: string;
  firstLayer: number;
  layerCount: number;
  /** Weights, KV cache, and the head or tail bytes when it holds the first or last layer. */
  bytes: number;
}

export interface LayerSplit {
  ok: true;
  /** In pipeline order: the first holds layer 0, the last the model's last layer. */
  shards: Shard[];
  /** All the model needs: the shards' bytes add up to it. */
  neededBytes: number;
}

export type SplitRefusal =
  /** Every candidate together has less free memory than the model needs. */
  | { ok: false; reason: "not_enough_memory"; neededBytes: number; freeBytes: number; shortfallBytes: number }
  /** Enough memory in all, but not on the `maxDevices` candidates with the most of it. */
  | { ok: false; reason: "too_many_devices"; maxDevices: number; neededBytes: number; freeBytes: number; shortfallBytes: number }
  /** Enough memory in all, but whole layers cannot be packed into it (see docs/sharding.md, "Guarantees"). */
  | { ok: false; reason: "layers_do_not_fit"; neededBytes: number; largestLayerBytes: number };

export interface SplitOptions {
  /** Most devices one instance may span (default 16, the GGML_RPC_MAX_SERVERS of llama.cpp's RPC header). */
  maxDevices?: number;
}

export const DEFAULT_MAX_DEVICES = 16;

/** Sums of bytes stay exact in a double up to 2^53; this bound leaves room for 64 devices' worth of deviations. */
const MAX_MODEL_BYTES = 2 ** 46;
const MAX_DEVICES_LIMIT = 64;

/**
 * The split of `model` over the fewest `devices` that can hold it, or why there is none.
 *
 * Devices are taken in order of free memory, most first (then by id), and the pipeline runs in that order. The
 * first count `k` for which the `k` devices with the most free memory can hold every layer wins; among the splits
 * over those devices, the one closest to each device's proportional share of `neededBytes` (least total absolute
 * difference, in bytes) is returned. Ties go to the split whose last cut is latest, then the cut before it, and so on:
 * the earlier devices, which have more free memory, take the extra layer.
 */
export function planLayerSplit(model: ModelShape, devices: readonly SplitDevice[], options: SplitOptions = {}): LayerSplit | SplitRefusal {
  const maxDevices = options.maxDevices ?? DEFAULT_MAX_DEVICES;
  checkDevices(devices, maxDevices);
  const layers = layerCosts(model);
  const { neededBytes } = layers;
  const order = [...devices].sort((a, b) => b.freeBytes - a.freeBytes || compareIds(a.id, b.id));
  // No device can use more than the whole model, and capping keeps the sums exact.
  const usable = (count: number) => sum(order.slice(0, count).map((device) => Math.min(device.freeBytes, neededBytes)));

  const freeBytes = usable(order.length);
  if (freeBytes < neededBytes) return { ok: false, reason: "not_enough_memory", neededBytes, freeBytes, shortfallBytes: neededBytes - freeBytes };
  const limit = Math.min(maxDevices, order.length);
  const limitedBytes = usable(limit);
  if (limitedBytes < neededBytes) {
    return { ok: false, reason: "too_many_devices", maxDevices, neededBytes, freeBytes: limitedBytes, shortfallBytes: neededBytes - limitedBytes };
  }
  // Each shard holds at least one layer, so a model never spans more devices than it has layers.
  for (let count = 1; count <= Math.min(limit, layers.costs.length); count++) {
    if (usable(count) < neededBytes) continue;
    const shards = splitInOrder(layers, order.slice(0, count));
    if (shards) return { ok: true, shards, neededBytes };
  }
  return { ok: false, reason: "layers_do_not_fit", neededBytes, largestLayerBytes: largestLayer(layers) };
}

/** Each layer's bytes (weights and KV cache), the head and tail, and the total: checked, so that every sum is exact. */
interface LayerCosts {
  costs: number[];
  head: number;
  tail: number;
  neededBytes: number;
}

function layerCosts(model: ModelShape): LayerCosts {
  const { layerCount, contextLength } = model;
  if (!Number.isSafeInteger(layerCount) || layerCount < 1) throw new RangeError(`layerCount must be a positive integer, not ${layerCount}`);
  checkBytes("contextLength", contextLength);
  const weights = perLayer("layerBytes", model.layerBytes, layerCount);
  const kv = perLayer("kvBytesPerToken", model.kvBytesPerToken, layerCount);
  const costs = weights.map((bytes, i) => bytes + (kv[i] ?? 0) * contextLength);
  const head = model.headBytes ?? 0;
  const tail = model.tailBytes ?? 0;
  checkBytes("headBytes", head);
  checkBytes("tailBytes", tail);
  // Checked before summing: each term at most 2^46 keeps the running sum exact until the total is compared.
  if (costs.some((bytes) => bytes > MAX_MODEL_BYTES)) throw new RangeError(`a layer over ${MAX_MODEL_BYTES} bytes`);
  const neededBytes = sum(costs) + head + tail;
  if (neededBytes > MAX_MODEL_BYTES) throw new RangeError(`a model over ${MAX_MODEL_BYTES} bytes (${neededBytes})`);
  return { costs, head, tail, neededBytes };
}

function perLayer(name: string, value: number | readonly number[], layerCount: number): number[] {
  const values = typeof value === "number" ? new Array<number>(layerCount).fill(value) : [...value];
  if (values.length !== layerCount) throw new RangeError(`${name} has ${values.length} entries for ${layerCount} layers`);
  for (const bytes of values) checkBytes(name, bytes);
  return values;
}

function checkBytes(name: string, bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`${name} must be a non-negative integer, not ${bytes}`);
}

function checkDevices(devices: readonly SplitDevice[], maxDevices: number): void {
  if (!Number.isSafeInteger(maxDevices) || maxDevices < 1 || maxDevices > MAX_DEVICES_LIMIT) {
    throw new RangeError(`maxDevices must be an integer from 1 to ${MAX_DEVICES_LIMIT}, not ${maxDevices}`);
  }
  const ids = new Set<string>();
  for (const device of devices) {
    if (ids.has(device.id)) throw new RangeError(`device ${device.id} is listed twice`);
    ids.add(device.id);
    checkBytes(`freeBytes of ${device.id}`, device.freeBytes);
    if (device.weight !== undefined && !(Number.isFinite(device.weight) && device.weight > 0)) {
      throw new RangeError(`the weight of ${device.id} must be a positive number, not ${device.weight}`);
    }
  }
  const weighted = devices.filter((device) => device.weight !== undefined).length;
  if (weighted !== 0 && weighted !== devices.length) throw new RangeError("give a weight to every device or to none");
}

/** The chosen devices in pipeline order: what each may hold, what each should hold, and the bytes of a range on one. */
interface Pipeline {
  layerCount: number;
  freeBytes: number[];
  targets: number[];
  bytesOf(device: number, from: number, to: number): number;
}

/**
 * `deviation[to]`: the least total deviation from their targets of the devices so far holding layers [0, to), each
 * at least one; `start[to]`: where the latest device's range then starts. Deviations are sums of integers below 2^52,
 * so they compare exactly and ties are real.
 */
interface Row {
  deviation: Float64Array;
  start: Int32Array;
}

/**
 * The split over `devices` in this order that comes closest to their proportional shares, each holding at least one
 * layer and no more than its free bytes; undefined if none fits. Dynamic programming over (device, layers covered):
 * O(devices × layers²).
 */
function splitInOrder(layers: LayerCosts, devices: readonly SplitDevice[]): Shard[] | undefined {
  const prefix = prefixSums(layers.costs);
  const last = devices.length - 1;
  const pipeline: Pipeline = {
    layerCount: layers.costs.length,
    freeBytes: devices.map((device) => device.freeBytes),
    targets: shareTargets(devices, layers.neededBytes),
    bytesOf: (d, from, to) => (prefix[to] ?? 0) - (prefix[from] ?? 0) + (d === 0 ? layers.head : 0) + (d === last ? layers.tail : 0),
  };
  const rows: Row[] = [];
  for (let d = 0; d <= last; d++) rows.push(nextRow(pipeline, d, rows[d - 1]));
  return backtrack(pipeline, rows, devices);
}

function nextRow(pipeline: Pipeline, d: number, previous: Row | undefined): Row {
  const n = pipeline.layerCount;
  const later = pipeline.freeBytes.length - 1 - d;
  const free = pipeline.freeBytes[d] ?? 0;
  const target = pipeline.targets[d] ?? 0;
  const row: Row = { deviation: new Float64Array(n + 1).fill(Infinity), start: new Int32Array(n + 1) };
  // Each later device needs a layer of its own.
  for (let to = d + 1; to <= n - later; to++) {
    // Latest start first, replaced only by a strictly better one: on ties this device takes the fewest layers.
    for (let from = to - 1; from >= d; from--) {
      const bytes = pipeline.bytesOf(d, from, to);
      if (bytes > free) break; // an earlier start only adds layers
      const before = previous ? (previous.deviation[from] ?? Infinity) : from === 0 ? 0 : Infinity;
      const total = before + Math.abs(bytes - target);
      if (total < (row.deviation[to] ?? Infinity)) {
        row.deviation[to] = total;
        row.start[to] = from;
      }
    }
  }
  return row;
}

function backtrack(pipeline: Pipeline, rows: readonly Row[], devices: readonly SplitDevice[]): Shard[] | undefined {
  let to = pipeline.layerCount;
  if ((rows[rows.length - 1]?.deviation[to] ?? Infinity) === Infinity) return undefined;
  const shards: Shard[] = [];
  for (let d = rows.length - 1; d >= 0; d--) {
    const from = rows[d]?.start[to] ?? 0;
    shards.unshift({ deviceId: devices[d]?.id ?? "", firstLayer: from, layerCount: to - from, bytes: pipeline.bytesOf(d, from, to) });
    to = from;
  }
  return shards;
}

/** Each device's proportional share of the bytes, rounded down to a whole byte. */
function shareTargets(devices: readonly SplitDevice[], neededBytes: number): number[] {
  const weights = devices.map((device) => device.weight ?? device.freeBytes);
  const total = sum(weights);
  return weights.map((weight) => (total > 0 ? Math.floor((neededBytes * weight) / total) : 0));
}

/** The largest layer with the head folded into the first and the tail into the last: a cut wastes less than this. */
function largestLayer({ costs, head, tail }: LayerCosts): number {
  const folded = costs.map((bytes, i) => bytes + (i === 0 ? head : 0) + (i === costs.length - 1 ? tail : 0));
  return Math.max(...folded);
}

function prefixSums(values: readonly number[]): number[] {
  const prefix = [0];
  for (const value of values) prefix.push((prefix[prefix.length - 1] ?? 0) + value);
  return prefix;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

/** By UTF-16 code units, not the locale, so that the order is the same on every machine. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
