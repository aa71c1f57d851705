/**
 * A tiny DOM builder for the sidebar (no framework: the panel is small, and text goes in
 * through `textContent`, never as HTML).
 */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

/** `h('div', {class: 'x', onclick: fn}, 'text', child)` */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) {
      continue;
    }
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === 'class') {
      el.className = String(v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: HTMLElement, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) {
      append(el, c);
    } else if (c === null || c === undefined || c === false) {
      continue;
    } else if (typeof c === 'string' || typeof c === 'number') {
      el.appendChild(document.createTextNode(String(c)));
    } else {
      el.appendChild(c);
    }
  }
}

/**
 * Replace an element's children, unless the new ones would come out the same (the same HTML):
 * then the nodes shown stay, and with them what a redraw loses: a press of the mouse button
 * (the browser fires `click` only on the element the button went down on), hover, focus, a
 * `<select>`'s choice, the scroll position. The nodes kept keep their listeners, made from the
 * data of an earlier draw: a listener must use only what its element draws, or read the state
 * when it runs.
 */
export function updateChildren(el: HTMLElement, ...children: (Child | Child[])[]): void {
  const next = document.createElement('div');
  append(next, children);
  if (next.innerHTML !== el.innerHTML) {
    el.replaceChildren(...next.childNodes);
  }
}

/** Set an element's text, leaving its text node alone when it is the same. */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}
