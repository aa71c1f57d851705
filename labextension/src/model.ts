/**
 * The sidebar's data types (what the REST API returns) and the pure functions that turn
 * them into what the panel shows. No JupyterLab import here: `node --test` runs the
 * compiled module directly (test/model.test.mjs).
 */

// -- API shapes ------------------------------------------------------------------------

export interface IRun {
  run_id: string;
  run_name: string | null;
  experiment_id: string;
  experiment_name: string | null;
  status: string;
  start_time: string | null;
  end_time: string | null;
  duration: number | null;
  params: Record<string, string>;
  metrics: Record<string, number | null>;
  tags: Record<string, string>;
  parent_run_id?: string | null;
  /** Its metric names, the key one first (the server's `runs_query.key_metrics`). */
  key_metrics?: string[];
}

export interface IRunSummary {
  run_id: string;
  run_name: string | null;
  status: string;
  start_time: string | null;
  end_time: string | null;
  duration: number | null;
  metrics: Record<string, number | null>;
}

export interface IExperiment {
  experiment_id: string;
  name: string;
  /** `registry`: the runs that only hold registered model versions. */
  kind: 'experiment' | 'registry';
  created_at: string | null;
  updated_at: string | null;
  run_count: number;
  run_count_complete: boolean;
  last_run: IRunSummary | null;
  last_run_at: string | null;
  /** The metric runs are ranked by (experiment tag `mlops.sort_metric`), if set. */
  sort_metric?: string | null;
}

/** A run's detail: per-step history of metrics logged at several steps, its cell. */
export interface IRunDetail {
  run_id: string;
  experiment_id: string;
  history: Record<string, { step: number; value: number | null }[]>;
  cell: {
    cell_id: string | null;
    execution_count: string | null;
    notebook: string | null;
    source: string | null;
  };
}

export interface IVersionSummary {
  version: string;
  created_at: string | null;
  parent: string | null;
  aliases: string[];
  run_id: string | null;
  sha256: string | null;
  has_reference?: boolean;
}

export type Traffic = Record<string, number>;

export interface IModel {
  model_id: string;
  version_count: number;
  latest: string | null;
  live: Record<string, string | null>;
  versions: IVersionSummary[];
  edges: [string, string][];
  deployments: {
    environment: string;
    status: string;
    traffic: Traffic;
    version: string | null;
  }[];
}

export type HealthState =
  | 'serving'
  | 'not_serving'
  | 'failed'
  | 'down'
  | 'unreachable';

export interface IHealth {
  state: HealthState;
  message: string;
  live_traffic?: Traffic;
}

export interface IDeployment {
  deployment_id: string;
  model_id: string;
  environment: string;
  status: string;
  reason: string | null;
  endpoint: string;
  version: string | null;
  traffic: Traffic;
  versions: string[];
  config: Record<string, unknown>;
  target: string;
  revision: number | null;
  previous_traffic: Traffic[];
  created_at: string | null;
  updated_at: string | null;
  health: IHealth;
  rollback_to: string | null;
}

export interface IGateway {
  running: boolean;
  url?: string;
  pid?: number;
  uptime_s?: number;
  deployments?: number;
  state?: string;
}

export interface IDrift {
  model_id: string;
  drift_detected: boolean;
  drift_score: number | null;
  threshold?: number;
  /** `ok`, or why nothing was compared (`no_data`, `no_features`, `no_reference`, ...). */
  status?: string;
  reason?: string | null;
  n_current?: number;
  [key: string]: unknown;
}

export interface IAlert {
  alert_id: string;
  model_id: string;
  condition: string;
  severity?: string;
  state: string;
  fired_at?: string | null;
  [key: string]: unknown;
}

/** `1 run`, `3 runs`, `1 alert`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

// -- numbers and times -------------------------------------------------------------------

/** A metric value as a short string: integers as they are, others with 4 significant digits. */
export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e9) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

