// A node of the prefix tree: the holds of the workers believed to hold its prefix, each kept inline while there is one
// (the common case) and in a map when there are several. Its label and children are in the tree's Edges (edges.ts).
import type { Hold } from "./holds.js";

/** The workers believed to hold one step of a path's prefix. */
export interface Holders {
  holds(workerId: string): boolean;
  holderIds(): Iterable<string>;
}

export class TreeNode implements Holders {
  /**
   * The holds of the workers believed to hold this node's whole prefix: a lone one inline (as most are: the end of
   * a conversation), several in a map by worker id.
   */
  private tenancy: Hold<TreeNode> | Map<string, Hold<TreeNode>> | undefined;
  constructor(
    /** Its number in the tree's Edges, which keep its label and its children. */
    readonly id: number,
    public parent: TreeNode | undefined,
    /** Whether its label has a character outside Latin-1 (two bytes each in V8). */
    public wide: boolean,
  ) {}

  get holdCount(): number {
    const tenancy = this.tenancy;
    return tenancy instanceof Map ? tenancy.size : tenancy === undefined ? 0 : 1;
  }

  holdOf(workerId: string): Hold<TreeNode> | undefined {
    const tenancy = this.tenancy;
    if (tenancy instanceof Map) return tenancy.get(workerId);
    return tenancy !== undefined && tenancy.tenant.id === workerId ? tenancy : undefined;
  }

  holds(workerId: string): boolean {
    return this.holdOf(workerId) !== undefined;
  }

  /** The worker holding this node when only one does. */
  soleHolder(): string | undefined {
    const tenancy = this.tenancy;
    return tenancy instanceof Map ? undefined : tenancy?.tenant.id;
  }

  holderIds(): Iterable<string> {
    const tenancy = this.tenancy;
    if (tenancy instanceof Map) return tenancy.keys();
    return tenancy === undefined ? [] : [tenancy.tenant.id];
  }

  allHolds(): Iterable<Hold<TreeNode>> {
    const tenancy = this.tenancy;
    if (tenancy instanceof Map) return [...tenancy.values()];
    return tenancy === undefined ? [] : [tenancy];
  }

  /** Adds a hold; whether the node took a map for its holds. */
  addHold(hold: Hold<TreeNode>): boolean {
    const tenancy = this.tenancy;
    if (tenancy instanceof Map) tenancy.set(hold.tenant.id, hold);
    else if (tenancy === undefined) this.tenancy = hold;
    else this.tenancy = new Map([[tenancy.tenant.id, tenancy], [hold.tenant.id, hold]]);
    return tenancy !== undefined && !(tenancy instanceof Map);
  }

  /** Removes a hold; whether the node gave up its map. */
  removeHold(hold: Hold<TreeNode>): boolean {
    const tenancy = this.tenancy;
    if (tenancy === hold) {
      this.tenancy = undefined;
    } else if (tenancy instanceof Map) {
      tenancy.delete(hold.tenant.id);
      if (tenancy.size === 1) {
        this.tenancy = tenancy.values().next().value;
        return true;
      }
    }
    return false;
  }
}
