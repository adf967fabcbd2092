// A hand-built "bigram" GGUF model whose greedy decoding replies with a scripted text: a real model file for tests and demos.
//
// How it works (llama architecture, 1 layer, F32):
// - Vocabulary: `<unk>`, `<s>` (BOS), `</s>` (EOS), the 256 byte pieces `<0x00>`…`<0xFF>` (so any prompt text
//   tokenizes, by byte fallback), SentencePiece's space `▁` (so spaces detokenize back to spaces, and llama.cpp's
//   tokenize/detokenize round-trip check passes), then the reply cut into pieces: `<think>`, `</think>` and each word with its
//   leading space (" The", " user", …). The reply pieces are "user-defined" tokens, which llama.cpp matches as
//   whole strings when it tokenizes text, so tokenizing the reply gives exactly the pieces the model generates.
// - Attention and feed-forward weights are all zero, so each layer adds nothing to the residual stream: the
//   hidden state at the last position is the last token's embedding, normalized by the final RMSNorm.
// - Embeddings: reply piece i owns dimension i + 1 (a one-hot vector); every other token shares dimension 0,
//   the "default" dimension. So the model only ever "sees" which reply piece came last, or none.
// - Output matrix: the row of the first reply piece is `logitScale` on dimension 0 (after any prompt, the reply
//   starts); the row of piece i + 1 is `logitScale` on piece i's dimension; the row of `</s>` is `logitScale` on the
//   last piece's dimension (or, for an endless model, the row of the piece after `</think>`, so it loops).
//   All other logits are 0, so the scripted successor is the arg-max after every step, and with the default
//   scale (16, a logit of ~90 after the norm) it is also what sampling at any sane temperature picks.
// - `tokenizer.ggml.add_space_prefix` is off, so a prompt renders exactly as the template writes it (no
//   SentencePiece space before each text fragment) and its token count is easy to check.
// - A small Jinja chat template (`tokenizer.chat_template`) renders system/user/assistant turns; it strips
//   earlier replies' reasoning before `</think>`, as reasoning models' templates do.
// - `llama.context_length` is 2048: enough room for a chat session's history.
// - Larger variants (`layers`, `width`) cost more to evaluate, as a real model does, and say the same; `mixing` makes
//   each output depend slightly on every earlier token and its position (see ScriptedModelOptions.mixing).
import { encodeGguf, gguf, type GgufTensor, type GgufValue } from "./writer.js";

export const SCRIPTED_REPLY = "<think> The user says hello.</think> Hello! How can I help?";

export interface ScriptedModelOptions {
  /** The reply greedy decoding produces; pieces (words with their leading space, think tags) must be unique. */
  reply?: string;
  /** Never emits `</s>`: after the last piece it continues with the piece after `</think>`, until max_tokens or abort. */
  endless?: boolean;
  /** Weight of the scripted successor's logit before the norm's ×√width; ~1 makes sampling at temperature 1 wander. */
  logitScale?: number;
  /** Declared in `llama.context_length`. */
  contextLength?: number;
  /** `general.name`. */
  name?: string;
  /**
   * Second choices that close JSON, for tests of grammar-constrained output: after the last piece `"` (so a string the
   * reply fills gets closed) and after any other token `}`, each at half the scripted logit. Without a grammar the
   * scripted successor still wins (by ~45 logits); under one that forbids it, these win over the uniform rest.
   */
  closesJson?: boolean;
  /**
   * An embedding-only variant: declares its attention non-causal and mean pooling (`llama.attention.causal`,
   * `llama.pooling_type`), as BERT-like encoders do, so llama.cpp embeds an input as the mean of its tokens'
   * (normalized, one-hot) embeddings and the llama engine serves it for embeddings only.
   */
  encoder?: boolean;
  /** Transformer blocks (1 by default): more cost more per token evaluated, for measurements of prefill. */
  layers?: number;
  /** Embedding width, at least what the reply's pieces need (32 or more by default): wider costs more per token. */
  width?: number;
  /**
   * Amplitude of seeded pseudo-random attention weights and of offsets added to the embeddings of the tokens outside
   * the reply (0, the default: none). Each output's probabilities then depend a little on every earlier token and its
   * position, so a KV cache holding the wrong tokens shows in the logprobs; at 0.1 greedy decoding still writes the
   * script. The same options always give the same file.
   */
  mixing?: number;
}

export interface ScriptedModel {
  /** The GGUF file's bytes. */
  bytes: Uint8Array;
  /** The text greedy decoding produces (for an endless model: its first round). */
  reply: string;
  /** The reply's tokens as text, in generation order (without `</s>`). */
  pieces: string[];
}