/** A duration in seconds as `850 ms`, `12.3 s`, `4 min 5 s` or `2 h 3 min`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '—';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${Number(seconds.toPrecision(3))} s`;
  }
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    return `${m} min ${Math.round(seconds - m * 60)} s`;
  }
  const h = Math.floor(seconds / 3600);
  return `${h} h ${Math.round((seconds - h * 3600) / 60)} min`;
}

/** How long ago an ISO time was: `just now`, `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`. */
export function formatRelative(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) {
    return '—';
  }
  const t = Date.parse(iso);
  if (Number.isNaN(t)) {
    return '—';
  }
  const s = Math.round((now - t) / 1000);
  if (s < 5) {
    return 'just now';
  }
  if (s < 60) {
    return `${s} s ago`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ago`;
  }
  return `${Math.floor(s / 86400)} d ago`;
}

/**
 * The experiment to show runs of: `current` if it still exists, else the most recently
 * active user experiment (the registry's own experiment only when there is no other).
 */
export function pickExperiment(experiments: Pick<IExperiment, 'name' | 'kind'>[], current: string | null): string | null {
  if (current !== null && experiments.some(e => e.name === current)) {
    return current;
  }
  const first = experiments.find(e => e.kind !== 'registry') ?? experiments[0];
  return first ? first.name : null;
}

// -- runs ------------------------------------------------------------------------------

/**
 * The `n` metrics worth showing in a run's row, as `[name, formatted value]`: in the order of
 * `order`, the run's `key_metrics` from the server (the experiment's sort metric first, then
 * well-known quality metrics, cell autolog's bookkeeping last: the rule the ComparisonPanel
 * uses too, `runs_query.key_metrics` in Python), then any others by name.
 */
export function keyMetrics(
  metrics: Record<string, number | null> | null | undefined,
  n = 3,
  order: readonly string[] | null | undefined = null
): [string, string][] {
  const values = metrics ?? {};
  const ranked = (order ?? []).filter(k => k in values);
  const rest = Object.keys(values)
    .filter(k => !ranked.includes(k))
    .sort((a, b) => a.localeCompare(b));
  return [...new Set([...ranked, ...rest])].slice(0, Math.max(0, n)).map(k => [k, formatNumber(values[k])]);
}

/** A CSS modifier for a run or deployment status. */
export function statusLevel(status: string | null | undefined): 'ok' | 'warn' | 'error' | 'info' {
  switch ((status ?? '').toLowerCase()) {
    case 'completed':
    case 'finished':
    case 'deployed':
    case 'serving':
      return 'ok';
    case 'running':
    case 'scheduled':
    case 'pending':
      return 'info';
    case 'failed':
    case 'killed':
    case 'firing':
      return 'error';
    default:
      return 'warn';
  }
}

/** Runs' params and metrics as sorted `[key, value]` rows for the details view. */
export function detailRows(run: IRun): { params: [string, string][]; metrics: [string, string][] } {
  const params = Object.entries(run.params ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const metrics = Object.entries(run.metrics ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]): [string, string] => [k, formatNumber(v)]);
  return { params, metrics };
}

// -- versions, lineage and traffic -----------------------------------------------------

/** Compare semantic versions (`1.10.0` after `1.9.0`); non-semver strings sort after, by text. */
export function compareSemver(a: string, b: string): number {
  const pa = /^(\d+)\.(\d+)\.(\d+)$/.exec(a);
  const pb = /^(\d+)\.(\d+)\.(\d+)$/.exec(b);
  if (pa && pb) {
    for (let i = 1; i <= 3; i++) {
      const d = Number(pa[i]) - Number(pb[i]);
      if (d !== 0) {
        return d;
      }
    }
    return 0;
  }
  if (pa) {
    return -1;
  }
  if (pb) {
    return 1;
  }
  return a.localeCompare(b);
}

/** A traffic table as segments sorted by version, for the split bar. */
export function trafficSegments(traffic: Traffic | null | undefined): { version: string; percent: number }[] {
  return Object.entries(traffic ?? {})
    .filter(([, p]) => p > 0)
    .sort(([a], [b]) => compareSemver(a, b))
    .map(([version, percent]) => ({ version, percent }));
}

/** `1.0.0 50% · 1.1.0 50%`, or `no traffic`. */
export function trafficLabel(traffic: Traffic | null | undefined): string {
  const segs = trafficSegments(traffic);
  return segs.length ? segs.map(s => `${s.version} ${s.percent}%`).join(' · ') : 'no traffic';
}

/** Where a deployment runs, shown next to its environment: `target: ray` (local, ray or kserve). */
export function targetLabel(dep: Pick<IDeployment, 'target'> | null | undefined): string {
  return dep?.target ? `target: ${dep.target}` : 'target: local';
}

/**
 * Lineage as chains from a root version to each leaf, following `parent` links:
 * `[['1.0.0', '1.1.0', '1.2.0']]` for a straight line of versions.
 */
export function lineageChains(versions: { version: string; parent: string | null }[]): string[][] {
  const known = new Set(versions.map(v => v.version));
  const children = new Map<string, string[]>();
  const roots: string[] = [];
  for (const v of versions) {
    if (v.parent && known.has(v.parent)) {
      const list = children.get(v.parent) ?? [];
      list.push(v.version);
      children.set(v.parent, list);
    } else {
      roots.push(v.version);
    }
  }
  const chains: string[][] = [];
  const walk = (v: string, path: string[]): void => {
    const next = [...path, v];
    const kids = (children.get(v) ?? []).sort(compareSemver);
    if (!kids.length) {
      chains.push(next);
      return;
    }
    for (const k of kids) {
      walk(k, next);
    }
  };
  for (const r of roots.sort(compareSemver)) {
    walk(r, []);
  }
  return chains;
}

/** Versions that Promote can send 100 % of a deployment's traffic to (all but one at 100 %). */
export function promoteCandidates(dep: Pick<IDeployment, 'traffic'>, versions: string[]): string[] {
  const alone = Object.entries(dep.traffic ?? {}).find(([, p]) => p === 100)?.[0];
  return [...new Set(versions)].filter(v => v !== alone).sort((a, b) => compareSemver(b, a));
}

// -- health, drift and alerts ----------------------------------------------------------

export interface IBadge {
  label: string;
  level: 'ok' | 'warn' | 'error' | 'info';
  title: string;
}

/** The health badge of a deployment. */
export function healthBadge(health: IHealth | null | undefined): IBadge {
  const message = health?.message ?? '';
  switch (health?.state) {
    case 'serving':
      return { label: 'serving', level: 'ok', title: message };
    case 'not_serving':
      return { label: 'not serving', level: 'error', title: message };
    case 'failed':
      return { label: 'failed', level: 'error', title: message };
    case 'down':
      return { label: 'gateway stopped', level: 'warn', title: message };
    case 'unreachable':
      return { label: 'unreachable', level: 'error', title: message };
    default:
      return { label: 'unknown', level: 'warn', title: message };
  }
}

/** The drift badge of a model. */
export function driftBadge(drift: IDrift): IBadge {
  if (drift.status && drift.status !== 'ok') {
    return { label: drift.status.replace(/_/g, ' '), level: 'info', title: drift.reason ?? drift.status };
  }
  const score = formatNumber(drift.drift_score);
  const threshold = drift.threshold !== undefined ? formatNumber(drift.threshold) : null;
  const vs = threshold !== null ? ` (threshold ${threshold})` : '';
  const n = drift.n_current !== undefined ? `, ${drift.n_current} recent predictions` : '';
  return drift.drift_detected
    ? { label: `drift ${score}`, level: 'error', title: `Drift detected: score ${score}${vs}${n}` }
    : { label: `no drift ${score}`, level: 'ok', title: `No drift: score ${score}${vs}${n}` };
}

/** Alerts that are firing (then pending), most severe first. */
export function activeAlerts(alerts: IAlert[]): IAlert[] {
  const stateRank: Record<string, number> = { firing: 0, pending: 1 };
  const sevRank: Record<string, number> = { critical: 0, error: 1, warning: 2, info: 3 };
  return alerts
    .filter(a => a.state in stateRank)
    .sort(
      (a, b) =>
        stateRank[a.state] - stateRank[b.state] ||
        (sevRank[a.severity ?? ''] ?? 9) - (sevRank[b.severity ?? ''] ?? 9) ||
        a.model_id.localeCompare(b.model_id)
    );
}

/** Model ids with at least one deployment, sorted (the Drift section's rows). */
export function deployedModels(deps: Pick<IDeployment, 'model_id'>[]): string[] {
  return [...new Set(deps.map(d => d.model_id))].sort();
}

// -- sessions, cells and links -------------------------------------------------------------

/** A notebook session's parent run (cell autolog), shown as the session, not as a run. */
export function isSession(run: Pick<IRun, 'tags'>): boolean {
  return (run.tags ?? {})['mlops.kind'] === 'session';
}

/** The execution count of the cell that made a run (`cell [6]`), or null. */
export function cellLabel(run: Pick<IRun, 'tags'>): string | null {
  const n = (run.tags ?? {})['mlops.execution_count'];
  return n ? `cell [${n}]` : null;
}

/** MLflow UI pages (hash routes of MLflow 2 and 3). No UI known: no links. */
export const mlflowLinks = {
  experiment: (ui: string | null, experimentId: string): string | null =>
    ui ? `${ui.replace(/\/+$/, '')}/#/experiments/${encodeURIComponent(experimentId)}` : null,
  run: (ui: string | null, experimentId: string, runId: string): string | null =>
    ui
      ? `${ui.replace(/\/+$/, '')}/#/experiments/${encodeURIComponent(experimentId)}/runs/${encodeURIComponent(runId)}`
      : null,
  model: (ui: string | null, tenant: string, modelId: string): string | null =>
    ui ? `${ui.replace(/\/+$/, '')}/#/models/${encodeURIComponent(`${tenant}.${modelId}`)}` : null
};

