// Embedding vectors on the wire: base64 of float32 values, little-endian (as OpenAI's encoding_format "base64"), so
// a vector costs about 5.3 characters a value instead of JSON's 20, and passes to such a client without re-encoding.
import { endianness } from "node:os";

const LITTLE_ENDIAN = endianness() === "LE";

/** `values` as base64 of float32 little-endian. */
export function encodeEmbedding(values: Float32Array | readonly number[]): string {
  const floats = values instanceof Float32Array ? values : Float32Array.from(values);
  if (LITTLE_ENDIAN) return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString("base64");
  const bytes = Buffer.alloc(floats.length * 4);
  for (let i = 0; i < floats.length; i++) bytes.writeFloatLE(floats[i] as number, i * 4);
  return bytes.toString("base64");
}

/** The float32 values of an encoded vector, or undefined when it is not one (bad length, a value not finite). */
export function decodeEmbedding(encoded: string): Float32Array | undefined {
  const bytes = Buffer.from(encoded, "base64");
  if (bytes.length === 0 || bytes.length % 4 !== 0) return undefined;
  const values = new Float32Array(bytes.length / 4);
  if (LITTLE_ENDIAN) values.set(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)));
  else for (let i = 0; i < values.length; i++) values[i] = bytes.readFloatLE(i * 4);
  for (const value of values) if (!Number.isFinite(value)) return undefined;
  return values;
}

/** `values` scaled to unit length (L2), as OpenAI's and Ollama's embeddings are; a zero vector stays zero. */
export function normalizeEmbedding(values: Float32Array | readonly number[]): Float32Array {
  let sum = 0;
  for (const value of values) sum += value * value;
  const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = (values[i] as number) * scale;
  return out;
}
