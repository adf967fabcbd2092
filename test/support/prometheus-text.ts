// A strict parser of the Prometheus text exposition format (0.0.4), for tests that read /metrics as a scraper would.
// It rejects what a scraper would reject: samples without a TYPE, malformed labels or values, duplicate series,
// and histograms whose buckets are not cumulative or disagree with their _count.

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const types = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const seen = new Set<string>();
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1}: ${line}`;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) return; // a plain comment
      const [, keyword, name = "", rest = ""] = match;
      if (!metricName.test(name)) throw new Error(`bad metric name, ${where}`);
      const family = families.get(name) ?? { name, type: "untyped" as MetricType, help: "", samples: [] };
      if (keyword === "TYPE") {
        if (!types.has(rest as MetricType)) throw new Error(`bad type, ${where}`);
        if (family.samples.length > 0) throw new Error(`TYPE after samples, ${where}`);
        family.type = rest as MetricType;
      } else {
        family.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      }
      families.set(name, family);
      return;
    }
    const sample = parseSample(line, where);
    const family = familyOf(families, sample.name);
    if (!family) throw new Error(`sample without a TYPE, ${where}`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
    seen.add(key);
    family.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function familyOf(families: Map<string, MetricFamily>, sampleName: string): MetricFamily | undefined {
  const exact = families.get(sampleName);
  if (exact) return exact;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = families.get(sampleName.slice(0, -suffix.length));
    if (family && (family.type === "histogram" || family.type === "summary")) return family;
  }
  return undefined;
}

function parseSample(line: string, where: string): Sample {
  let at = 0;
  while (at < line.length && /[a-zA-Z0-9_:]/.test(line[at] ?? "")) at++;
  const name = line.slice(0, at);
  if (!metricName.test(name)) throw new Error(`bad sample name, ${where}`);
  const labels: Record<string, string> = {};
  if (line[at] === "{") {
    at++;
    while (line[at] !== "}") {
      const eq = line.indexOf("=", at);
      if (eq < 0) throw new Error(`bad label, ${where}`);
      const label = line.slice(at, eq);
      if (!labelName.test(label)) throw new Error(`bad label name "${label}", ${where}`);
      if (line[eq + 1] !== '"') throw new Error(`unquoted label value, ${where}`);
      let value = "";
      let i = eq + 2;
      for (; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === "\\") {
          const next = line[++i];
          if (next === "n") value += "\n";
          else if (next === "\\" || next === '"') value += next;
          else throw new Error(`bad escape in label value, ${where}`);
        } else {
          value += line[i];
        }
      }
      if (i >= line.length) throw new Error(`unterminated label value, ${where}`);
      if (label in labels) throw new Error(`duplicate label ${label}, ${where}`);
      labels[label] = value;
      at = i + 1;
      if (line[at] === ",") at++;
      else if (line[at] !== "}") throw new Error(`expected , or } after a label, ${where}`);
    }
    at++;
  }
  const fields = line.slice(at).trim().split(/\s+/);
  if (fields.length < 1 || fields.length > 2 || line[at] !== " ") throw new Error(`bad value, ${where}`);
  const value = parseValue(fields[0] ?? "", where);
  if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) throw new Error(`bad timestamp, ${where}`);
  return { name, labels, value };
}

/** Numbers as Prometheus reads them (Go's ParseFloat): special values in any letter case. */
function parseValue(text: string, where: string): number {
  const lower = text.toLowerCase();
  if (lower === "+inf" || lower === "inf") return Infinity;
  if (lower === "-inf") return -Infinity;
  if (lower === "nan") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad number "${text}", ${where}`);
  return Number(text);
}

/** Buckets are cumulative, end with le="+Inf", and that bucket equals _count, per label set. */
function checkHistogram(family: MetricFamily): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      group.buckets.push([parseValue(le, family.name), sample.value]);
    } else if (sample.name.endsWith("_count")) group.count = sample.value;
    else if (sample.name.endsWith("_sum")) group.sum = sample.value;
  }
  for (const [key, group] of groups) {
    const sorted = [...group.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i]?.[1] ?? 0) < (sorted[i - 1]?.[1] ?? 0)) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    const last = sorted.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${family.name}${key}: no +Inf bucket`);
    if (group.count === undefined || group.sum === undefined) throw new Error(`${family.name}${key}: no _count or _sum`);
    if (last[1] !== group.count) throw new Error(`${family.name}${key}: +Inf bucket ${last[1]} != _count ${group.count}`);
  }
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = familyOf(families, name);
  const matches = (family?.samples ?? []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${matches.length} series`);
  return matches[0]?.value;
}
