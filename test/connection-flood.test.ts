// A flood of slow connections, more than the coordinator has file descriptors, cannot lock out a health check, a
// chat request or a worker's join. The coordinator runs as a child process limited to 1,024 open files.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { eventually } from "./support/cluster.js";
import { connectPeer, hello, type Peer } from "./support/peer.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { connectRaw, type RawClient } from "./support/raw-http.js";

const FLOOD = 1_100;
const OPEN_FILES = 1_024;
const DEFAULT_MAX_PENDING_CONNECTIONS = 256;

async function healthy(api: string): Promise<boolean> {
  const response = await fetch(`${api}/health`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
  return response?.status === 200;
}

describe("a flood of slow connections", () => {
  let coordinator: CliProcess | undefined;
  let peer: Peer | undefined;
  const flood: RawClient[] = [];

  afterEach(async () => {
    for (const client of flood.splice(0)) client.socket.destroy();
    peer?.socket.terminate();
    await coordinator?.kill();
  });

  it("cannot stop /health, a chat completion or a worker's join: 1,100 dripping sockets against 1,024 file descriptors", async () => {
    const ownLimit = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim());
    expect(ownLimit, "this test process needs room for the flood's sockets (raise `ulimit -n`)").toBeGreaterThan(FLOOD + 500);
    coordinator = spawnCli(["--demo", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"], {}, { maxOpenFiles: OPEN_FILES });
    const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+)\/v1/);
    const [, join, token] = await coordinator.waitFor(/--join (ws:\/\/\S+) --token (\S+)/);
    expect(readFileSync(`/proc/${coordinator.child.pid}/limits`, "utf8")).toMatch(/Max open files\s+1024\s+1024/);

    // Given: more slow connections than the coordinator can hold, each sending a byte a second and never finishing.
    const connections = await Promise.allSettled(Array.from({ length: FLOOD }, () => connectRaw(api as string)));
    for (const [i, connection] of connections.entries()) {
      if (connection.status === "rejected") continue;
      const client = connection.value;
      client.socket.write(i % 2 === 0 ? "GET /hea" : "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
      client.drip("a", 1_000);
      flood.push(client);
    }
    expect(flood.length).toBeGreaterThan(OPEN_FILES);

    // Then: the coordinator answers a health check, a chat request and a worker's Hello.
    await eventually(() => healthy(api as string), "/health to answer during the flood", 10_000);
    const client = new OpenAI({ baseURL: `${api}/v1`, apiKey: "unused", maxRetries: 0, timeout: 10_000 });
    const completion = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "still there?" }] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    peer = await connectPeer({ workerUrl: join as string });
    peer.socket.send(JSON.stringify(hello({ token: token as string })));
    expect(await peer.next("Welcome")).toMatchObject({ type: "Welcome" });

    // And the flood was cut down to the cap on pending connections, not left to hold every descriptor.
    await eventually(
      () => flood.filter((c) => !c.socket.destroyed).length <= DEFAULT_MAX_PENDING_CONNECTIONS,
      "the flood to be cut down to the pending cap",
    );
    expect(flood.some((c) => !c.socket.destroyed)).toBe(true);
  });
});
