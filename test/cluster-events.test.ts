// GET /v1/cluster/events: the dashboard's feed sends the cluster view every second, and whatever a feed starts
// (its tick, its listeners) ends with it: when its client leaves, and when the coordinator closes under it.
import { createHook } from "node:async_hooks";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { ClusterView } from "../src/metrics/activity.js";
import { openaiClient, startSimWorker, startTestCoordinator } from "./support/cluster.js";
import { DIALECTS } from "./support/dialects.js";
import { deterministicBytes, startFileServer } from "./support/file-server.js";

/** Reads SSE data events from a fetch response until `enough` says stop. */
async function readViews(response: Response, enough: (views: ClusterView[]) => boolean): Promise<ClusterView[]> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const views: ClusterView[] = [];
  let buffer = "";
  while (!enough(views)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (frame.startsWith("data: ")) views.push(JSON.parse(frame.slice(6)) as ClusterView);
    }
  }
  reader.releaseLock();
  return views;
}

describe("cluster events feed", () => {
  it("streams the cluster view and leaves no timer or socket behind, whether the client or the coordinator ends it", async () => {
    const live = new Map<number, string>();
    const hook = createHook({
      init(asyncId, type) {
        if (type === "Timeout" || type.startsWith("TCP")) live.set(asyncId, type);
      },
      destroy(asyncId) {
        live.delete(asyncId);
      },
    }).enable();
    try {
      // Given a coordinator with a worker that has served one request,
      const coordinator = await startTestCoordinator();
      const worker = await startSimWorker(coordinator, { name: "feed-sim" });
      await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });

      // when a client follows the feed, it gets the view at once and again a second later,
      const leaving = new AbortController();
      const response = await fetch(`${coordinator.url}/v1/cluster/events`, { signal: leaving.signal });
      expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const views = await readViews(response, (v) => v.length >= 2);
      const [first, second] = views;
      expect(first?.workers.map((w) => w.name)).toEqual(["feed-sim"]);
      expect(first?.models).toEqual([{ id: "simulator", queueDepth: 0, workers: 1 }]);
      expect(first?.recent[0]).toMatchObject({ model: "simulator", outcome: "finished", worker: "feed-sim" });
      expect(first?.throughput.history.length).toBeGreaterThanOrEqual(60);
      expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(900);
      // and leaves;
      leaving.abort();

      // another client still follows it when the coordinator closes, which ends its stream cleanly.
      const staying = await fetch(`${coordinator.url}/v1/cluster/events`);
      const body = staying.text();
      await worker.stop();
      await coordinator.close();
      expect(await body).toMatch(/^data: \{/);

      // Then nothing the feeds started is left.
      const deadline = Date.now() + 5_000;
      while (live.size > 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      expect([...live.values()]).toEqual([]);
    } finally {
      hook.disable();
    }
  });

  it("shows requests from every dialect, each with the route it came in on", async () => {
    const coordinator = await startTestCoordinator();
    const worker = await startSimWorker(coordinator, { name: "feed-sim" });
    try {
      for (const dialect of DIALECTS) await dialect.complete(coordinator, [{ role: "user", content: "hi" }]);
      const client = openaiClient(coordinator);
      await client.completions.create({ model: "simulator", prompt: "hi" });
      await client.embeddings.create({ model: "simulator", input: ["hi", "there"] });

      const leaving = new AbortController();
      const response = await fetch(`${coordinator.url}/v1/cluster/events`, { signal: leaving.signal });
      const [view] = await readViews(response, (v) => v.length >= 1);
      leaving.abort();

      expect(view?.recent.map((r) => [r.route, r.outcome, r.worker])).toEqual([
        ["/v1/embeddings", "finished", "feed-sim"],
        ["/v1/completions", "finished", "feed-sim"],
        ["/api/chat", "finished", "feed-sim"],
        ["/v1/responses", "finished", "feed-sim"],
        ["/v1/messages", "finished", "feed-sim"],
        ["/v1/chat/completions", "finished", "feed-sim"],
      ]);
    } finally {
      await worker.stop();
      await coordinator.close();
    }
  });

  it("shows each library worker's memory, models and what it could load (a long library cut short), and the placements", async () => {
    const GiB = 2 ** 30;
    const coordinator = await startTestCoordinator({ feedIntervalMs: 50 });
    // Given a worker with a library of 70 models, one of them placed and loaded, and a worker without a library,
    const library = Array.from({ length: 70 }, (_, i) => ({ id: `lib-${String(i).padStart(2, "0")}`, sizeBytes: 1 * GiB, loadMs: 0 }));
    const shelf = await startSimWorker(coordinator, { name: "shelf", library, memoryBytes: 8 * GiB });
    const plain = await startSimWorker(coordinator, { name: "plain" });
    try {
      const placed = await fetch(`${coordinator.url}/v1/placements`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "lib-00", worker: "shelf" }),
      });
      const { id } = (await placed.json()) as { id: string };
      expect(placed.status).toBe(201);

      // when the feed sends a view once the model is loaded,
      const leaving = new AbortController();
      const response = await fetch(`${coordinator.url}/v1/cluster/events`, { signal: leaving.signal });
      const views = await readViews(response, (v) => v.at(-1)?.workers.find((w) => w.name === "shelf")?.placement?.models[0]?.state === "loaded");
      leaving.abort();
      const view = views.at(-1);

      // then the library worker shows its memory, the model with the placement that pins it, and 64 of the 69
      // models it could load, in order, with how many more; the other worker has no placement; the placement is listed.
      const shelfView = view?.workers.find((w) => w.name === "shelf");
      expect(shelfView?.placement?.memory).toEqual({ totalBytes: 8 * GiB, usedBytes: 1 * GiB, freeBytes: 7 * GiB });
      expect(shelfView?.placement?.models).toEqual([{ id: "lib-00", state: "loaded", progress: 1, memoryBytes: 1 * GiB, pinned: id }]);
      expect(shelfView?.placement?.library).toHaveLength(64);
      expect(shelfView?.placement?.library[0]).toEqual({ id: "lib-01", sizeBytes: 1 * GiB, memoryBytes: 1 * GiB });
      expect(shelfView?.placement?.library.at(-1)?.id).toBe("lib-64");
      expect(shelfView?.placement?.moreLibrary).toBe(5);
      expect(view?.workers.find((w) => w.name === "plain")?.placement).toBeNull();
      expect(view?.placements).toEqual([{ id, model: "lib-00", replicas: 1 }]);
      expect(view?.morePlacements).toBe(0);
    } finally {
      await shelf.stop();
      await plain.stop();
      await coordinator.close();
    }
  });

  it("shows which library workers can pull, and each one's pulls: those downloading, then the last few that ended", async () => {
    const GiB = 2 ** 30;
    const server = await startFileServer(deterministicBytes(64 * 1024));
    const dir = await mkdtemp(path.join(tmpdir(), "feed-pulls-"));
    const coordinator = await startTestCoordinator({ feedIntervalMs: 50 });
    // Given a worker with a models dir and one without,
    const puller = await startSimWorker(coordinator, { name: "puller", library: [], memoryBytes: 8 * GiB, modelsDir: dir, libraryScanMs: 60_000 });
    const shelf = await startSimWorker(coordinator, { name: "shelf", library: [{ id: "lib-a", sizeBytes: GiB, loadMs: 0 }], memoryBytes: 8 * GiB });
    try {
      // when the first is pulling a file whose server stalls, and then nine pulls of files that are not there fail,
      server.stallAfter = 1_000;
      const pull = (file: string) =>
        fetch(`${coordinator.url}/v1/models/pull`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: `${server.origin}${file}`, workers: ["puller"] }) });
      expect((await pull("/files/slow.gguf?download=true")).status).toBe(202);
      for (let i = 1; i <= 9; i++) expect((await pull(`/missing/f${i}.gguf`)).status).toBe(202);
      const leaving = new AbortController();
      const response = await fetch(`${coordinator.url}/v1/cluster/events`, { signal: leaving.signal });
      const pullsOf = (view: ClusterView | undefined) => view?.workers.find((w) => w.name === "puller")?.placement?.pulls ?? [];
      const views = await readViews(response, (v) => pullsOf(v.at(-1)).filter((p) => p.state === "failed").length === 7);
      leaving.abort();
      const view = views.at(-1);

      // then the feed shows it can pull and the other cannot, and lists eight of its pulls: the one downloading (its
      // file named by the URL, its size known), then the newest that failed first, each with its error.
      expect(view?.workers.find((w) => w.name === "puller")?.placement?.canPull).toBe(true);
      expect(view?.workers.find((w) => w.name === "shelf")?.placement).toMatchObject({ canPull: false, pulls: [] });
      const pulls = pullsOf(view);
      expect(pulls.map((p) => [p.fileName, p.state])).toEqual([
        ["slow.gguf", "downloading"],
        ...[9, 8, 7, 6, 5, 4, 3].map((i) => [`f${i}.gguf`, "failed"]),
      ]);
      expect(pulls[0]).toMatchObject({ totalBytes: 64 * 1024, error: null });
      expect(pulls[1]?.error).toMatch(/answered 404/);
      expect(pulls[1]?.receivedBytes).toBe(0);
    } finally {
      await puller.stop();
      await shelf.stop();
      await coordinator.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("holds at most one unread view for a dashboard that stops reading its feed", async () => {
    const coordinator = await startTestCoordinator({ feedIntervalMs: 50 });
    try {
      // Given a feed opened in-process (a web stream: what is queued is exactly what the client has not read)
      const response = await coordinator.fetch(new Request(`${coordinator.url}/v1/cluster/events`));
      const reader = response.body!.getReader();
      // When its client reads nothing while a dozen views fall due
      await new Promise((resolve) => setTimeout(resolve, 600));
      // Then what waits for it is the first view alone: the later ones were not piled up behind it. (A queued chunk
      // is read within microtasks; setImmediate marks that nothing more is queued. A view made once reading began,
      // when a tick lands in between, is not one that piled up: each view carries the time it was made.)
      const readingFrom = Date.now();
      const decoder = new TextDecoder();
      let queued = 0;
      for (;;) {
        const next = await Promise.race([reader.read(), new Promise<"none">((resolve) => setImmediate(() => resolve("none")))]);
        if (next === "none" || next.done) break;
        const view = JSON.parse(decoder.decode(next.value).replace(/^data: /, "")) as ClusterView;
        if (view.at < readingFrom) queued += 1;
      }
      expect(queued).toBe(1);
      await reader.cancel();
    } finally {
      await coordinator.close();
    }
  });
});
