/**
 * The run detail's per-step line charts: one small SVG per metric logged at several steps
 * (the W&B chart), drawn with theme colours (no white box in JupyterLab Dark), the y axis
 * zoomed to the data and labelled with its range.
 */
import { h } from './dom';
import { formatNumber, linePath } from './model';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 260;
const HEIGHT = 70;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v));
  }
  return el;
}

/** A figure with the metric's line over its steps, or null with fewer than two points. */
export function stepChart(metric: string, points: { step: number; value: number | null }[]): HTMLElement | null {
  const geo = linePath(points, WIDTH, HEIGHT);
  if (!geo) {
    return null;
  }
  const label = `${metric} over steps ${geo.first} to ${geo.last}: from ${formatNumber(geo.min)} to ${formatNumber(geo.max)}`;
  const chart = svg('svg', {
    class: 'jp-MLOps-stepChart',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    width: '100%',
    role: 'img',
    'aria-label': label,
    preserveAspectRatio: 'none'
  });
  chart.append(
    svg('line', { class: 'jp-MLOps-axis', x1: 4, y1: HEIGHT - 4, x2: WIDTH - 4, y2: HEIGHT - 4 }),
    svg('path', { class: 'jp-MLOps-line', d: geo.d, fill: 'none', 'vector-effect': 'non-scaling-stroke' })
  );
  const points_ = points.filter(p => p.value !== null);
  const last = points_[points_.length - 1];
  return h(
    'figure',
    { class: 'jp-MLOps-figure', 'data-metric': metric },
    h(
      'figcaption',
      { class: 'jp-MLOps-figureTitle' },
      h('span', {}, metric),
      h('span', { class: 'jp-MLOps-dim' }, `last ${formatNumber(last?.value)} @ step ${last?.step ?? '—'}`)
    ),
    h(
      'div',
      { class: 'jp-MLOps-chartRow' },
      h(
        'div',
        { class: 'jp-MLOps-yAxis jp-MLOps-dim', 'aria-hidden': 'true' },
        h('span', {}, formatNumber(geo.max)),
        h('span', {}, formatNumber(geo.min))
      ),
      chart
    ),
    h('div', { class: 'jp-MLOps-xAxis jp-MLOps-dim', 'aria-hidden': 'true' }, h('span', {}, `step ${geo.first}`), h('span', {}, `${geo.last}`))
  );
}
