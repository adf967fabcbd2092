// Public face of the worker protocol, shared by master and worker.
export * from "./messages.js";
export * from "./close-codes.js";
export * from "./codec.js";
export * from "./turn-batching.js";
export * from "./flow-control.js";
export * from "./embedding.js";
