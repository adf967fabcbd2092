// Encodes a GGUF (version 3) file from metadata and F32 tensors: enough to hand-build tiny models for tests and demos.
//
// Layout (little-endian): "GGUF", version u32, tensor count u64, metadata count u64, the metadata key/values,
// the tensor infos (name, dimensions innermost first, type, offset into the data section), padding to the
// alignment, then each tensor's data, each starting on an aligned offset.

/** A metadata value with its GGUF type. Build them with the `gguf` helpers below. */
export type GgufValue =
  | { kind: "u32"; value: number }
  | { kind: "i32"; value: number }
  | { kind: "f32"; value: number }
  | { kind: "bool"; value: boolean }
  | { kind: "string"; value: string }
  | { kind: "string[]"; value: readonly string[] }
  | { kind: "f32[]"; value: readonly number[] }
  | { kind: "i32[]"; value: readonly number[] };

export const gguf = {
  u32: (value: number): GgufValue => ({ kind: "u32", value }),
  i32: (value: number): GgufValue => ({ kind: "i32", value }),
  f32: (value: number): GgufValue => ({ kind: "f32", value }),
  bool: (value: boolean): GgufValue => ({ kind: "bool", value }),
  string: (value: string): GgufValue => ({ kind: "string", value }),
  strings: (value: readonly string[]): GgufValue => ({ kind: "string[]", value }),
  f32s: (value: readonly number[]): GgufValue => ({ kind: "f32[]", value }),
  i32s: (value: readonly number[]): GgufValue => ({ kind: "i32[]", value }),
};

export interface GgufTensor {
  name: string;
  /** Dimensions innermost first (GGUF's `ne` order): a matrix of `rows` rows of `cols` values is `[cols, rows]`. */
  shape: readonly number[];
  data: Float32Array;
}

export interface GgufFile {
  metadata: ReadonlyArray<readonly [key: string, value: GgufValue]>;
  tensors: readonly GgufTensor[];
}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;
const ALIGNMENT = 32; // GGUF's default `general.alignment`
const GGML_TYPE_F32 = 0;

const ValueType = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** Serializes a GGUF file; all tensors are stored as F32. */
export function encodeGguf(file: GgufFile): Uint8Array {
  const out = new ByteWriter();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(file.tensors.length);
  out.u64(file.metadata.length);
  for (const [key, value] of file.metadata) {
    out.string(key);
    writeValue(out, value);
  }

  let offset = 0;
  for (const tensor of file.tensors) {
    const elements = tensor.shape.reduce((product, n) => product * n, 1);
    if (elements !== tensor.data.length) {
      throw new Error(`tensor ${tensor.name}: shape [${tensor.shape.join(", ")}] needs ${elements} values, got ${tensor.data.length}`);
    }
    out.string(tensor.name);
    out.u32(tensor.shape.length);
    for (const n of tensor.shape) out.u64(n);
    out.u32(GGML_TYPE_F32);
    out.u64(offset);
    offset = alignUp(offset + tensor.data.byteLength, ALIGNMENT);
  }

  out.padTo(ALIGNMENT);
  for (const tensor of file.tensors) {
    out.f32Array(tensor.data);
    out.padTo(ALIGNMENT);
  }
  return out.bytes();
}

function writeValue(out: ByteWriter, value: GgufValue): void {
  switch (value.kind) {
    case "u32":
      out.u32(ValueType.u32);
      out.u32(value.value);
      return;
    case "i32":
      out.u32(ValueType.i32);
      out.i32(value.value);
      return;
    case "f32":
      out.u32(ValueType.f32);
      out.f32(value.value);
      return;
    case "bool":
      out.u32(ValueType.bool);
      out.u8(value.value ? 1 : 0);
      return;
    case "string":
      out.u32(ValueType.string);
      out.string(value.value);
      return;
    case "string[]":
      writeArrayHeader(out, ValueType.string, value.value.length);
      for (const item of value.value) out.string(item);
      return;
    case "f32[]":
      writeArrayHeader(out, ValueType.f32, value.value.length);
      for (const item of value.value) out.f32(item);
      return;
    case "i32[]":
      writeArrayHeader(out, ValueType.i32, value.value.length);
      for (const item of value.value) out.i32(item);
      return;
  }
}

function writeArrayHeader(out: ByteWriter, itemType: number, length: number): void {
  out.u32(ValueType.array);
  out.u32(itemType);
  out.u64(length);
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** An append-only little-endian buffer that grows as needed. */
class ByteWriter {
  private buffer = new Uint8Array(1 << 16);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  u8(n: number): void {
    this.reserve(1).setUint8(this.length, n);
    this.length += 1;
  }
  u32(n: number): void {
    this.reserve(4).setUint32(this.length, n, true);
    this.length += 4;
  }
  i32(n: number): void {
    this.reserve(4).setInt32(this.length, n, true);
    this.length += 4;
  }
  u64(n: number): void {
    this.reserve(8).setBigUint64(this.length, BigInt(n), true);
    this.length += 8;
  }
  f32(n: number): void {
    this.reserve(4).setFloat32(this.length, n, true);
    this.length += 4;
  }
  string(text: string): void {
    const encoded = new TextEncoder().encode(text);
    this.u64(encoded.length);
    this.reserve(encoded.length);
    this.buffer.set(encoded, this.length);
    this.length += encoded.length;
  }
  f32Array(values: Float32Array): void {
    const view = this.reserve(values.byteLength);
    for (const value of values) {
      view.setFloat32(this.length, value, true);
      this.length += 4;
    }
  }
  padTo(alignment: number): void {
    const padding = alignUp(this.length, alignment) - this.length;
    this.reserve(padding);
    this.length += padding; // the buffer starts zeroed, so the padding is zeros
  }
  bytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  private reserve(extra: number): DataView {
    if (this.length + extra > this.buffer.length) {
      let size = this.buffer.length * 2;
      while (size < this.length + extra) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    return this.view;
  }
}