/**
 * A line chart's geometry: the SVG path of `points` scaled into `width` x `height` (with
 * `pad` px inside), and the y range it shows (zoomed to the data, not to 0).
 */
export function linePath(
  points: { step: number; value: number | null }[],
  width: number,
  height: number,
  pad = 4
): { d: string; min: number; max: number; first: number; last: number } | null {
  const pts = points.filter((p): p is { step: number; value: number } => p.value !== null && Number.isFinite(p.value));
  if (pts.length < 2) {
    return null;
  }
  const xs = pts.map(p => p.step);
  const ys = pts.map(p => p.value);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y: number) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  const d = pts.map((p, i) => `${i ? 'L' : 'M'}${sx(p.step).toFixed(1)},${sy(p.value).toFixed(1)}`).join(' ');
  return { d, min: y0, max: y1, first: x0, last: x1 };
}

// -- the kernel and the status bar ---------------------------------------------------------

/** The kernel's MLOps state: its tenant (`%mlops init --tenant`), cell autolog, the MLflow UI. */
export interface IKernelState {
  /** `$MLOPS_TENANT` of the kernel (`%mlops init` sets it), or null when the kernel never chose one. */
  tenant: string | null;
  autolog: 'on' | 'off';
  /** The MLflow UI this kernel started or knows (`%mlops ui`), or null. */
  mlflow_ui: string | null;
}

