/**
 * The MLOps sidebar: Experiments, Models, Deployments and Drift, fed by the REST API.
 *
 * It refreshes on demand (the refresh button, the `mlops:refresh` command) and every
 * `refreshInterval` ms while it is visible; background refreshes do not count as user
 * activity for Jupyter's idle culling. Errors show as notifications (a repeated error of a
 * background refresh once, until it goes away) and in the section they concern.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, setChildren } from './dom';
import {
  activeAlerts,
  deployedModels,
  detailRows,
  driftBadge,
  formatDuration,
  formatRelative,
  healthBadge,
  IAlert,
  IBadge,
  IDeployment,
  IDrift,
  IExperiment,
  IGateway,
  IModel,
  IRun,
  keyMetrics,
  lineageChains,
  pickExperiment,
  plural,
  promoteCandidates,
  statusLevel,
  trafficLabel,
  trafficSegments
} from './model';
import { MLOpsAPIError, MLOpsError, postAPI, requestAPI } from './request';

const RUN_LIMIT = 20;
/**
 * Background refreshes check drift at most this often (ms): a drift check reads the
 * prediction log and, in the core, evaluates the model's alert rules.
 */
const DRIFT_INTERVAL = 60000;

interface IInfo {
  tenant: string;
  version: string;
}

interface IChangeResult {
  action: string;
  deployment: IDeployment;
  alias: { alias: string; version: string } | null;
}

type DriftState = { drift: IDrift } | { error: MLOpsAPIError | MLOpsError };

/** Show an error as a notification. */
export function notifyError(error: unknown, context = ''): void {
  const message = error instanceof Error ? error.message : String(error);
  Notification.error(context ? `${context}: ${message}` : message, { autoClose: 10000 });
}

function badge(b: IBadge, extraClass = ''): HTMLElement {
  return h('span', { class: `jp-MLOps-badge jp-MLOps-badge-${b.level} ${extraClass}`, title: b.title }, b.label);
}

function section(id: string, title: string): { root: HTMLElement; body: HTMLElement; meta: HTMLElement } {
  const meta = h('span', { class: 'jp-MLOps-sectionMeta' });
  const body = h('div', { class: 'jp-MLOps-sectionBody' }, h('div', { class: 'jp-MLOps-empty' }, 'Loading…'));
  const root = h(
    'details',
    { class: 'jp-MLOps-section', open: true, 'data-section': id },
    h('summary', { class: 'jp-MLOps-sectionTitle' }, h('span', {}, title), meta),
    body
  );
  return { root, body, meta };
}

export class MLOpsPanel extends Widget {
  /** Milliseconds between background refreshes while the panel is visible. */
  refreshInterval = 10000;

  private info: IInfo | null = null;
  private experiments: IExperiment[] = [];
  private selectedExperiment: string | null = null;
  private runs: IRun[] = [];
  private openRun: string | null = null;
  private models: IModel[] = [];
  private openModel: string | null = null;
  private deployments: IDeployment[] = [];
  private gateway: IGateway | null = null;
  private drift = new Map<string, DriftState>();
  private alerts: IAlert[] | MLOpsError | null = null;
  private timer: number | null = null;
  private inFlight: Promise<void> | null = null;
  private busy = 0;
  private shownErrors = new Set<string>();
  private lastRefresh: Date | null = null;
  private lastDrift = 0;

  private readonly header: HTMLElement;
  private readonly status: HTMLElement;
  private readonly exp = section('experiments', 'Experiments');
  private readonly mod = section('models', 'Models');
  private readonly dep = section('deployments', 'Deployments');
  private readonly dri = section('drift', 'Drift');

  constructor() {
    super();
    this.addClass('jp-MLOps-panel');
    this.status = h('span', { class: 'jp-MLOps-status' }, '');
    const refresh = h(
      'button',
      {
        class: 'jp-MLOps-button jp-MLOps-refresh',
        title: 'Refresh now',
        'aria-label': 'Refresh',
        onclick: () => void this.refresh()
      },
      '⟳ Refresh'
    );
    this.header = h(
      'div',
      { class: 'jp-MLOps-header' },
      h('div', { class: 'jp-MLOps-headerRow' }, h('span', { class: 'jp-MLOps-title' }, 'MLOps'), refresh),
      this.status
    );
    this.node.append(this.header, this.exp.root, this.mod.root, this.dep.root, this.dri.root);
  }

  // -- refresh ---------------------------------------------------------------------------

