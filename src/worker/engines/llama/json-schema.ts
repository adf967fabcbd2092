// JSON schemas (response_format, tool parameters) as the subset node-llama-cpp turns into a grammar, or a clear refusal.
//
// node-llama-cpp's converter silently ignores keywords it does not know (a `pattern`, a `minimum`), and reads some it
// does know differently (a `type` list holding "object" becomes `null`, `anyOf` is unknown): a grammar built from
// such a schema would let through output that does not validate. So every keyword is checked here, a few are
// rewritten into the form the converter reads, and a schema using anything else is refused with a 400 naming it.
import type { GbnfJsonSchema } from "node-llama-cpp";
import { EngineRequestError } from "../engine.js";

/** Keywords the grammar enforces (or that cannot make output invalid), per kind of schema node. */
const ANNOTATIONS = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"];
const STRUCTURE = ["type", "enum", "const", "oneOf", "anyOf", "$ref", "$defs"];
const BY_TYPE: Record<string, string[]> = {
  object: ["properties", "required", "additionalProperties", "minProperties", "maxProperties"],
  array: ["items", "prefixItems", "minItems", "maxItems"],
  string: ["minLength", "maxLength", "format"],
  number: [],
  integer: [],
  boolean: [],
  null: [],
};
const FORMATS = ["date", "time", "date-time"];
const REF_PREFIX = "#/$defs/";

/**
 * The schema as node-llama-cpp's grammar converter reads it, such that every output the grammar allows validates
 * against the original; throws an EngineRequestError naming the first keyword or value it cannot enforce.
 * The grammar is stricter than the schema in two ways that still validate: every listed property is written (as if
 * all were required), and no property beyond them unless `additionalProperties` allows it.
 */
export function toGrammarSchema(schema: unknown, what: string): GbnfJsonSchema {
  const converted = convert(schema, what, "#");
  // The converter writes any JSON at all for a reference it cannot resolve.
  const defined = new Set(collect(converted, "$defs").flatMap((defs) => Object.keys(defs as object)));
  const missing = collect(converted, "$ref").find((ref) => !defined.has(String(ref).slice(REF_PREFIX.length)));
  if (missing !== undefined) {
    throw new EngineRequestError(`${what}: the $ref ${JSON.stringify(missing)} points to no definition in $defs`, "invalid_request");
  }
  return converted as GbnfJsonSchema;
}

/** Every value of `key` anywhere in a converted schema. */
function collect(node: unknown, key: string): unknown[] {
  if (Array.isArray(node)) return node.flatMap((item) => collect(item, key));
  if (!isObject(node)) return [];
  return Object.entries(node).flatMap(([k, value]) => [...(k === key ? [value] : []), ...collect(value, key)]);
}

function convert(node: unknown, what: string, path: string): Record<string, unknown> {
  const refuse = (problem: string): never => {
    throw new EngineRequestError(`${what}: ${problem} at ${path} cannot be enforced by the llama engine's grammar`, "invalid_request");
  };
  if (node === true) return {};
  if (!isObject(node)) return refuse("a schema that is not an object");
  const types = node.type === undefined ? [] : Array.isArray(node.type) ? node.type : [node.type];
  for (const type of types) if (typeof type !== "string" || !(type in BY_TYPE)) refuse(`the type ${JSON.stringify(type)}`);
  const allowed = new Set([...ANNOTATIONS, ...STRUCTURE, ...types.flatMap((type) => BY_TYPE[type as string] ?? [])]);
  for (const key of Object.keys(node)) if (!allowed.has(key)) refuse(`the keyword "${key}"`);

  if ("oneOf" in node && "anyOf" in node) refuse("both oneOf and anyOf");
  if (types.length > 1 && ("enum" in node || "const" in node)) {
    // The values are the only output: the type list adds nothing the grammar must enforce.
    const { type: _type, ...rest } = node;
    return convert(rest, what, path);
  }
  if (types.length > 1) {
    if (["oneOf", "anyOf", "$ref"].some((key) => key in node)) refuse("a list of types beside oneOf, anyOf or $ref");
    // The converter reads a list of types only for the basic ones: spell it out as one alternative per type.
    const { type: _type, $defs, ...rest } = node;
    const oneOf = types.map((type) => ({ ...pick(rest, [...ANNOTATIONS, ...(BY_TYPE[type as string] ?? [])]), type }));
    return convert({ ...($defs === undefined ? {} : { $defs }), oneOf }, what, path);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (ANNOTATIONS.includes(key)) continue;
    switch (key) {
      case "properties":
      case "$defs":
        if (!isObject(value)) refuse(`"${key}" that is not an object`);
        out[key] = Object.fromEntries(Object.entries(value as object).map(([name, sub]) => [name, convert(sub, what, `${path}/${key}/${name}`)]));
        break;
      case "items":
      case "additionalProperties":
        out[key] = typeof value === "boolean" ? value : convert(value, what, `${path}/${key}`);
        break;
      case "prefixItems":
      case "oneOf":
      case "anyOf":
        if (!Array.isArray(value) || value.length === 0) refuse(`"${key}" that is not a list of schemas`);
        // Alternatives in the grammar match any of them: as `anyOf` means; for `oneOf` the model writes one of them.
        out[key === "anyOf" ? "oneOf" : key] = (value as unknown[]).map((sub, i) => convert(sub, what, `${path}/${key}/${i}`));
        break;
      case "format":
        if (!FORMATS.includes(String(value))) refuse(`the string format ${JSON.stringify(value)}`);
        out[key] = value;
        break;
      case "$ref":
        if (typeof value !== "string" || !value.startsWith(REF_PREFIX)) refuse(`a $ref other than "${REF_PREFIX}NAME"`);
        out[key] = value;
        break;
      default:
        out[key] = value;
    }
  }
  checkCombination(out, refuse);
  return out;
}

function checkCombination(node: Record<string, unknown>, refuse: (problem: string) => never): void {
  // The converter takes an alternative or a reference instead of the type beside it, dropping the type's keywords.
  // (An enum or const beside a type is fine: its values are the only output, and they are the client's to match.)
  const alternative = ["oneOf", "$ref"].find((key) => key in node);
  if (alternative && "type" in node) refuse(`"${alternative === "oneOf" ? "oneOf/anyOf" : alternative}" beside "type"`);
  if (Array.isArray(node.required)) {
    const properties = isObject(node.properties) ? node.properties : {};
    const missing = node.required.find((name) => typeof name !== "string" || !(name in properties));
    if (missing !== undefined) refuse(`the required property ${JSON.stringify(missing)} that "properties" does not define`);
  }
  if (node.type === undefined && !["oneOf", "$ref", "enum", "const"].some((key) => key in node) && Object.keys(node).some((key) => key !== "$defs")) {
    refuse("a schema without a type");
  }
}

function pick(node: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(node).filter(([key]) => keys.includes(key)));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
