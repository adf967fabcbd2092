// Ollama's keep_alive: how long the model stays loaded once idle after a request, as seconds (a number) or a Go
// duration ("5m", "1h30m", "300ms"); negative keeps it loaded for ever, 0 unloads it as soon as it is idle.
import { InvalidRequestError } from "./errors.js";

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const DURATION = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g;

/**
 * keep_alive in ms (Infinity: for ever), undefined when absent; a 400 naming keep_alive when it is malformed or of
 * another type (a body the route's schema has not checked, as a request with nothing to generate, may hold one).
 */
export function keepAliveMs(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const ms = typeof value === "number" ? value * 1000 : typeof value === "string" ? parseDuration(value.trim()) : undefined;
  if (ms === undefined || Number.isNaN(ms)) {
    throw new InvalidRequestError(`keep_alive must be a number of seconds or a duration such as "5m" or "1h30m"; got ${JSON.stringify(value)}.`, "keep_alive", "invalid_value");
  }
  return ms < 0 ? Number.POSITIVE_INFINITY : ms;
}

function parseDuration(text: string): number | undefined {
  if (/^[+-]?\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  if (text === "0") return 0;
  const match = DURATION.exec(text);
  if (!match) return undefined;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(PART)) ms += Number(amount) * (UNIT_MS[unit as string] as number);
  return match[1] === "-" ? -ms : ms;
}