const SPECIAL_PIECES = ["<unk>", "<s>", "</s>"] as const;
const EOS_ID = 2;
/** SentencePiece's escaped space: a normal piece of its own, so that spaces in prompts detokenize back to spaces. */
const SPACE_PIECE = "\u2581";
const FIRST_PIECE_ID = SPECIAL_PIECES.length + 256 + 1;

/** What makes the model an encoder (see ScriptedModelOptions.encoder); llama.cpp reads both keys for any architecture. */
const ENCODER_METADATA: ReadonlyArray<readonly [string, GgufValue]> = [
  ["llama.attention.causal", gguf.bool(false)],
  ["llama.pooling_type", gguf.u32(1)], // llama.cpp's LLAMA_POOLING_TYPE_MEAN
];

/** GGUF token types (llama.cpp's `llama_token_type`). */
const TokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, byte: 6 } as const;

const CHAT_TEMPLATE =
  "{{ bos_token }}" +
  "{% for message in messages %}" +
  "{{ '<|' + message.role + '|>\\n' }}" +
  "{% if message.role == 'assistant' %}{{ message.content.split('</think>')[-1] | trim }}{{ eos_token }}" +
  "{% else %}{{ message.content }}{% endif %}" +
  "{{ '\\n' }}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/** Cuts a reply into the model's pieces: think tags, and words with their leading space. */
export function splitIntoPieces(reply: string): string[] {
  const pieces = reply.match(/<\/?think>|\s?(?:(?!<\/?think>)\S)+|\s+/g) ?? [];
  if (pieces.join("") !== reply) throw new Error("the reply could not be cut into pieces");
  const seen = new Set<string>();
  for (const piece of pieces) {
    if (seen.has(piece)) throw new Error(`the reply repeats the piece ${JSON.stringify(piece)}; each piece must be unique`);
    seen.add(piece);
  }
  return pieces;
}

/** Builds the scripted model's GGUF bytes. */
export function buildScriptedModel(options: ScriptedModelOptions = {}): ScriptedModel {
  const reply = options.reply ?? SCRIPTED_REPLY;
  const pieces = splitIntoPieces(reply);
  if (pieces.length === 0) throw new Error("the reply is empty");
  const width = modelWidth(pieces.length, options.width);
  const layers = options.layers ?? 1;
  if (!Number.isInteger(layers) || layers < 1) throw new Error("layers must be a positive integer");
  const scale = options.logitScale ?? 16;
  const mixing = options.mixing ?? 0;
  if (!(mixing >= 0)) throw new Error("mixing must be a number, 0 or more");
  const random = seededRandom(0x5eed);
  // Scaled so that the model's total mixing does not grow with its width or depth: the width-32, 1-layer model is the unit.
  const offset = mixing * Math.sqrt(32 / width);
  const attention = mixing * Math.sqrt(32 / (width * layers));

  const tokens = [...SPECIAL_PIECES, ...byteTokens(), SPACE_PIECE, ...pieces];
  const types = [
    TokenType.unknown,
    TokenType.control,
    TokenType.control,
    ...new Array<number>(256).fill(TokenType.byte),
    TokenType.normal,
    ...pieces.map(() => TokenType.userDefined),
  ];
  const vocab = tokens.length;

  const embeddings = new Float32Array(vocab * width);
  for (let token = 0; token < vocab; token++) {
    embeddings[token * width + dimensionOf(token)] = 1;
    if (mixing > 0 && dimensionOf(token) === 0) for (let d = 1; d < width; d++) embeddings[token * width + d] = offset * random();
  }

  const output = new Float32Array(vocab * width);
  const setSuccessor = (fromDimension: number, token: number) => (output[token * width + fromDimension] = scale);
  setSuccessor(0, FIRST_PIECE_ID);
  for (let i = 0; i + 1 < pieces.length; i++) setSuccessor(i + 1, FIRST_PIECE_ID + i + 1);
  setSuccessor(pieces.length, options.endless ? loopStart(pieces) : EOS_ID);
  if (options.closesJson) {
    output[byteToken('"') * width + pieces.length] = scale / 2;
    output[byteToken("}") * width + 0] = scale / 2;
  }

  const bytes = encodeGguf({
    metadata: [
      ["general.architecture", gguf.string("llama")],
      ["general.name", gguf.string(options.name ?? "scripted-test-model")],
      ["general.file_type", gguf.u32(0)],
      ["llama.context_length", gguf.u32(options.contextLength ?? 2048)],
      ["llama.embedding_length", gguf.u32(width)],
      ["llama.block_count", gguf.u32(layers)],
      ["llama.feed_forward_length", gguf.u32(width)],
      ["llama.attention.head_count", gguf.u32(4)],
      ["llama.attention.head_count_kv", gguf.u32(4)],
      ["llama.attention.layer_norm_rms_epsilon", gguf.f32(1e-5)],
      ["llama.rope.dimension_count", gguf.u32(width / 4)],
      ["llama.vocab_size", gguf.u32(vocab)],
      ...(options.encoder ? ENCODER_METADATA : []),
      ["tokenizer.ggml.model", gguf.string("llama")],
      ["tokenizer.ggml.tokens", gguf.strings(tokens)],
      ["tokenizer.ggml.scores", gguf.f32s(new Array<number>(vocab).fill(0))],
      ["tokenizer.ggml.token_type", gguf.i32s(types)],
      ["tokenizer.ggml.unknown_token_id", gguf.u32(0)],
      ["tokenizer.ggml.bos_token_id", gguf.u32(1)],
      ["tokenizer.ggml.eos_token_id", gguf.u32(EOS_ID)],
      ["tokenizer.ggml.add_bos_token", gguf.bool(true)],
      ["tokenizer.ggml.add_eos_token", gguf.bool(false)],
      ["tokenizer.ggml.add_space_prefix", gguf.bool(false)],
      ["tokenizer.chat_template", gguf.string(CHAT_TEMPLATE)],
    ],
    tensors: [
      { name: "token_embd.weight", shape: [width, vocab], data: embeddings },
      { name: "output_norm.weight", shape: [width], data: ones(width) },
      { name: "output.weight", shape: [width, vocab], data: output },
      ...Array.from({ length: layers }, (_, index) => layer(index, width, mixing > 0 ? () => attention * random() : undefined)).flat(),
    ],
  });
  return { bytes, reply, pieces };
}