  /** Reload everything. Concurrent calls share one refresh. */
  refresh(background = false): Promise<void> {
    if (!this.inFlight) {
      this.inFlight = this.load(background).finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  private async load(background: boolean): Promise<void> {
    this.setStatus(`${this.info ? `tenant ${this.info.tenant} · ` : ''}refreshing…`);
    const get = <T>(path: string, query?: Record<string, string | number | undefined>) =>
      requestAPI<T>(path, { query, background });
    const [info, exps, models, deps, alerts] = await Promise.allSettled([
      this.info ? Promise.resolve(this.info) : get<IInfo>('info'),
      get<{ experiments: IExperiment[] }>('experiments'),
      get<{ models: IModel[] }>('models'),
      get<{ deployments: IDeployment[]; gateway: IGateway }>('deployments'),
      get<{ alerts: IAlert[] }>('alerts')
    ]);
    const errors: unknown[] = [];
    if (info.status === 'fulfilled') {
      this.info = info.value;
    }
    if (exps.status === 'fulfilled') {
      this.experiments = exps.value.experiments;
      this.selectedExperiment = pickExperiment(this.experiments, this.selectedExperiment);
    } else {
      errors.push(exps.reason);
    }
    if (models.status === 'fulfilled') {
      this.models = models.value.models;
    } else {
      errors.push(models.reason);
    }
    if (deps.status === 'fulfilled') {
      this.deployments = deps.value.deployments;
      this.gateway = deps.value.gateway;
    } else {
      errors.push(deps.reason);
    }
    if (alerts.status === 'fulfilled') {
      this.alerts = alerts.value.alerts;
    } else {
      this.alerts = alerts.reason instanceof MLOpsError ? alerts.reason : new MLOpsError(String(alerts.reason));
      if (!(alerts.reason instanceof MLOpsAPIError && alerts.reason.notAvailable)) {
        errors.push(alerts.reason);
      }
    }
    const [runs, drift] = await Promise.allSettled([
      this.selectedExperiment
        ? get<{ runs: IRun[] }>('runs', { experiment: this.selectedExperiment, limit: RUN_LIMIT })
        : Promise.resolve({ runs: [] as IRun[] }),
      this.loadDrift(background)
    ]);
    if (runs.status === 'fulfilled') {
      this.runs = runs.value.runs;
    } else {
      errors.push(runs.reason);
    }
    if (drift.status === 'rejected') {
      errors.push(drift.reason);
    }
    this.render();
    this.report(errors, background);
    this.lastRefresh = new Date();
    this.setStatus(
      `${this.info ? `tenant ${this.info.tenant} · ` : ''}updated ${this.lastRefresh.toLocaleTimeString()}`
    );
  }

  private async loadDrift(background: boolean): Promise<void> {
    const models = deployedModels(this.deployments);
    if (background && Date.now() - this.lastDrift < DRIFT_INTERVAL && models.every(m => this.drift.has(m))) {
      return;
    }
    this.lastDrift = Date.now();
    const next = new Map<string, DriftState>();
    await Promise.all(
      models.map(async m => {
        try {
          const drift = await requestAPI<IDrift>(`models/${encodeURIComponent(m)}/drift`, { background });
          next.set(m, { drift });
        } catch (error) {
          next.set(m, { error: error instanceof MLOpsError ? error : new MLOpsError(String(error)) });
        }
      })
    );
    this.drift = next;
  }

  /** Notify errors; a background refresh repeats no message until it has gone away. */
  private report(errors: unknown[], background: boolean): void {
    const messages = new Set(errors.map(e => (e instanceof Error ? e.message : String(e))));
    for (const m of messages) {
      if (!background || !this.shownErrors.has(m)) {
        Notification.error(`MLOps: ${m}`, { autoClose: 10000 });
      }
    }
    this.shownErrors = messages;
  }

  private setStatus(text: string): void {
    this.status.textContent = text;
  }

  // -- visibility: refresh on an interval while shown ------------------------------------------

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
    this.startTimer();
  }

  protected onBeforeHide(msg: Message): void {
    this.stopTimer();
    super.onBeforeHide(msg);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      void this.refresh();
      this.startTimer();
    }
  }

  protected onBeforeDetach(msg: Message): void {
    this.stopTimer();
    super.onBeforeDetach(msg);
  }

  dispose(): void {
    this.stopTimer();
    super.dispose();
  }

