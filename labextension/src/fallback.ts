/**
 * Notebooks that reopen: a widget view whose model is gone shows the output's static view.
 *
 * A panel's output carries a widget view (`application/vnd.jupyter.widget-view+json`) and a
 * static HTML snapshot (`text/html`). JupyterLab picks the widget view for trusted outputs,
 * and after a server or kernel restart the widget's model no longer exists, so
 * @jupyter-widgets/jupyterlab-manager's renderer writes "Error displaying widget: model not
 * found" (or "Loading widget..." forever when no kernel starts). This module decorates that
 * renderer: while it holds no live widget view, it shows the snapshot with a note; as soon as
 * a live view appears (the cell ran again, or the widget state was restored) it steps aside.
 *
 * The renderer is decorated, not replaced: jupyterlab-manager hands its manager to renderers
 * it finds by `instanceof` among a notebook's outputs, and the notebook's own rendermime gets
 * a fresh widget factory from jupyterlab-manager once the kernel is ready, so the factory is
 * wrapped whenever it is (re)added to a registry.
 */
import { IRenderMimeRegistry, renderHTML } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Panel } from '@lumino/widgets';

export const WIDGET_VIEW_MIMETYPE = 'application/vnd.jupyter.widget-view+json';
export const STATIC_NOTE =
  'Static view saved with the notebook. The live panel comes back when you run this cell.';
/** How long a widget view may stay "Loading widget..." before the static view shows (ms). */
export const LOADING_GRACE_MS = 800;

const WRAPPED = Symbol.for('mlops-jupyter:static-fallback');
type Marked = { [WRAPPED]?: boolean };

/** Wrap the widget-view factory of `registry`, now and whenever it is added again. */
export function installStaticFallback(registry: IRenderMimeRegistry): void {
  const marked = registry as IRenderMimeRegistry & Marked;
  if (!marked[WRAPPED]) {
    marked[WRAPPED] = true;
    const add = registry.addFactory.bind(registry);
    registry.addFactory = (factory: IRenderMime.IRendererFactory, rank?: number) => add(wrapFactory(factory), rank);
  }
  const current = registry.getFactory(WIDGET_VIEW_MIMETYPE);
  if (current && !(current as Marked)[WRAPPED]) {
    registry.addFactory(current, registry.getRank(WIDGET_VIEW_MIMETYPE));
  }
}

function wrapFactory(factory: IRenderMime.IRendererFactory): IRenderMime.IRendererFactory {
  if (!factory.mimeTypes.includes(WIDGET_VIEW_MIMETYPE) || (factory as Marked)[WRAPPED]) {
    return factory;
  }
  const wrapped: IRenderMime.IRendererFactory & Marked = {
    ...factory,
    createRenderer: options => withStaticFallback(factory.createRenderer(options), options)
  };
  wrapped[WRAPPED] = true;
  return wrapped;
}

/** The output's static HTML, if it has one. */
export function staticHTML(data: Record<string, unknown>): string | null {
  const html = data['text/html'];
  if (typeof html === 'string') {
    return html;
  }
  if (Array.isArray(html) && html.every(x => typeof x === 'string')) {
    return html.join('');
  }
  return null;
}

function liveWidgets(renderer: IRenderMime.IRenderer): number {
  return (renderer as unknown as Panel).widgets?.length ?? 0;
}

/** Decorate a widget-view renderer so it shows the static view while it has no live view. */
function withStaticFallback(
  renderer: IRenderMime.IRenderer,
  options: IRenderMime.IRendererOptions
): IRenderMime.IRenderer {
  const render = renderer.renderModel.bind(renderer);
  let model: IRenderMime.IMimeModel | null = null;
  let shown: HTMLElement | null = null;
  let timer: number | null = null;

  const showStatic = (): void => {
    if (!model || renderer.isDisposed || renderer.isHidden || liveWidgets(renderer) > 0) {
      return;
    }
    const html = staticHTML(model.data as Record<string, unknown>);
    if (html === null) {
      return;
    }
    if (shown && shown.parentNode === renderer.node && renderer.node.childNodes.length === 1) {
      return;
    }
    if (!shown) {
      const host = document.createElement('div');
      host.className = 'jp-MLOps-staticBody';
      const note = document.createElement('div');
      note.className = 'jp-MLOps-staticNote';
      note.setAttribute('role', 'note');
      note.textContent = STATIC_NOTE;
      shown = document.createElement('div');
      shown.className = 'jp-MLOps-staticFallback';
      // the panels' own snapshot says it already (and so it does in nbviewer, GitHub, VS Code)
      shown.append(...(html.includes('mlops-static-note') ? [] : [note]), host);
      void renderHTML({
        host,
        source: html,
        trusted: model.trusted,
        sanitizer: options.sanitizer,
        resolver: options.resolver,
        linkHandler: options.linkHandler,
        shouldTypeset: false,
        latexTypesetter: options.latexTypesetter
      });
    }
    renderer.node.replaceChildren(shown);
    renderer.removeClass('jupyter-widgets');
  };

  /** Called on every change of the renderer's children: live view, error text, loading text. */
  const sync = (): void => {
    if (liveWidgets(renderer) > 0) {
      shown?.remove();
      return;
    }
    const text = renderer.node.textContent ?? '';
    if (shown?.parentNode !== renderer.node && text.startsWith('Error displaying widget')) {
      showStatic();
    }
  };
  new MutationObserver(sync).observe(renderer.node, { childList: true });
  new MutationObserver(() => nameControls(renderer.node)).observe(renderer.node, { childList: true, subtree: true });

  renderer.renderModel = (m: IRenderMime.IMimeModel): Promise<void> => {
    model = m;
    if (timer !== null) {
      window.clearTimeout(timer);
    }
    // no live view soon (no kernel, or its widget state is not restored yet): show the snapshot
    timer = window.setTimeout(() => {
      timer = null;
      showStatic();
    }, LOADING_GRACE_MS);
    return render(m).then(() => {
      if (liveWidgets(renderer) === 0 && !(renderer.node.textContent ?? '').startsWith('Loading')) {
        showStatic();
      }
    });
  };
  renderer.disposed.connect(() => {
    if (timer !== null) {
      window.clearTimeout(timer);
    }
  });
  return renderer;
}

/**
 * Give ipywidgets' sliders and selects an accessible name: ipywidgets 8 draws a slider's
 * handle (`role="slider"`) without `aria-label`, and a select without a description has no
 * name at all. The name is the widget's description label, else its tooltip.
 */
export function nameControls(root: HTMLElement): void {
  const unnamed = root.querySelectorAll<HTMLElement>(
    '[role="slider"]:not([aria-label]):not([aria-labelledby]), select:not([aria-label]):not([aria-labelledby])'
  );
  for (const el of unnamed) {
    if (el.tagName === 'SELECT' && el.id && root.querySelector(`label[for="${CSS.escape(el.id)}"]`)?.textContent?.trim()) {
      continue;
    }
    const box = el.closest<HTMLElement>('.widget-inline-hbox, .widget-slider, .widget-dropdown, .widget-select');
    const label = box?.querySelector('.widget-label')?.textContent?.trim() || box?.title || el.title;
    if (label) {
      el.setAttribute('aria-label', label);
    }
  }
}
