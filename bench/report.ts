// Results: one row per measured figure, printed as a table and written as JSON to bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";

export interface Row {
  scenario: string;
  metric: string;
  unit: string;
  coordinator?: number;
  direct?: number;
  portkey?: number;
  /** How the coordinator compares, e.g. "0.93x direct" or "+0.4 ms". */
  ratio?: string;
  /** The target and whether this run met it. */
  target?: string;
  met?: boolean;
}

export function fmt(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return "-";
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function printTable(rows: Row[]): void {
  const header = ["scenario", "metric", "unit", "coordinator", "direct", "portkey", "ratio", "target"];
  const lines = rows.map((r) => [
    r.scenario,
    r.metric,
    r.unit,
    fmt(r.coordinator),
    fmt(r.direct),
    fmt(r.portkey),
    r.ratio ?? "",
    r.target ? `${r.target} ${r.met ? "met" : "MISSED"}` : "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const show = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
  console.log(show(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const line of lines) console.log(show(line));
}

export function writeResults(rows: Row[], args: Record<string, unknown>): string {
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const file = new URL(`bench-${stamp}.json`, dir);
  const machine = { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), load: os.loadavg() };
  writeFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), machine, args, rows }, null, 2)}\n`);
  return file.pathname;
}
