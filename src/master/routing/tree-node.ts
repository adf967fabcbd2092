// A node of the prefix tree: its edge label, its children by first character and the holds of the workers believed
// to hold its prefix, each kept inline while there is one (the common case) and in a map when there are several.
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
  /**
   * Its children by their label's first character: a lone child inline (as most are along a conversation, which
   * saves a map and its memory reads at each step of a walk), several in a map.
   */
  private kids: TreeNode | Map<number, TreeNode> | undefined;

  constructor(
    /** The edge from the parent; a flat copy, never a slice of a prompt (a slice would keep the whole prompt alive). */
    public label: string,
    public parent: TreeNode | undefined,
    public wide: boolean,
  ) {}

  get isLeaf(): boolean {
    return this.kids === undefined;
  }

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

  child(code: number): TreeNode | undefined {
    const kids = this.kids;
    if (kids instanceof Map) return kids.get(code);
    return kids !== undefined && kids.label.charCodeAt(0) === code ? kids : undefined;
  }

  /** Adds `node`, or puts it in place of the child starting with the same character. */
  setChild(node: TreeNode): void {
    const kids = this.kids;
    const code = node.label.charCodeAt(0);
    if (kids instanceof Map) kids.set(code, node);
    else if (kids === undefined || kids.label.charCodeAt(0) === code) this.kids = node;
    else this.kids = new Map([[kids.label.charCodeAt(0), kids], [code, node]]);
  }

  removeChild(node: TreeNode): void {
    const kids = this.kids;
    if (kids === node) {
      this.kids = undefined;
    } else if (kids instanceof Map) {
      kids.delete(node.label.charCodeAt(0));
      if (kids.size === 1) this.kids = kids.values().next().value;
    }
  }
}