/** Reply piece i lives on dimension i + 1; every other token on the shared default dimension 0. */
function dimensionOf(token: number): number {
  return token >= FIRST_PIECE_ID ? token - FIRST_PIECE_ID + 1 : 0;
}

/** An endless model loops back to the answer (the piece after `</think>`), or to the start when there is none. */
function loopStart(pieces: readonly string[]): number {
  const close = pieces.indexOf("</think>");
  const start = close >= 0 && close + 1 < pieces.length ? close + 1 : 0;
  return FIRST_PIECE_ID + start;
}

/** The byte-fallback token of a one-byte character. */
function byteToken(char: string): number {
  return SPECIAL_PIECES.length + char.charCodeAt(0);
}

function byteTokens(): string[] {
  return Array.from({ length: 256 }, (_, byte) => `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`);
}

function ones(n: number): Float32Array {
  return new Float32Array(n).fill(1);
}

/** The width asked for (a multiple of 8, for 4 attention heads with even RoPE dimensions), or the smallest that fits. */
function modelWidth(pieces: number, asked: number | undefined): number {
  const least = Math.max(32, Math.ceil((pieces + 1) / 8) * 8);
  if (asked === undefined) return least;
  if (!Number.isInteger(asked) || asked < least || asked % 8 !== 0) throw new Error(`width must be a multiple of 8, at least ${least}`);
  return asked;
}

/**
 * A transformer block: norms of one and every projection zero, so that it adds nothing; with `attention`, the
 * attention projections take its values instead (small ones: the block then mixes in a little of earlier tokens).
 */
function layer(index: number, width: number, attention?: () => number): GgufTensor[] {
  const square = (name: string): GgufTensor => ({ name, shape: [width, width], data: new Float32Array(width * width) });
  const mixed = (name: string): GgufTensor => {
    const tensor = square(name);
    if (attention) for (let i = 0; i < tensor.data.length; i++) tensor.data[i] = attention();
    return tensor;
  };
  const prefix = `blk.${index}`;
  return [
    { name: `${prefix}.attn_norm.weight`, shape: [width], data: ones(width) },
    mixed(`${prefix}.attn_q.weight`),
    mixed(`${prefix}.attn_k.weight`),
    mixed(`${prefix}.attn_v.weight`),
    mixed(`${prefix}.attn_output.weight`),
    { name: `${prefix}.ffn_norm.weight`, shape: [width], data: ones(width) },
    square(`${prefix}.ffn_gate.weight`),
    square(`${prefix}.ffn_down.weight`),
    square(`${prefix}.ffn_up.weight`),
  ];
}

/** A small seeded generator of numbers in [-1, 1) (mulberry32), so that a model's bytes depend only on its options. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}
