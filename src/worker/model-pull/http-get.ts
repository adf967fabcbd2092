// GET over node:http and node:https, redirects followed. Each request has a socket of its own (no pool): destroying
// an answer or aborting the signal closes it there and then, where fetch's shared pool keeps one open for seconds.
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { PullError } from "./errors.js";

/** Hugging Face needs one; more than fetch's 20 would only be a loop. */
const MAX_REDIRECTS = 10;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Not sent on to another origin, as fetch and curl do: a token for huggingface.co is none of its CDN's business. */
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];
/** A connection silent this long is given up on, and counts as dropped. */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * GETs `url`, following redirects, and resolves with the final answer: the caller reads its body and then destroys
 * it. Rejects with a PullError for a redirect that cannot be followed, with the connection's error otherwise.
 */
export async function httpGet(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  let target = url;
  let sent = headers;
  for (let redirects = 0; ; redirects += 1) {
    const answer = await get(target, sent, signal);
    const location = answer.headers.location;
    if (!REDIRECT_STATUSES.has(answer.statusCode ?? 0) || location === undefined) return answer;
    answer.destroy();
    if (redirects === MAX_REDIRECTS) throw new PullError(`more than ${MAX_REDIRECTS} redirects from ${url.host}`, "http_error", { status: answer.statusCode });
    const next = redirectTarget(location, target);
    if (next.origin !== target.origin) sent = withoutCredentials(sent);
    target = next;
  }
}

function get(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const request = send(url, { headers, signal, agent: false, timeout: IDLE_TIMEOUT_MS }, resolve);
    request.on("timeout", () => request.destroy(new Error(`${url.host} sent nothing for ${IDLE_TIMEOUT_MS / 1000} s`)));
    request.on("error", reject);
    request.end();
  });
}

function redirectTarget(location: string, from: URL): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new PullError(`${from.host} redirected to ${JSON.stringify(location)}, which is not a URL`, "bad_url");
  }
  if (next.protocol !== "http:" && next.protocol !== "https:") throw new PullError(`${from.host} redirected to a ${next.protocol} URL`, "bad_url");
  return next;
}

function withoutCredentials(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !CREDENTIAL_HEADERS.includes(name)));
}
