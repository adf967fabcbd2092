// JSON with holes, for fuzzing both trust boundaries: values a serializer would never write (number literals
// JSON.stringify cannot produce, deep nesting, lone surrogates), and mutations of valid messages.
import fc from "fast-check";

/** JSON text spliced in as is: number literals JSON.stringify cannot write, deep nesting, escaped lone surrogates. */
export class Raw {
  constructor(readonly text: string) {}
}
export type Json = null | boolean | number | string | Raw | Json[] | { [key: string]: Json };

export function serialize(value: Json): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(serialize).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const rawLiterals = ["-0", "-0.0", "1e308", "-1e308", "1e999", "-1e999", "5e-324", "1E+2", "123456789012345678901234567890"];
const escapedSurrogates = ['"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ude00\\ud83d"', '"\\u0000"'];
const oddStrings = [
  "NaN", "Infinity", "-Infinity", "1e400", "0x1F", "１２", "", " ", "\u0000", "\u202e", "🙂", "👩‍👩‍👧‍👦",
  "<think>", "</think>", "data: [DONE]\n\n", "\r\n\r\n", "__proto__", "SIMULATOR",
];

const surrogateSoup = fc.string({ unit: fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "a", "🙂", "é"), maxLength: 40 });
const hugeString = fc
  .record({ length: fc.integer({ min: 1_000, max: 300_000 }), unit: fc.constantFrom("x", "é", "🙂", "\ud800") })
  .map(({ length, unit }) => unit.repeat(Math.ceil(length / unit.length)));
const deepNest = fc
  .record({ depth: fc.integer({ min: 10, max: 30_000 }), kind: fc.constantFrom("array", "object") })
  .map(({ depth, kind }) =>
    new Raw(kind === "array" ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth)),
  );

export const weirdValue: fc.Arbitrary<Json> = fc.oneof(
  { arbitrary: fc.constantFrom<Json>(null, true, false, 0, -1, 0.5, 2.5, 4097, [], {}, [{}], { "0": 0 }), weight: 4 },
  { arbitrary: fc.constantFrom(...rawLiterals, ...escapedSurrogates).map((text) => new Raw(text)), weight: 3 },
  { arbitrary: fc.constantFrom(...oddStrings), weight: 3 },
  { arbitrary: surrogateSoup, weight: 2 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>, weight: 2 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: deepNest, weight: 1 },
);

export interface Mutation {
  op: "delete" | "replace" | "wrap" | "add" | "stringify";
  at: number;
  key: string;
  value: Json;
}

export const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom("delete", "replace", "replace", "wrap", "add", "stringify"),
  at: fc.nat(),
  key: fc.oneof(fc.constantFrom("__proto__", "constructor", "model", "messages", "role", "content", "type", ""), fc.string({ maxLength: 8 })),
  value: weirdValue,
});

type Container = Json[] | { [key: string]: Json };

function isContainer(value: Json | undefined): value is Container {
  return value !== null && typeof value === "object" && !(value instanceof Raw);
}

/** Every (container, key) slot in the tree, parents before children. */
function slots(root: Container): Array<{ parent: Container; key: string }> {
  const out: Array<{ parent: Container; key: string }> = [];
  const visit = (node: Container) => {
    for (const key of Object.keys(node)) {
      out.push({ parent: node, key });
      const child = (node as Record<string, Json>)[key];
      if (isContainer(child)) visit(child);
    }
  };
  visit(root);
  return out;
}

function put(parent: Container, key: string, value: Json): void {
  // defineProperty, so a "__proto__" key becomes a plain field (as JSON.parse makes it) rather than a prototype.
  Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * A fresh copy of a generated value: fast-check hands out the same instance of a constant (`[]`, `{}`) to every
 * mutation and run, and inserting it twice into a tree being mutated would make the tree cyclic.
 */
function fresh(value: Json): Json {
  if (value instanceof Raw || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(fresh);
  const out: { [key: string]: Json } = {};
  for (const [key, child] of Object.entries(value)) put(out, key, fresh(child));
  return out;
}

/** Applies the mutations to a copy of `base` (a plain JSON object). */
export function mutate(base: object, mutations: readonly Mutation[]): Json {
  const root = JSON.parse(JSON.stringify(base)) as Container;
  for (const m of mutations) {
    const all = slots(root);
    const slot = all[m.at % Math.max(1, all.length)];
    if (!slot) break;
    const { parent, key } = slot;
    const current = (parent as Record<string, Json>)[key] as Json;
    switch (m.op) {
      case "delete":
        if (Array.isArray(parent)) parent.splice(Number(key), 1);
        else delete parent[key];
        break;
      case "replace":
        put(parent, key, fresh(m.value));
        break;
      case "wrap":
        put(parent, key, [current]);
        break;
      case "add":
        if (Array.isArray(current)) current.push(fresh(m.value));
        else if (isContainer(current)) put(current, m.key, fresh(m.value));
        else put(parent, key, { [m.key]: fresh(m.value) });
        break;
      case "stringify":
        put(parent, key, serialize(current));
        break;
    }
  }
  return root;
}

export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Resolves with `promise`, or rejects after `ms` saying what never happened. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
