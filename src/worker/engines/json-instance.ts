// A small, deterministic value that validates against a JSON schema: what the simulator writes in JSON mode, so the
// API's structured output is testable without a model. Covers the schema keywords structured output uses.

type Schema = Record<string, unknown>;

function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value for `schema` (with `root` to resolve local `$ref`s against); `depth` stops runaway recursion. */
export function jsonInstance(schema: unknown, root: unknown = schema, depth = 0): unknown {
  if (!isSchema(schema) || depth > 32) return null;
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if (typeof schema.$ref === "string") return jsonInstance(resolve(schema.$ref, root), root, depth + 1);
  for (const key of ["anyOf", "oneOf", "allOf"] as const) {
    const options = schema[key];
    if (Array.isArray(options) && options.length > 0) {
      if (key !== "allOf") return jsonInstance(options[0], root, depth + 1);
      return Object.assign({}, ...options.map((option) => jsonInstance(option, root, depth + 1)).filter(isSchema));
    }
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") ?? "null" : schema.type;
  switch (type) {
    case "object":
      return objectInstance(schema, root, depth);
    case "array": {
      const count = typeof schema.minItems === "number" ? Math.min(schema.minItems, 16) : 1;
      return Array.from({ length: count }, () => jsonInstance(schema.items ?? {}, root, depth + 1));
    }
    case "string":
      return stringInstance(schema);
    case "integer":
      return typeof schema.minimum === "number" ? Math.ceil(schema.minimum) : 1;
    case "number":
      return typeof schema.minimum === "number" ? schema.minimum : 1.5;
    case "boolean":
      return true;
    case "null":
      return null;
    default:
      return isSchema(schema.properties) ? objectInstance(schema, root, depth) : "value";
  }
}

function objectInstance(schema: Schema, root: unknown, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const properties = isSchema(schema.properties) ? schema.properties : {};
  for (const [name, property] of Object.entries(properties)) {
    Object.defineProperty(out, name, { value: jsonInstance(property, root, depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function stringInstance(schema: Schema): string {
  const formats: Record<string, string> = {
    "date-time": "2026-01-01T00:00:00Z",
    date: "2026-01-01",
    time: "00:00:00",
    email: "someone@example.com",
    uri: "https://example.com/",
    uuid: "00000000-0000-4000-8000-000000000000",
  };
  const base = (typeof schema.format === "string" && formats[schema.format]) || "text";
  const min = typeof schema.minLength === "number" ? schema.minLength : 0;
  const max = typeof schema.maxLength === "number" ? schema.maxLength : Number.POSITIVE_INFINITY;
  return base.padEnd(min, "x").slice(0, Math.max(min, Math.min(max, base.length)));
}

function resolve(ref: string, root: unknown): unknown {
  if (!ref.startsWith("#")) return {};
  let node: unknown = root;
  for (const key of ref.slice(1).split("/").filter(Boolean)) {
    if (!isSchema(node)) return {};
    node = node[key.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node;
}
