// An approximate prefix tree of the prompts each worker is believed to hold in its KV cache: a radix tree over the
// prompts' characters, whose nodes record which workers ("tenants") hold the prefix ending there, bounded in memory
// by evicting least recently used holds.
import { Edges } from "./edges.js";
import { type Hold, HoldList, Tenant } from "./holds.js";
import { flatCopy, holdsAt, sharedLength } from "./labels.js";
import { type Holders, TreeNode } from "./tree-node.js";

export type { Holders } from "./tree-node.js";

/**
 * Approximate bytes of a node (with its label's header), a hold, the map of a node held by several workers, and a
 * tenant, besides the labels' characters (measured on Node 20, 64-bit, no pointer compression).
 */
export const NODE_BYTES = 130;
export const HOLD_BYTES = 100;
export const SHARED_NODE_BYTES = 180;
export const TENANT_BYTES = 200;

// Labels holding a character outside Latin-1 take two bytes per character in V8.
const WIDE = /[^\u0000-\u00ff]/;

export interface PrefixTreeOptions {
  /** Bound on the tree's approximate bytes (labels, nodes, holds, tenants). */
  maxBytes: number;
  /** Bound on the characters any one worker is believed to hold (its KV cache's size, in characters), if any. */
  maxCharsPerWorker?: number;
}

export interface PrefixTreeStats {
  /** Prompts inserted for a worker that it still holds (each turn of a conversation counts; repeats do not). */
  prompts: number;
  nodes: number;
  holds: number;
  /** Characters of the labels, each stored once however many workers hold it. */
  chars: number;
  bytes: number;
}

/**
 * The path of a text through the tree, from the root down: at step i the text's first `depths[i]` characters are held
 * by every worker in `holders[i]`, and a deeper step has no holder a shallower one lacks (a worker holding a
 * prefix holds its prefixes). `sole[i]` is the worker holding step i when only one does (as most deep steps are: a
 * conversation's), read without touching the step's node. Valid until the tree next changes or walks.
 */
export class MatchPath {
  length = 0;
  readonly depths: number[] = [];
  readonly holders: Holders[] = [];
  readonly sole: (string | undefined)[] = [];
}

export class PrefixTree {
  private readonly edges = new Edges<TreeNode>();
  /** By node number: the worker holding the node when only one does (kept beside the edges, for the same reason). */
  private readonly soleHolders: (string | undefined)[] = [];
  private readonly root = this.newNode("", undefined, false);
  private readonly tenants = new Map<string, Tenant<TreeNode>>();
  /** Every hold, least recently used first. */
  private readonly recency = new HoldList<TreeNode>(false);
  private readonly path = new MatchPath();
  private readonly inserted: TreeNode[] = [];
  private prompts = 0;
  private nodes = 0;
  private holds = 0;
  /** Nodes held by several workers (each has a map of its holds). */
  private sharedNodes = 0;
  private chars = 0;
  private labelBytes = 0;

  constructor(private readonly options: PrefixTreeOptions) {}

  /**
   * Walks `text` down the tree once (see MatchPath). With `needed`, the last step's depth is exact only below
   * `needed`: a leaf's label is compared only until the text's first `needed` characters are known to match, since
   * nothing lies below it (a decision asks whether a step holds enough of the prompt, not how much more).
   */
  walk(text: string, needed = text.length): MatchPath {
    const path = this.path;
    path.length = 0;
    const edges = this.edges;
    let node = this.root.id;
    let pos = 0;
    // Node objects are not read on the way down (see edges.ts), only the hot arrays and the labels.
    while (pos < text.length) {
      const child = edges.child(node, text.charCodeAt(pos));
      if (child < 0) break;
      const label = edges.labels[child] as string;
      // A leaf's label (nothing lies below it) is compared only as far as `needed` asks.
      const span = pos + label.length > needed && edges.isLeaf(child) ? Math.max(needed - pos, 1) : label.length;
      const matched = holdsAt(text, span < label.length ? label.substring(0, span) : label, pos) ? span : sharedLength(label, text, pos);
      path.depths[path.length] = pos + matched;
      path.holders[path.length] = edges.nodes[child] as TreeNode;
      path.sole[path.length] = this.soleHolders[child];
      path.length++;
      if (matched < label.length) break;
      pos += matched;
      node = child;
    }
    return path;
  }

  /** For each worker holding some prefix of `text`, the length of the longest one. */
  matchLengths(text: string): Map<string, number> {
    const path = this.walk(text);
    const lengths = new Map<string, number>();
    for (let i = path.length - 1; i >= 0; i--) {
      for (const id of (path.holders[i] as Holders).holderIds()) {
        if (!lengths.has(id)) lengths.set(id, path.depths[i] as number);
      }
    }
    return lengths;
  }