  private startTimer(): void {
    this.stopTimer();
    this.timer = window.setInterval(() => {
      if (this.isVisible && !document.hidden && this.busy === 0) {
        void this.refresh(true);
      }
    }, this.refreshInterval);
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  // -- rendering ---------------------------------------------------------------------------

  private render(): void {
    this.renderExperiments();
    this.renderModels();
    this.renderDeployments();
    this.renderDrift();
  }

  private renderExperiments(): void {
    const { body, meta } = this.exp;
    meta.textContent = `${this.experiments.length}`;
    if (!this.experiments.length) {
      setChildren(body, h('div', { class: 'jp-MLOps-empty' }, 'No experiments yet. Track one with %mlops start NAME or cell autolog.'));
      return;
    }
    const list = h(
      'ul',
      { class: 'jp-MLOps-list jp-MLOps-experiments' },
      this.experiments.map(e =>
        h(
          'li',
          {
            class: `jp-MLOps-item jp-MLOps-clickable${e.name === this.selectedExperiment ? ' jp-mod-selected' : ''}${
              e.kind === 'registry' ? ' jp-MLOps-registry' : ''
            }`,
            'data-experiment': e.name,
            title: `Show the runs of ${e.name}`,
            onclick: () => {
              this.selectedExperiment = e.name;
              this.openRun = null;
              void this.refresh();
            }
          },
          h('span', { class: 'jp-MLOps-name' }, e.name),
          h('span', { class: 'jp-MLOps-dim' }, `${plural(e.run_count, 'run').replace(' ', e.run_count_complete ? ' ' : '+ ')} · ${formatRelative(e.last_run_at ?? e.updated_at)}`)
        )
      )
    );
    const rows = this.runs.map(r => {
      const open = r.run_id === this.openRun;
      const row = h(
        'li',
        {
          class: `jp-MLOps-run jp-MLOps-clickable${open ? ' jp-mod-open' : ''}`,
          'data-run': r.run_id,
          title: 'Show details',
          onclick: () => {
            this.openRun = open ? null : r.run_id;
            this.renderExperiments();
          }
        },
        h(
          'div',
          { class: 'jp-MLOps-runHead' },
          h('span', { class: 'jp-MLOps-name' }, r.run_name ?? r.run_id.slice(0, 8)),
          badge({ label: r.status, level: statusLevel(r.status), title: `status ${r.status}` }),
          h('span', { class: 'jp-MLOps-dim' }, formatRelative(r.start_time))
        ),
        h(
          'div',
          { class: 'jp-MLOps-metrics' },
          keyMetrics(r.metrics).map(([k, v]) => h('span', { class: 'jp-MLOps-metric' }, `${k} `, h('b', {}, v)))
        ),
        open ? this.runDetails(r) : null
      );
      return row;
    });
    setChildren(
      body,
      list,
      h('div', { class: 'jp-MLOps-subtitle' }, `Recent runs of ${this.selectedExperiment ?? '—'}`),
      rows.length ? h('ul', { class: 'jp-MLOps-list jp-MLOps-runs' }, rows) : h('div', { class: 'jp-MLOps-empty' }, 'No runs.')
    );
  }

  private runDetails(r: IRun): HTMLElement {
    const { params, metrics } = detailRows(r);
    const table = (title: string, rows: [string, string][]) =>
      rows.length
        ? h(
            'table',
            { class: 'jp-MLOps-kv' },
            h('caption', {}, title),
            rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))
          )
        : null;
    return h(
      'div',
      { class: 'jp-MLOps-details', onclick: (ev: Event) => ev.stopPropagation() },
      h('div', { class: 'jp-MLOps-dim' }, `run ${r.run_id} · ${formatDuration(r.duration)} · ${r.start_time ?? ''}`),
      table('Metrics', metrics),
      table('Params', params),
      r.parent_run_id ? h('div', { class: 'jp-MLOps-dim' }, `parent run ${r.parent_run_id}`) : null
    );
  }

  private renderModels(): void {
    const { body, meta } = this.mod;
    meta.textContent = `${this.models.length}`;
    if (!this.models.length) {
      setChildren(body, h('div', { class: 'jp-MLOps-empty' }, 'No models yet. Version one with %mlops register or versioning.create_version().'));
      return;
    }
    setChildren(
      body,
      h(
        'ul',
        { class: 'jp-MLOps-list jp-MLOps-models' },
        this.models.map(m => {
          const open = m.model_id === this.openModel;
          const live = Object.entries(m.live).filter(([, v]) => v);
          return h(
            'li',
            {
              class: `jp-MLOps-item jp-MLOps-model jp-MLOps-clickable${open ? ' jp-mod-open' : ''}`,
              'data-model': m.model_id,
              title: 'Show versions and lineage',
              onclick: () => {
                this.openModel = open ? null : m.model_id;
                this.renderModels();
              }
            },
            h(
              'div',
              { class: 'jp-MLOps-runHead' },
              h('span', { class: 'jp-MLOps-name' }, m.model_id),
              h('span', { class: 'jp-MLOps-dim' }, `${plural(m.version_count, 'version')} · latest ${m.latest ?? '—'}`)
            ),
            h(
              'div',
              { class: 'jp-MLOps-tags' },
              live.map(([a, v]) => badge({ label: `${a} → ${v}`, level: 'info', title: `alias ${a}` })),
              m.deployments.map(d =>
                badge({ label: `${d.environment}: ${trafficLabel(d.traffic)}`, level: statusLevel(d.status), title: `deployed in ${d.environment} (${d.status})` })
              )
            ),
            open ? this.modelDetails(m) : null
          );
        })
      )
    );
  }

  private modelDetails(m: IModel): HTMLElement {
    return h(
      'div',
      { class: 'jp-MLOps-details', onclick: (ev: Event) => ev.stopPropagation() },
      h('div', { class: 'jp-MLOps-subtitle' }, 'Lineage'),
      lineageChains(m.versions).map(chain => h('div', { class: 'jp-MLOps-lineage' }, chain.join(' → '))),
      h('div', { class: 'jp-MLOps-subtitle' }, 'Versions'),
      h(
        'table',
        { class: 'jp-MLOps-kv' },
        [...m.versions].reverse().map(v =>
          h(
            'tr',
            {},
            h('th', {}, v.version),
            h('td', {}, `${formatRelative(v.created_at)}${v.aliases.length ? ` · ${v.aliases.join(', ')}` : ''}`)
          )
        )
      )
    );
  }

  private renderDeployments(): void {
    const { body, meta } = this.dep;
    meta.textContent = `${this.deployments.length}`;
    const gw = this.gateway;
    const gwLine = h(
      'div',
      { class: 'jp-MLOps-dim jp-MLOps-gateway' },
      gw?.running ? `Gateway ${gw.url} (pid ${gw.pid})` : gw ? 'Gateway stopped: the next change starts it.' : ''
    );
    if (!this.deployments.length) {
      setChildren(body, gwLine, h('div', { class: 'jp-MLOps-empty' }, 'No deployments yet. Deploy with %mlops deploy MODEL VERSION.'));
      return;
    }
    setChildren(
      body,
      gwLine,
      h('ul', { class: 'jp-MLOps-list jp-MLOps-deployments' }, this.deployments.map(d => this.deploymentCard(d)))
    );
  }

  private deploymentCard(d: IDeployment): HTMLElement {
    const versions = this.models.find(m => m.model_id === d.model_id)?.versions.map(v => v.version) ?? d.versions;
    const candidates = promoteCandidates(d, versions);
    const select = h(
      'select',
      { class: 'jp-MLOps-select', 'aria-label': 'Version to promote', title: 'Version to promote' },
      candidates.map(v => h('option', { value: v }, v))
    );
    const bar = h(
      'div',
      { class: 'jp-MLOps-trafficBar', title: trafficLabel(d.traffic) },
      trafficSegments(d.traffic).map((s, i) =>
        h(
          'span',
          { class: `jp-MLOps-segment jp-MLOps-segment-${i % 4}`, style: `width: ${s.percent}%` },
          s.percent >= 15 ? `${s.version} ${s.percent}%` : ''
        )
      )
    );
    return h(
      'li',
      { class: 'jp-MLOps-item jp-MLOps-deployment', 'data-model': d.model_id, 'data-environment': d.environment },
      h(
        'div',
        { class: 'jp-MLOps-runHead' },
        h('span', { class: 'jp-MLOps-name' }, `${d.model_id} · ${d.environment}`),
        badge(healthBadge(d.health), 'jp-MLOps-health')
      ),
      h('div', { class: 'jp-MLOps-endpoint', title: 'Endpoint (POST …/invocations with the tenant\'s bearer token)' }, d.endpoint),
      bar,
      h('div', { class: 'jp-MLOps-dim jp-MLOps-traffic' }, `traffic ${trafficLabel(d.traffic)}`),
      h(
        'div',
        { class: 'jp-MLOps-actions' },
        h(
          'button',
          {
            class: 'jp-MLOps-button jp-MLOps-rollback',
            disabled: !d.rollback_to,
            title: d.rollback_to ? `Send 100% of the traffic back to ${d.rollback_to}` : 'No earlier version to roll back to',
            onclick: () => void this.rollback(d)
          },
          d.rollback_to ? `Rollback to ${d.rollback_to}` : 'Rollback'
        ),
        candidates.length ? select : null,
        h(
          'button',
          {
            class: 'jp-MLOps-button jp-MLOps-promote',
            disabled: !candidates.length,
            title: 'Send 100% of the traffic to the chosen version',
            onclick: () => void this.promote(d, select.value)
          },
          'Promote'
        )
      )
    );
  }

  private renderDrift(): void {
    const { body, meta } = this.dri;
    const models = deployedModels(this.deployments);
    const alerts = Array.isArray(this.alerts) ? activeAlerts(this.alerts) : [];
    meta.textContent = alerts.length ? plural(alerts.length, 'alert') : '';
    const rows = models.map(m => {
      const st = this.drift.get(m);
      let b: IBadge;
      if (!st) {
        b = { label: '…', level: 'info', title: 'loading' };
      } else if ('drift' in st) {
        b = driftBadge(st.drift);
      } else if (st.error instanceof MLOpsAPIError && st.error.type === 'EmptyWindowError') {
        b = { label: 'not enough data', level: 'info', title: st.error.message };
      } else if (st.error instanceof MLOpsAPIError && st.error.notAvailable) {
        b = { label: 'monitoring not available', level: 'warn', title: st.error.message };
      } else {
        b = { label: 'error', level: 'error', title: st.error.message };
      }
      return h(
        'li',
        { class: 'jp-MLOps-item', 'data-model': m },
        h('div', { class: 'jp-MLOps-runHead' }, h('span', { class: 'jp-MLOps-name' }, m), badge(b, 'jp-MLOps-drift'))
      );
    });
    const alertList =
      this.alerts instanceof MLOpsError
        ? h('div', { class: 'jp-MLOps-dim' }, `Alerts: ${this.alerts.message}`)
        : alerts.length
          ? h(
              'ul',
              { class: 'jp-MLOps-list jp-MLOps-alerts' },
              alerts.map(a =>
                h(
                  'li',
                  { class: 'jp-MLOps-item', 'data-alert': a.alert_id },
                  h(
                    'div',
                    { class: 'jp-MLOps-runHead' },
                    h('span', { class: 'jp-MLOps-name' }, `${a.model_id}: ${a.condition}`),
                    badge({ label: a.state, level: statusLevel(a.state), title: `${a.severity ?? ''} alert ${a.state}` })
                  ),
                  h('div', { class: 'jp-MLOps-dim' }, `${a.severity ?? ''} · fired ${formatRelative(a.fired_at ?? null)}`)
                )
              )
            )
          : h('div', { class: 'jp-MLOps-dim' }, 'No alerts firing.');
    setChildren(
      body,
      models.length ? h('ul', { class: 'jp-MLOps-list jp-MLOps-driftList' }, rows) : h('div', { class: 'jp-MLOps-empty' }, 'No deployed models to watch.'),
      alertList
    );
  }

  // -- actions -----------------------------------------------------------------------------

  private async confirm(title: string, body: string, label: string): Promise<boolean> {
    this.busy++;
    try {
      const result = await showDialog({
        title,
        body,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
      });
      return result.button.accept;
    } finally {
      this.busy--;
    }
  }

  private async change(d: IDeployment, body: Record<string, unknown>, done: (r: IChangeResult) => string): Promise<void> {
    this.busy++;
    this.setStatus(`${body.action} ${d.model_id} in ${d.environment}…`);
    try {
      const path = `deployments/${encodeURIComponent(d.model_id)}/${encodeURIComponent(d.environment)}`;
      const result = await postAPI<IChangeResult>(path, body);
      Notification.success(done(result), { autoClose: 5000 });
    } catch (error) {
      notifyError(error, `${body.action} of ${d.model_id} in ${d.environment} failed`);
    } finally {
      this.busy--;
      await this.refresh();
    }
  }

  private async rollback(d: IDeployment): Promise<void> {
    if (!d.rollback_to) {
      return;
    }
    const ok = await this.confirm(
      'Roll back deployment',
      `Send 100% of ${d.model_id}'s traffic in ${d.environment} to ${d.rollback_to}? It serves ${trafficLabel(d.traffic)} now.`,
      'Roll back'
    );
    if (ok) {
      await this.change(d, { action: 'rollback' }, r => `Rolled back ${d.model_id} in ${d.environment}: ${trafficLabel(r.deployment.traffic)}`);
    }
  }

  private async promote(d: IDeployment, version: string): Promise<void> {
    if (!version) {
      return;
    }
    const ok = await this.confirm(
      'Promote version',
      `Send 100% of ${d.model_id}'s traffic in ${d.environment} to ${version}? It serves ${trafficLabel(d.traffic)} now.`,
      'Promote'
    );
    if (ok) {
      await this.change(d, { action: 'promote', version }, r => `Promoted ${d.model_id} ${version} in ${d.environment}: ${trafficLabel(r.deployment.traffic)}`);
    }
  }
}