/** Parse what the kernel answered for `KERNEL_STATE_EXPRESSION` (a repr of a JSON string). */
export function parseKernelState(text: string): IKernelState | null {
  let raw = text.trim();
  // the text/plain of a str is its repr: 'json' (single quotes, with escapes)
  if (raw.length >= 2 && (raw[0] === "'" || raw[0] === '"') && raw[raw.length - 1] === raw[0]) {
    raw = raw.slice(1, -1).replace(/\\'/g, "'").replace(/\\\\/g, '\\');
  }
  try {
    const data = JSON.parse(raw);
    if (!data || typeof data !== 'object') {
      return null;
    }
    return {
      tenant: typeof data.tenant === 'string' && data.tenant ? data.tenant : null,
      autolog: data.autolog === 'on' ? 'on' : 'off',
      mlflow_ui: typeof data.mlflow_ui === 'string' && data.mlflow_ui ? data.mlflow_ui : null
    };
  } catch {
    return null;
  }
}

/**
 * Code that gives a kernel JupyterLab's chart theme (altair cannot read CSS variables). It
 * sets `$MLOPS_CHART_THEME` in any kernel, so one that loads mlops_jupyter later draws its
 * first panel in that theme; in a kernel whose panels are already loaded it calls
 * `set_theme`, which redraws their charts when the theme changed. It imports nothing.
 */
export function chartThemeCode(light: boolean): string {
  const name = light ? 'light' : 'dark';
  const module = 'mlops_jupyter.notebook.widgets.theme';
  // one expression over its own arguments: the notebook's namespace is left alone
  return (
    `(lambda os, sys: (os.environ.__setitem__('MLOPS_CHART_THEME', '${name}'), ` +
    `sys.modules['${module}'].set_theme('${name}') if '${module}' in sys.modules else None))` +
    "(__import__('os'), __import__('sys'))"
  );
}

/** `autolog on · gateway running (2 deployments)`. */
export function statusText(autolog: 'on' | 'off' | null, gateway: IGateway | null | undefined): string {
  const a = autolog === null ? 'autolog —' : `autolog ${autolog}`;
  let g = 'gateway —';
  if (gateway) {
    g = gateway.running
      ? `gateway running${gateway.deployments !== undefined ? ` (${gateway.deployments})` : ''}`
      : 'gateway stopped';
  }
  return `MLOps: ${a} · ${g}`;
}


/**
 * How an alert's action was delivered, as the server extension words it (`delivery_text`,
 * the line the DriftPanel shows too): `rolled back iris production to 1.0.0 (1 attempt)`,
 * `pager retrying: attempt 1 failed: timed out after 10 s`. Empty when the entry records
 * no action delivery.
 */
export function deliveryText(alert: IAlert): string {
  return typeof alert.delivery_text === 'string' ? alert.delivery_text : '';
}