  /** Records that `workerId` now holds `text` (and so all its prefixes), then evicts down to the bounds. */
  insert(text: string, workerId: string): void {
    if (text.length === 0) return;
    let tenant = this.tenants.get(workerId);
    if (!tenant) {
      tenant = new Tenant<TreeNode>(workerId);
      this.tenants.set(workerId, tenant);
    }
    const path = this.inserted;
    path.length = 0;
    let node = this.root;
    let pos = 0;
    let grew = false;
    while (pos < text.length) {
      const found = this.edges.child(node.id, text.charCodeAt(pos));
      if (found < 0) {
        if (this.ownsTail(node, tenant)) this.extend(node, text.slice(pos), tenant);
        else path.push(this.addLeaf(node, text.slice(pos)));
        grew = true;
        break;
      }
      const child = this.edges.nodes[found] as TreeNode;
      const label = this.labelOf(child);
      if (holdsAt(text, label, pos)) {
        pos += label.length;
        node = child;
      } else {
        const shared = sharedLength(label, text, pos);
        node = this.split(child, shared);
        pos += shared;
      }
      path.push(node);
    }
    // Deepest first: a worker's hold on a node is then always more recent than its holds below it, so the least
    // recently used hold (of anyone, or of one worker) is on a leaf of that worker's and can go alone.
    for (let i = path.length - 1; i >= 0; i--) {
      const fresh = this.touch(path[i] as TreeNode, tenant);
      if (i === path.length - 1 && (fresh || grew)) this.countPrompt(path[i] as TreeNode, tenant);
    }
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
    const overheads = this.nodes * NODE_BYTES + this.holds * HOLD_BYTES + this.sharedNodes * SHARED_NODE_BYTES;
    return this.labelBytes + overheads + this.tenants.size * TENANT_BYTES;
  }

  private newNode(label: string, parent: TreeNode | undefined, wide: boolean): TreeNode {
    const node = new TreeNode(this.edges.add(label), parent, wide);
    this.edges.nodes[node.id] = node;
    this.soleHolders[node.id] = undefined;
    return node;
  }

  private labelOf(node: TreeNode): string {
    return this.edges.labels[node.id] as string;
  }

  private addLeaf(parent: TreeNode, suffix: string): TreeNode {
    const label = flatCopy(suffix);
    const leaf = this.newNode(label, parent, WIDE.test(label));
    this.edges.attach(parent.id, leaf.id);
    this.nodes++;
    this.countLabel(leaf, 1);
    return leaf;
  }

  /**
   * Whether `node` is a leaf held by `tenant` alone: the end of a conversation only it holds, which its next turn
   * extends in place rather than hanging a node below it. A conversation is then one node from where it parts from
   * the others to its end, whatever its turns: a walk reads a few nodes instead of one per turn (the cold memory
   * reads are most of a decision's cost), and the worker holds the conversation as one unit, as its KV cache does.
   */
  private ownsTail(node: TreeNode, tenant: Tenant<TreeNode>): boolean {
    return node !== this.root && this.edges.isLeaf(node.id) && node.holdCount === 1 && node.holds(tenant.id);
  }

  private extend(leaf: TreeNode, suffix: string, tenant: Tenant<TreeNode>): void {
    this.countLabel(leaf, -1);
    this.edges.relabel(leaf.id, flatCopy(this.labelOf(leaf) + suffix));
    leaf.wide ||= WIDE.test(suffix);
    this.countLabel(leaf, 1);
    tenant.chars += suffix.length;
  }

  /** Cuts `child`'s edge after `at` characters; the new node in between holds what `child` held. */
  private split(child: TreeNode, at: number): TreeNode {
    const parent = child.parent as TreeNode;
    const label = this.labelOf(child);
    const mid = this.newNode(flatCopy(label.slice(0, at)), parent, child.wide);
    this.edges.detach(parent.id, child.id);
    this.edges.attach(parent.id, mid.id);
    this.edges.relabel(child.id, flatCopy(label.slice(at)));
    this.edges.attach(mid.id, child.id);
    child.parent = mid;
    this.nodes++;
    for (const below of child.allHolds()) {
      // Just after the hold below it: newer than that one, older than the holds above it, as `insert` keeps them.
      const hold = below.tenant.add(mid, below);
      if (mid.addHold(hold)) this.sharedNodes++;
      this.soleHolders[mid.id] = mid.soleHolder();
      this.recency.insertAfter(hold, below);
      this.holds++;
    }
    return mid;
  }

  /** Makes `tenant`'s hold on `node` its newest, creating it if need be; whether it was created. */
  private touch(node: TreeNode, tenant: Tenant<TreeNode>): boolean {
    const hold = node.holdOf(tenant.id);
    if (hold) {
      tenant.own.remove(hold);
      this.recency.remove(hold);
      tenant.own.append(hold);
      this.recency.append(hold);
      return false;
    }
    const created = tenant.add(node, undefined);
    tenant.chars += this.labelOf(node).length;
    if (node.addHold(created)) this.sharedNodes++;
    this.soleHolders[node.id] = node.soleHolder();
    this.recency.append(created);
    this.holds++;
    return true;
  }

  private countPrompt(node: TreeNode, tenant: Tenant<TreeNode>): void {
    (node.holdOf(tenant.id) as Hold<TreeNode>).prompts++;
    this.prompts++;
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
    if (node.removeHold(hold)) this.sharedNodes--;
    this.soleHolders[node.id] = node.soleHolder();
    tenant.chars -= this.labelOf(node).length;
    this.holds--;
    this.prompts -= hold.prompts;
    if (tenant.own.oldest === undefined) this.tenants.delete(tenant.id);
    if (node.holdCount > 0) return;
    // Nobody holds it, so nobody holds anything below it: it is a leaf.
    const parent = node.parent as TreeNode;
    this.nodes--;
    this.countLabel(node, -1);
    this.edges.detach(parent.id, node.id);
    this.edges.remove(node.id);
    node.parent = undefined;
  }

  private countLabel(node: TreeNode, sign: 1 | -1): void {
    const length = this.labelOf(node).length;
    this.chars += sign * length;
    this.labelBytes += sign * length * (node.wide ? 2 : 1);
  }
}
