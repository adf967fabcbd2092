// Scheduling decisions as pure logic: which worker takes a task, and the per-model FIFO queue.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WorkerEntry, type WorkerLink } from "../src/master/registry.js";
import { ModelQueues } from "../src/master/scheduler.js";
import { pickWorker, WorkerHeap } from "../src/master/worker-heap.js";
import { canTransition, isTerminal, Task, type TaskState } from "../src/master/task.js";

const link: WorkerLink = { send: () => {}, close: () => {}, isAlive: async () => true };

function worker(id: string, maxConcurrency: number, busy: number): WorkerEntry {
  const entry = new WorkerEntry(id, id, "test", { kind: "cpu", name: "cpu", memoryBytes: 0 }, [{ id: "m", contextLength: 1 }], maxConcurrency, link);
  for (let i = 0; i < busy; i++) entry.slots.set(`${id}-${i}`, new Task(`${id}-${i}`, { model: "m", messages: [], params: {} }));
  return entry;
}

function task(id: string, model = "m"): Task {
  return new Task(id, { model, messages: [], params: {} });
}

describe("pickWorker", () => {
  it("picks the least-loaded worker with a free slot", () => {
    expect(pickWorker([worker("a", 2, 1), worker("b", 4, 1), worker("c", 1, 1)])?.id).toBe("b");
  });

  it("breaks ties by the most free slots", () => {
    expect(pickWorker([worker("a", 1, 0), worker("b", 8, 0)])?.id).toBe("b");
  });

  it("never picks a full or draining worker", () => {
    const draining = worker("d", 8, 0);
    draining.state = "draining";
    expect(pickWorker([worker("full", 1, 1), draining])).toBeUndefined();
    expect(pickWorker(undefined)).toBeUndefined();
  });

  it("always returns a worker with capacity and minimal load when one exists (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 8 })), { maxLength: 12 }), (specs) => {
        const workers = specs.map(([max, busy], i) => worker(`w${i}`, max, Math.min(busy, max)));
        const chosen = pickWorker(workers);
        const free = workers.filter((w) => w.hasCapacity);
        if (free.length === 0) return chosen === undefined;
        return chosen !== undefined && chosen.hasCapacity && free.every((w) => chosen.load <= w.load);
      }),
    );
  });
});

describe("ModelQueues", () => {
  it("is FIFO per model, bounded, and removes from the middle", () => {
    const queues = new ModelQueues(3);
    const [a, b, c, d] = ["a", "b", "c", "d"].map((id) => task(id));
    expect([a, b, c].map((t) => queues.offer(t as Task))).toEqual([true, true, true]);
    expect(queues.offer(d as Task)).toBe(false);
    expect(queues.isFull("m")).toBe(true);

    expect(queues.remove(b as Task)).toBe(true);
    expect(queues.peek("m")?.id).toBe("a");
    queues.remove(a as Task);
    expect(queues.peek("m")?.id).toBe("c");
    expect(queues.depth("m")).toBe(1);
    expect(queues.depth("other")).toBe(0);
  });

  it("keeps models apart", () => {
    const queues = new ModelQueues(1);
    expect(queues.offer(task("x", "m1"))).toBe(true);
    expect(queues.offer(task("y", "m2"))).toBe(true);
    expect(Object.fromEntries(queues.depths())).toEqual({ m1: 1, m2: 1 });
  });
});

describe("task state machine", () => {
  it("allows only the documented transitions", () => {
    const allowed: Array<[TaskState, TaskState]> = [
      ["queued", "assigned"],
      ["queued", "failed"],
      ["queued", "cancelled"],
      ["assigned", "queued"],
      ["assigned", "streaming"],
      ["assigned", "finished"],
      ["assigned", "failed"],
      ["assigned", "cancelled"],
      ["streaming", "finished"],
      ["streaming", "failed"],
      ["streaming", "cancelled"],
    ];
    const states: TaskState[] = ["queued", "assigned", "streaming", "finished", "failed", "cancelled"];
    for (const from of states) {
      for (const to of states) {
        expect(canTransition(from, to), `${from} -> ${to}`).toBe(allowed.some(([f, t]) => f === from && t === to));
      }
    }
    expect(states.filter(isTerminal)).toEqual(["finished", "failed", "cancelled"]);
  });

  it("delivers pushed events in order through pull/ready, and ends", async () => {
    const t = task("t");
    const seen: string[] = [];
    const reader = (async () => {
      for (;;) {
        const event = t.events.pull();
        if (event) {
          seen.push(event.type === "chunk" ? event.text : event.type);
          continue;
        }
        if (t.events.done) return;
        await t.events.ready();
      }
    })();
    t.events.push({ type: "chunk", text: "a", tokens: 1, bytes: 1 });
    t.events.push({ type: "chunk", text: "b", tokens: 1, bytes: 1 });
    await Promise.resolve();
    t.events.push({ type: "finished", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 2 } });
    t.events.end();
    t.events.push({ type: "chunk", text: "late", tokens: 1, bytes: 4 });
    await reader;
    expect(seen).toEqual(["a", "b", "finished"]);
  });
});

describe("WorkerHeap", () => {
  it("picks what the linear scan picks, through any sequence of assignments, releases, drains and departures (property)", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("join" as const), max: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant("assign" as const) }),
      fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("drain" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("leave" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const heap = new WorkerHeap<WorkerEntry>();
        const live: WorkerEntry[] = [];
        let n = 0;
        for (const step of ops) {
          if (step.kind === "join") {
            const entry = worker(`w${n++}`, step.max, 0);
            live.push(entry);
            heap.add(entry);
          } else if (step.kind === "assign") {
            const chosen = heap.best();
            const expected = pickWorker(live);
            if ((chosen === undefined) !== (expected === undefined)) return false;
            if (chosen && expected) {
              if (chosen.load !== expected.load || chosen.slots.size - chosen.maxConcurrency !== expected.slots.size - expected.maxConcurrency) return false;
              chosen.slots.set(`t${n++}`, task(`t${n}`));
              heap.update(chosen);
            }
          } else if (live.length > 0) {
            const target = live[step.pick % live.length] as WorkerEntry;
            if (step.kind === "release") {
              const first = target.slots.keys().next().value;
              if (first !== undefined) target.slots.delete(first);
              heap.update(target);
            } else if (step.kind === "drain") {
              target.state = "draining";
              heap.update(target);
            } else {
              live.splice(live.indexOf(target), 1);
              heap.remove(target);
            }
          }
          if (heap.size !== live.length) return false;
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});
