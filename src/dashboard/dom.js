// The DOM helpers the dashboard needs: find by id, build an element, and keep elements from one redraw to the next.

export const $ = (id) => document.getElementById(id);

/** Creates an element; text children become text nodes, so nothing from the cluster is parsed as HTML. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "data") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/**
 * Makes `nodes` the children of `container`, in order, moving only those out of place: an element kept from the
 * last redraw stays where it is, so a button being pressed or holding the keyboard's focus is not lost.
 */
export function reconcile(container, nodes) {
  nodes.forEach((node, i) => {
    const here = container.childNodes[i] ?? null;
    if (here !== node) container.insertBefore(node, here);
  });
  while (container.childNodes.length > nodes.length) container.lastChild.remove();
}

/** Elements by id, each built again only when what it shows (its key) changed since the last redraw. */
export class KeptElements {
  #kept = new Map();
  #used = new Set();

  get(id, key, build) {
    this.#used.add(id);
    const kept = this.#kept.get(id);
    if (kept?.key === key) return kept.element;
    const element = build();
    this.#kept.set(id, { key, element });
    return element;
  }

  /** Forgets the elements not asked for since the last sweep (a model gone from the view). */
  sweep() {
    for (const id of this.#kept.keys()) if (!this.#used.has(id)) this.#kept.delete(id);
    this.#used.clear();
  }
}
