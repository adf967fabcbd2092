// An approximate prefix tree of the prompts each worker is believed to hold in its KV cache: a radix tree over the
// prompts' characters, whose nodes record which workers ("tenants") hold the prefix ending there, bounded in memory
// by evicting least recently used holds.
import { type Hold, HoldList, Tenant } from "./holds.js";

/** Approximate bytes of one node, one hold and one tenant besides the labels (measured on Node 20, 64-bit). */
export const NODE_BYTES = 200;
export const HOLD_BYTES = 120;
export const TENANT_BYTES = 200;

// Labels holding a character outside Latin-1 take two bytes per character in V8.
const WIDE = /[^\u0000-\u00ff]/;
// Edges are compared this many characters at a time natively before the one chunk that differs is walked by hand.
const CHUNK = 64;

class TreeNode {
  children: Map<number, TreeNode> | undefined;
  /** The workers believed to hold this node's whole prefix, by id. */
  readonly tenants = new Map<string, Hold<TreeNode>>();

  constructor(
    /** The edge from the parent; a flat copy, never a slice of a prompt (a slice would keep the whole prompt alive). */
    public label: string,
    public parent: TreeNode | undefined,
    readonly wide: boolean,
  ) {}
}

export interface PrefixTreeOptions {
  /** Bound on the tree's approximate bytes (labels, nodes, holds, tenants). */
  maxBytes: number;
  /** Bound on the characters any one worker is believed to hold (its KV cache's size, in characters), if any. */
  maxCharsPerWorker?: number;
}

export interface PrefixTreeStats {
  /** (prompt, worker) pairs held whole. */
  prompts: number;
  nodes: number;
  holds: number;
  /** Characters of the labels, each stored once however many workers hold it. */
  chars: number;
  bytes: number;
}

/**
 * The path of a text through the tree, from the root down: at step i the text's first `depths[i]` characters are held
 * by every worker in `holders[i]`, and deeper steps have fewer holders (a worker holding a prefix holds its
 * prefixes). Valid until the tree next changes or walks.
 */
export class MatchPath {
  length = 0;
  readonly depths: number[] = [];
  readonly holders: Array<ReadonlyMap<string, unknown>> = [];
}

export class PrefixTree {
  private readonly root = new TreeNode("", undefined, false);
  private readonly tenants = new Map<string, Tenant<TreeNode>>();
  /** Every hold, least recently used first. */
  private readonly recency = new HoldList<TreeNode>(false);
  private readonly path = new MatchPath();
  private readonly inserted: TreeNode[] = [];
  private prompts = 0;
  private nodes = 0;
  private holds = 0;
  private chars = 0;
  private labelBytes = 0;

  constructor(private readonly options: PrefixTreeOptions) {}

  /** Walks `text` down the tree once (see MatchPath). */
  walk(text: string): MatchPath {
    const path = this.path;
    path.length = 0;
    let node = this.root;
    let pos = 0;
    while (pos < text.length) {
      const child = node.children?.get(text.charCodeAt(pos));
      if (!child) break;
      const whole = text.startsWith(child.label, pos);
      pos += whole ? child.label.length : sharedLength(child.label, text, pos);
      path.depths[path.length] = pos;
      path.holders[path.length] = child.tenants;
      path.length++;
      if (!whole) break;
      node = child;
    }
    return path;
  }

  /** For each worker holding some prefix of `text`, the length of the longest one. */
  matchLengths(text: string): Map<string, number> {
    const path = this.walk(text);
    const lengths = new Map<string, number>();
    for (let i = path.length - 1; i >= 0; i--) {
      for (const id of (path.holders[i] as ReadonlyMap<string, unknown>).keys()) {
        if (!lengths.has(id)) lengths.set(id, path.depths[i] as number);
      }
    }
    return lengths;
  }

  /** Records that `workerId` now holds `text` (and so all its prefixes), then evicts down to the bounds. */
  insert(text: string, workerId: string): void {
    if (text.length === 0) return;
    const path = this.inserted;
    path.length = 0;
    let node = this.root;
    let pos = 0;
    while (pos < text.length) {
      const child = node.children?.get(text.charCodeAt(pos));
      if (!child) {
        path.push(this.addLeaf(node, text.slice(pos)));
        break;
      }
      if (text.startsWith(child.label, pos)) {
        pos += child.label.length;
        node = child;
      } else {
        const shared = sharedLength(child.label, text, pos);
        node = this.split(child, shared);
        pos += shared;
      }
      path.push(node);
    }
    let tenant = this.tenants.get(workerId);
    if (!tenant) {
      tenant = new Tenant<TreeNode>(workerId);
      this.tenants.set(workerId, tenant);
    }
    // Deepest first: a worker's hold on a node is then always more recent than its holds below it, so the least
    // recently used hold (of anyone, or of one worker) is on a leaf of that worker's and can go alone.
    for (let i = path.length - 1; i >= 0; i--) this.touch(path[i] as TreeNode, tenant, i === path.length - 1);
    path.length = 0;
    this.evict(tenant);
  }

