// Loads node-llama-cpp (an optional peer dependency) and llama.cpp's backend for the chosen GPU, offline.
//
// Offline guarantee: `getLlama` is called with `build: "never"` and `skipDownload: true`, so it only ever loads a
// prebuilt binary shipped inside the npm package (or a local build made earlier); it never downloads or compiles.
// At install time, set NODE_LLAMA_CPP_SKIP_DOWNLOAD=true (and NODE_LLAMA_CPP_POSTINSTALL=skip) so that the
// package's postinstall script cannot try either (npm 11 does not run it anyway unless approved).
import os from "node:os";
import type { Llama } from "node-llama-cpp";
import type { DeviceInfo } from "../../../worker-protocol/index.js";
import type { GpuChoice } from "../index.js";

export type NodeLlamaCpp = typeof import("node-llama-cpp");

/** Imports node-llama-cpp, or explains how to install it when it is missing. */
export async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import("node-llama-cpp");
  } catch (error) {
    if (isMissingPackage(error, "node-llama-cpp")) {
      throw new Error(
        "The llama engine needs the node-llama-cpp package, which is not installed. " +
          "Install it next to the coordinator with: npm install node-llama-cpp",
        { cause: error },
      );
    }
    throw error;
  }
}

function isMissingPackage(error: unknown, name: string): boolean {
  if (!(error instanceof Error) || !("code" in error)) return false;
  return error.code === "ERR_MODULE_NOT_FOUND" && error.message.includes(`'${name}'`);
}

export interface BackendOptions {
  gpu: GpuChoice;
  /** Receives llama.cpp's log lines; without it node-llama-cpp prints them itself. */
  onLog?: (level: string, message: string) => void;
}

/** Opens llama.cpp with a prebuilt binary for `gpu` ("auto" lets node-llama-cpp pick CUDA, Metal, Vulkan or CPU). */
export async function openLlama(lib: NodeLlamaCpp, options: BackendOptions): Promise<Llama> {
  const gpu = options.gpu === "cpu" ? false : options.gpu;
  try {
    return await lib.getLlama({
      gpu,
      build: "never", // never compile llama.cpp: use the prebuilt binaries that come with the package
      skipDownload: true, // never fetch llama.cpp sources
      ...(options.onLog ? { logger: options.onLog } : {}),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`could not load llama.cpp for --gpu ${options.gpu}: ${reason}`, { cause: error });
  }
}

/** The device llama.cpp runs on, as the worker's Hello reports it. */
export async function describeDevice(llama: Llama): Promise<DeviceInfo> {
  if (llama.gpu === false) {
    return { kind: "cpu", name: os.cpus()[0]?.model.trim() || os.arch(), memoryBytes: os.totalmem() };
  }
  const [names, vram] = await Promise.all([llama.getGpuDeviceNames(), llama.getVramState()]);
  return { kind: llama.gpu, name: names.join(", ") || llama.gpu, memoryBytes: vram.total };
}