  /** Forgets every prefix `workerId` held, in the time of its own holds (no walk of the tree). */
  removeWorker(workerId: string): void {
    const tenant = this.tenants.get(workerId);
    while (tenant?.own.oldest) this.drop(tenant.own.oldest);
  }

  stats(): PrefixTreeStats {
    return { prompts: this.prompts, nodes: this.nodes, holds: this.holds, chars: this.chars, bytes: this.bytes };
  }

  private get bytes(): number {
    return this.labelBytes + this.nodes * NODE_BYTES + this.holds * HOLD_BYTES + this.tenants.size * TENANT_BYTES;
  }

  private addLeaf(parent: TreeNode, suffix: string): TreeNode {
    const label = flatCopy(suffix);
    const leaf = new TreeNode(label, parent, WIDE.test(label));
    parent.children ??= new Map();
    parent.children.set(label.charCodeAt(0), leaf);
    this.count(leaf, 1);
    return leaf;
  }

  /** Cuts `child`'s edge after `at` characters; the new node in between holds what `child` held. */
  private split(child: TreeNode, at: number): TreeNode {
    const parent = child.parent as TreeNode;
    const mid = new TreeNode(flatCopy(child.label.slice(0, at)), parent, child.wide);
    child.label = flatCopy(child.label.slice(at));
    child.parent = mid;
    mid.children = new Map([[child.label.charCodeAt(0), child]]);
    parent.children?.set(mid.label.charCodeAt(0), mid);
    this.nodes++;
    for (const below of child.tenants.values()) {
      // Just after the hold below it: newer than that one, older than the holds above it, as `insert` keeps them.
      const hold = below.tenant.add(mid, below);
      mid.tenants.set(below.tenant.id, hold);
      this.recency.insertAfter(hold, below);
      this.holds++;
    }
    return mid;
  }

  private touch(node: TreeNode, tenant: Tenant<TreeNode>, endsPrompt: boolean): void {
    let hold = node.tenants.get(tenant.id);
    if (hold) {
      tenant.own.remove(hold);
      this.recency.remove(hold);
      tenant.own.append(hold);
    } else {
      hold = tenant.add(node, undefined);
      tenant.chars += node.label.length;
      node.tenants.set(tenant.id, hold);
      this.holds++;
    }
    this.recency.append(hold);
    if (endsPrompt && !hold.endsPrompt) {
      hold.endsPrompt = true;
      this.prompts++;
    }
  }

  private evict(tenant: Tenant<TreeNode>): void {
    const perWorker = this.options.maxCharsPerWorker;
    if (perWorker !== undefined) while (tenant.chars > perWorker && tenant.own.oldest) this.drop(tenant.own.oldest);
    while (this.bytes > this.options.maxBytes && this.recency.oldest) this.drop(this.recency.oldest);
  }

  /** Removes one hold, which must be on a leaf of its worker's; a node nobody holds any more goes with it. */
  private drop(hold: Hold<TreeNode>): void {
    const { node, tenant } = hold;
    tenant.own.remove(hold);
    this.recency.remove(hold);
    node.tenants.delete(tenant.id);
    tenant.chars -= node.label.length;
    this.holds--;
    if (hold.endsPrompt) this.prompts--;
    if (tenant.own.oldest === undefined) this.tenants.delete(tenant.id);
    if (node.tenants.size > 0) return;
    // Nobody holds it, so nobody holds anything below it: it is a leaf.
    const parent = node.parent as TreeNode;
    parent.children?.delete(node.label.charCodeAt(0));
    if (parent.children?.size === 0) parent.children = undefined;
    node.parent = undefined;
    this.count(node, -1);
  }

  private count(node: TreeNode, sign: 1 | -1): void {
    this.nodes += sign;
    this.chars += sign * node.label.length;
    this.labelBytes += sign * node.label.length * (node.wide ? 2 : 1);
  }
}

/** How many characters of `label` match `text` from `from` on, knowing they do not all match. */
export function sharedLength(label: string, text: string, from: number): number {
  let n = 0;
  while (n + CHUNK <= label.length && text.startsWith(label.slice(n, n + CHUNK), from + n)) n += CHUNK;
  const end = Math.min(label.length, text.length - from);
  while (n < end && label.charCodeAt(n) === text.charCodeAt(from + n)) n++;
  return n;
}

/** A copy of `text` in a string of its own: V8's slices keep their whole parent string alive. */
function flatCopy(text: string): string {
  // structuredClone serialises the characters and builds a new flat string (measured: faster than concat tricks).
  return structuredClone(text);
}
