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
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { stepChart } from './chart';
import { h, setText, updateChildren } from './dom';
import { IKernelState } from './model';
import {
  activeAlerts,
  cellLabel,
  deliveryText,
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
  IRunDetail,
  isSession,
  keyMetrics,
  lineageChains,
  mlflowLinks,
  pickExperiment,
  plural,
  promoteCandidates,
  statusLevel,
  targetLabel,
  trafficLabel,
  trafficSegments
} from './model';
import { MLOpsAPIError, MLOpsError, postAPI, requestAPI } from './request';

const RUN_LIMIT = 20;
/** What ends a press of a pointer (see `MLOpsPanel.paint`): a move with no button down is a release we missed. */
const RELEASES = ['pointerup', 'pointercancel', 'pointermove', 'blur'];
/**
 * Background refreshes check drift at most this often (ms): a drift check reads the
 * prediction log and, in the core, evaluates the model's alert rules.
 */
const DRIFT_INTERVAL = 60000;

export interface IInfo {
  tenant: string;
  version: string;
  mlflow_ui_url?: string | null;
  gateway?: IGateway;
}

interface ITenants {
  default: string;
  tenants: string[];
  restricted: boolean;
}

/** Where a run's cell is: JupyterLab's cell id, its execution count, the notebook's name. */
export interface ICellRef {
  cellId: string | null;
  executionCount: number | null;
  notebook: string | null;
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

/**
 * Attributes that make an element a keyboard control: focusable with Tab, Enter or Space
 * does what a click does, with a role and a label for screen readers.
 */
function pressable(label: string, fn: () => void, expanded: boolean | null = null, key = ''): Record<string, any> {
  return {
    role: 'button',
    tabindex: 0,
    'aria-label': label,
    'aria-expanded': expanded === null ? null : String(expanded),
    'data-focus-key': key || label,
    onkeydown: (ev: Event) => {
      const k = (ev as KeyboardEvent).key;
      if (k === 'Enter' || k === ' ') {
        ev.preventDefault();
        ev.stopPropagation();
        fn();
      }
    }
  };
}

/** A link to an MLflow UI page (opens in a new tab), or nothing when no UI is known. */
function mlflowLink(href: string | null, what: string): HTMLElement | null {
  return href
    ? h(
        'a',
        {
          class: 'jp-MLOps-link',
          href,
          target: '_blank',
          rel: 'noopener noreferrer',
          title: `Open ${what} in the MLflow UI`,
          'aria-label': `Open ${what} in the MLflow UI`,
          onclick: (ev: Event) => ev.stopPropagation()
        },
        'MLflow ↗'
      )
    : null;
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
  /** Emitted after each refresh with the server's info (tenant, gateway), for the status bar. */
  readonly refreshed = new Signal<this, IInfo | null>(this);

  /** Milliseconds between background refreshes while the panel is visible. */
  refreshInterval = 10000;
  /** Scrolls JupyterLab to a run's cell; false when its notebook is not open (set by the plugin). */
  openCell: ((cell: ICellRef) => boolean) | null = null;

  /** The tenant shown (null: the server's default); the switcher and the kernel's tenant change it. */
  private tenant: string | null = null;
  private tenants: ITenants | null = null;
  private kernelTenant: string | null = null;
  private kernelUI: string | null = null;
  private details = new Map<string, IRunDetail | MLOpsError>();

  private info: IInfo | null = null;
  private experiments: IExperiment[] = [];
  private selectedExperiment: string | null = null;
  private runs: IRun[] = [];
  private openRun: string | null = null;
  private models: IModel[] = [];
  private openModel: string | null = null;
  private openDrift: string | null = null;
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
  /** The experiment `runs` are of (a click selects another before its runs are loaded). */
  private runsOf: string | null = null;
  /** A refresh asked for while one was under way, to run after it (see `refresh`). */
  private followUp: Promise<void> | null = null;
  /**
   * Counts tenant switches: a refresh under way when the tenant changes read the old one's
   * state, so it drops what it loaded (the follow-up refresh loads the new tenant's).
   */
  private tenantSwitches = 0;
  /** Pointers pressed in the panel, and the sections whose redraw waits for their release. */
  private readonly pressed = new Set<number>();
  private readonly waiting = new Map<HTMLElement, () => void>();
  /** Set from a release until the task after it, when its click has been dispatched. */
  private releaseTimer = 0;

  private readonly header: HTMLElement;
  private readonly status: HTMLElement;
  private readonly tenantSelect: HTMLSelectElement;
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
    this.tenantSelect = h('select', {
      class: 'jp-MLOps-select jp-MLOps-tenant',
      'aria-label': 'Tenant',
      title: 'Tenant shown (the server allows these; follows the active notebook\'s kernel)',
      onchange: () => void this.setTenant(this.tenantSelect.value)
    });
    this.header = h(
      'div',
      { class: 'jp-MLOps-header' },
      h(
        'div',
        { class: 'jp-MLOps-headerRow' },
        h('span', { class: 'jp-MLOps-title', role: 'heading', 'aria-level': 2 }, 'MLOps'),
        h('label', { class: 'jp-MLOps-tenantLabel' }, 'Tenant ', this.tenantSelect),
        refresh
      ),
      this.status
    );
    this.node.append(this.header, this.exp.root, this.mod.root, this.dep.root, this.dri.root);
    this.node.addEventListener('pointerdown', this, true);
  }

  // -- tenant and kernel ------------------------------------------------------------------

  /** The tenant shown now. */
  get currentTenant(): string | null {
    return this.tenant ?? this.info?.tenant ?? null;
  }

  /** Show another tenant (one of the server's allow-list; the server answers 403 otherwise). */
  async setTenant(tenant: string): Promise<void> {
    if (tenant === this.currentTenant) {
      return;
    }
    this.tenant = tenant;
    this.tenantSwitches += 1;
    this.info = null;
    this.selectedExperiment = null;
    this.openRun = null;
    this.openModel = null;
    this.details.clear();
    this.drift.clear();
    this.lastDrift = 0;
    this.renderTenants();
    if (this.isVisible) {
      await this.refresh(); // else the next show refreshes
    }
  }

  /**
   * What the active notebook's kernel reports: the sidebar follows its tenant when the server
   * allows it (once per change of the kernel's tenant, so the switcher still works), and
   * links to the MLflow UI it knows.
   */
  async setKernelState(state: IKernelState | null): Promise<void> {
    const ui = state?.mlflow_ui ?? null;
    const uiChanged = ui !== this.kernelUI;
    this.kernelUI = ui;
    const tenant = state?.tenant ?? null;
    if (tenant !== null && tenant !== this.kernelTenant) {
      this.kernelTenant = tenant;
      if (!this.tenants) {
        await this.loadTenants(false);
      }
      const current = this.currentTenant ?? this.tenants?.default ?? null;
      if (this.tenants?.tenants.includes(tenant) && tenant !== current) {
        await this.setTenant(tenant);
        return;
      }
    }
    this.kernelTenant = tenant;
    if (uiChanged) {
      this.render();
    }
  }

  /** The MLflow UI to link to: the active kernel's, else the server's setting. */
  get mlflowUI(): string | null {
    return this.kernelUI ?? this.info?.mlflow_ui_url ?? null;
  }

  private async loadTenants(background: boolean): Promise<void> {
    try {
      this.tenants = await requestAPI<ITenants>('tenants', { background });
    } catch {
      this.tenants = null;
    }
    this.renderTenants();
  }

  private renderTenants(): void {
    const current = this.currentTenant;
    const names = [...new Set([...(this.tenants?.tenants ?? []), ...(current ? [current] : [])])].sort();
    updateChildren(
      this.tenantSelect,
      names.map(t => h('option', { value: t, selected: t === current }, t))
    );
    this.tenantSelect.value = current ?? '';
    this.tenantSelect.disabled = names.length < 2;
  }

  // -- refresh ---------------------------------------------------------------------------

  /**
   * Reload everything. Concurrent calls share one refresh, except that a user's call during
   * one under way (a click on another experiment, a tenant switch) gets one more after it:
   * the one under way may have read the state before the click.
   */
  refresh(background = false): Promise<void> {
    if (this.inFlight && !background) {
      const next = () => {
        this.followUp = null;
        return this.refresh();
      };
      this.followUp ??= this.inFlight.then(next, next);
      return this.followUp;
    }
    if (!this.inFlight) {
      this.inFlight = this.load(background).finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  private async load(background: boolean): Promise<void> {
    this.setStatus(`${this.info ? `tenant ${this.info.tenant} · ` : ''}refreshing…`);
    const tenant = this.tenant ?? undefined;
    const switches = this.tenantSwitches;
    const stale = () => switches !== this.tenantSwitches;
    const get = <T>(path: string, query?: Record<string, string | number | undefined>) =>
      requestAPI<T>(path, { query: { ...query, tenant }, background });
    if (!this.tenants || !background) {
      void this.loadTenants(background);
    }
    const [info, exps, models, deps, alerts] = await Promise.allSettled([
      this.info ? Promise.resolve(this.info) : get<IInfo>('info'),
      get<{ experiments: IExperiment[] }>('experiments'),
      get<{ models: IModel[] }>('models'),
      get<{ deployments: IDeployment[]; gateway: IGateway }>('deployments'),
      get<{ alerts: IAlert[] }>('alerts')
    ]);
    if (stale()) {
      return;
    }
    const errors: unknown[] = [];
    if (info.status === 'fulfilled') {
      this.info = info.value;
      this.renderTenants();
    } else {
      errors.push(info.reason);
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
    const runsOf = this.selectedExperiment;
    const [runs, drift] = await Promise.allSettled([
      runsOf
        ? get<{ runs: IRun[] }>('runs', { experiment: runsOf, limit: RUN_LIMIT })
        : Promise.resolve({ runs: [] as IRun[] }),
      this.loadDrift(background, stale)
    ]);
    if (stale()) {
      return;
    }
    if (runs.status === 'fulfilled') {
      this.runs = runs.value.runs;
      this.runsOf = runsOf;
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
    this.refreshed.emit(this.info);
  }

  private async loadDrift(background: boolean, stale: () => boolean): Promise<void> {
    const models = deployedModels(this.deployments);
    if (background && Date.now() - this.lastDrift < DRIFT_INTERVAL && models.every(m => this.drift.has(m))) {
      return;
    }
    this.lastDrift = Date.now();
    const next = new Map<string, DriftState>();
    await Promise.all(
      models.map(async m => {
        try {
          const drift = await requestAPI<IDrift>(`models/${encodeURIComponent(m)}/drift`, {
            background,
            query: { tenant: this.tenant ?? undefined }
          });
          next.set(m, { drift });
        } catch (error) {
          next.set(m, { error: error instanceof MLOpsError ? error : new MLOpsError(String(error)) });
        }
      })
    );
    if (!stale()) {
      this.drift = next;
    }
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
    setText(this.status, text);
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
    this.node.removeEventListener('pointerdown', this, true);
    this.listenForRelease(false);
    window.clearTimeout(this.releaseTimer);
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

  /**
   * Redraw a section (only the parts that change, see `updateChildren`), keeping the keyboard
   * focus; while a pointer pressed in the panel is down, once it is released. The browser
   * fires `click` only when the button goes up on the element it went down on: a refresh
   * (one lands every 10 s) redrawing in between replaced that element, and the user's click
   * on an experiment, a run or a Rollback button did nothing. The release is watched on the
   * window (it may happen outside the panel); pointerup, mouseup and click are dispatched in
   * one task, so the redraw waits for the task after it, when the click has been handled.
   */
  private paint(section: HTMLElement, draw: () => void): void {
    if (this.pressed.size || this.releaseTimer) {
      this.waiting.set(section, draw);
    } else {
      this.keepFocus(section, draw);
    }
  }

  /** Pointer presses in the panel and their releases (see `paint`). */
  handleEvent(event: Event): void {
    const pointer = event as PointerEvent;
    if (event.type === 'pointerdown') {
      this.pressed.add(pointer.pointerId);
      window.clearTimeout(this.releaseTimer);
      this.releaseTimer = 0;
      this.listenForRelease(true);
      return;
    }
    if (event.type === 'blur') {
      if (event.target !== window) {
        return; // an element's blur, on its way through the window
      }
      this.pressed.clear(); // the window lost the pointer: its release will not come here
    } else if (event.type !== 'pointermove' || !pointer.buttons) {
      this.pressed.delete(pointer.pointerId);
    }
    if (this.pressed.size || this.releaseTimer) {
      return;
    }
    this.listenForRelease(false);
    this.releaseTimer = window.setTimeout(() => {
      this.releaseTimer = 0;
      const waiting = [...this.waiting.entries()];
      this.waiting.clear();
      waiting.forEach(([section, draw]) => this.paint(section, draw));
    });
  }

  private listenForRelease(on: boolean): void {
    for (const type of RELEASES) {
      if (on) {
        window.addEventListener(type, this, true);
      } else {
        window.removeEventListener(type, this, true);
      }
    }
  }

  /** Run a section's draw, keeping the keyboard focus on the control that had it. */
  private keepFocus(section: HTMLElement, draw: () => void): void {
    const active = document.activeElement as HTMLElement | null;
    const key = active && section.contains(active) ? active.getAttribute('data-focus-key') : null;
    draw();
    if (key !== null && !active?.isConnected) {
      const again = [...section.querySelectorAll<HTMLElement>('[data-focus-key]')].find(
        el => el.getAttribute('data-focus-key') === key
      );
      again?.focus();
    }
  }

  private renderExperiments(): void {
    this.paint(this.exp.root, () => this.drawExperiments());
  }

  private drawExperiments(): void {
    const { body, meta } = this.exp;
    setText(meta, `${this.experiments.length}`);
    if (!this.experiments.length) {
      updateChildren(body, h('div', { class: 'jp-MLOps-empty' }, 'No experiments yet. Track one with %mlops start NAME or cell autolog.'));
      return;
    }
    const ui = this.mlflowUI;
    const list = h(
      'ul',
      { class: 'jp-MLOps-list jp-MLOps-experiments', 'aria-label': 'Experiments' },
      this.experiments.map(e => {
        const selected = e.name === this.selectedExperiment;
        const select = () => {
          this.selectedExperiment = e.name;
          this.openRun = null;
          void this.refresh();
        };
        return h(
          'li',
          {
            class: `jp-MLOps-item jp-MLOps-clickable${selected ? ' jp-mod-selected' : ''}${
              e.kind === 'registry' ? ' jp-MLOps-registry' : ''
            }`,
            'data-experiment': e.name,
            title: `Show the runs of ${e.name}`,
            onclick: select
          },
          h(
            'span',
            {
              class: 'jp-MLOps-name',
              ...pressable(`Experiment ${e.name}: show its runs`, select, null, `exp:${e.name}`),
              'aria-pressed': String(selected)
            },
            e.name
          ),
          h('span', { class: 'jp-MLOps-dim' }, `${plural(e.run_count, 'run').replace(' ', e.run_count_complete ? ' ' : '+ ')} · ${formatRelative(e.last_run_at ?? e.updated_at)}`),
          mlflowLink(mlflowLinks.experiment(ui, e.experiment_id), `experiment ${e.name}`)
        );
      })
    );
    // null: the selected experiment's runs are on their way (it was clicked since they were loaded)
    const runs = this.runsOf === this.selectedExperiment ? this.runs : null;
    const children = new Map<string, number>();
    for (const r of runs ?? []) {
      if (r.parent_run_id) {
        children.set(r.parent_run_id, (children.get(r.parent_run_id) ?? 0) + 1);
      }
    }
    const rows = (runs ?? []).map(r => (isSession(r) ? this.sessionRow(r, children.get(r.run_id) ?? 0) : this.runRow(r)));
    updateChildren(
      body,
      list,
      h('div', { class: 'jp-MLOps-subtitle', role: 'heading', 'aria-level': 3 }, `Recent runs of ${this.selectedExperiment ?? '—'}`),
      rows.length
        ? h('ul', { class: 'jp-MLOps-list jp-MLOps-runs', 'aria-label': `Runs of ${this.selectedExperiment ?? ''}` }, rows)
        : h('div', { class: 'jp-MLOps-empty' }, runs ? 'No runs.' : 'Loading…')
    );
  }

  /** A notebook session's parent run: shown as the session, with how many cell runs it holds. */
  private sessionRow(r: IRun, cells: number): HTMLElement {
    const notebook = r.tags?.['mlops.notebook'] ?? r.run_name ?? r.run_id.slice(0, 8);
    return h(
      'li',
      { class: 'jp-MLOps-run jp-MLOps-session', 'data-run': r.run_id },
      h(
        'div',
        { class: 'jp-MLOps-runHead' },
        h('span', { class: 'jp-MLOps-name' }, `Session ${notebook}`),
        badge({ label: 'session', level: 'info', title: 'The notebook session: its cells are runs under it' }),
        h('span', { class: 'jp-MLOps-dim' }, `${plural(cells, 'cell run')} · ${formatRelative(r.start_time)}`),
        mlflowLink(mlflowLinks.run(this.mlflowUI, r.experiment_id, r.run_id), `session ${notebook}`)
      )
    );
  }

  private runRow(r: IRun): HTMLElement {
    const open = r.run_id === this.openRun;
    const name = r.run_name ?? r.run_id.slice(0, 8);
    const toggle = () => {
      // from the state now, not from when this row was drawn: a refresh under way (e.g. after
      // the experiment was clicked again) may still show a row that is no longer open
      const opening = this.openRun !== r.run_id;
      this.openRun = opening ? r.run_id : null;
      if (opening && !this.details.has(r.run_id)) {
        void this.loadDetail(r.run_id);
      }
      this.renderExperiments();
    };
    const cell = cellLabel(r);
    return h(
      'li',
      {
        class: `jp-MLOps-run jp-MLOps-clickable${open ? ' jp-mod-open' : ''}`,
        'data-run': r.run_id,
        title: 'Show details',
        onclick: toggle
      },
      h(
        'div',
        { class: 'jp-MLOps-runHead' },
        h('span', { class: 'jp-MLOps-name', ...pressable(`Run ${name}: ${open ? 'hide' : 'show'} details`, toggle, open, `run:${r.run_id}`) }, name),
        badge({ label: r.status, level: statusLevel(r.status), title: `status ${r.status}` }),
        cell ? this.cellButton(r, cell) : null,
        h('span', { class: 'jp-MLOps-dim' }, formatRelative(r.start_time)),
        mlflowLink(mlflowLinks.run(this.mlflowUI, r.experiment_id, r.run_id), `run ${name}`)
      ),
      h(
        'div',
        { class: 'jp-MLOps-metrics' },
        keyMetrics(r.metrics, 3, r.key_metrics).map(([k, v], i) =>
          h('span', { class: `jp-MLOps-metric${i === 0 ? ' jp-MLOps-keyMetric' : ''}` }, `${k} `, h('b', {}, v))
        )
      ),
      open ? this.runDetails(r) : null
    );
  }

  /** `cell [6]`: scrolls JupyterLab to the cell when its notebook is open. */
  private cellButton(r: IRun, label: string): HTMLElement {
    const count = Number(r.tags?.['mlops.execution_count']);
    const ref: ICellRef = {
      cellId: r.tags?.['mlops.cell_id'] || null,
      executionCount: Number.isFinite(count) ? count : null,
      notebook: r.tags?.['mlops.notebook'] ?? null
    };
    return h(
      'button',
      {
        class: 'jp-MLOps-cellLink',
        title: 'Scroll to this cell in its notebook',
        'aria-label': `Go to ${label}`,
        'data-focus-key': `cell:${r.run_id}`,
        // all that the click uses is drawn: a change of it redraws the button (see updateChildren)
        'data-cell-id': ref.cellId,
        'data-notebook': ref.notebook,
        onclick: (ev: Event) => {
          ev.stopPropagation();
          if (!this.openCell?.(ref)) {
            Notification.info(`Open the notebook${ref.notebook ? ` ${ref.notebook}` : ''} to go to ${label}.`, { autoClose: 4000 });
          }
        }
      },
      label
    );
  }

  private async loadDetail(runId: string): Promise<void> {
    try {
      const detail = await requestAPI<IRunDetail>(`runs/${encodeURIComponent(runId)}/detail`, {
        query: { tenant: this.tenant ?? undefined }
      });
      this.details.set(runId, detail);
    } catch (error) {
      this.details.set(runId, error instanceof MLOpsError ? error : new MLOpsError(String(error)));
    }
    if (this.openRun === runId) {
      this.renderExperiments();
    }
  }

  private runDetails(r: IRun): HTMLElement {
    const { params, metrics } = detailRows(r);
    const table = (title: string, rows: [string, string][]) =>
      rows.length
        ? h(
            'table',
            { class: 'jp-MLOps-kv' },
            h('caption', {}, title),
            rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))
          )
        : null;
    const detail = this.details.get(r.run_id);
    let extra: (HTMLElement | null)[];
    if (detail === undefined) {
      extra = [h('div', { class: 'jp-MLOps-dim' }, 'Loading charts and cell…')];
    } else if (detail instanceof MLOpsError) {
      extra = [h('div', { class: 'jp-MLOps-dim' }, `Details: ${detail.message}`)];
    } else {
      const charts = Object.entries(detail.history).map(([k, pts]) => stepChart(k, pts));
      extra = [
        charts.length ? h('div', { class: 'jp-MLOps-subtitle' }, 'Metrics per step') : null,
        ...charts,
        detail.cell.source !== null ? h('div', { class: 'jp-MLOps-subtitle' }, 'Cell source') : null,
        detail.cell.source !== null ? h('pre', { class: 'jp-MLOps-source', tabindex: 0, 'aria-label': 'Cell source' }, detail.cell.source) : null
      ];
    }
    return h(
      'div',
      { class: 'jp-MLOps-details', onclick: (ev: Event) => ev.stopPropagation() },
      h('div', { class: 'jp-MLOps-dim' }, `run ${r.run_id} · ${formatDuration(r.duration)} · ${r.start_time ?? ''}`),
      table('Metrics', metrics),
      table('Params', params),
      ...extra,
      r.parent_run_id ? h('div', { class: 'jp-MLOps-dim' }, `parent run ${r.parent_run_id}`) : null
    );
  }

  private renderModels(): void {
    this.paint(this.mod.root, () => this.drawModels());
  }

  private drawModels(): void {
    const { body, meta } = this.mod;
    setText(meta, `${this.models.length}`);
    if (!this.models.length) {
      updateChildren(body, h('div', { class: 'jp-MLOps-empty' }, 'No models yet. Version one with %mlops register or versioning.create_version().'));
      return;
    }
    updateChildren(
      body,
      h(
        'ul',
        { class: 'jp-MLOps-list jp-MLOps-models', 'aria-label': 'Models' },
        this.models.map(m => {
          const open = m.model_id === this.openModel;
          const live = Object.entries(m.live).filter(([, v]) => v);
          const toggle = () => {
            this.openModel = open ? null : m.model_id;
            this.renderModels();
          };
          return h(
            'li',
            {
              class: `jp-MLOps-item jp-MLOps-model jp-MLOps-clickable${open ? ' jp-mod-open' : ''}`,
              'data-model': m.model_id,
              title: 'Show versions and lineage',
              onclick: toggle
            },
            h(
              'div',
              { class: 'jp-MLOps-runHead' },
              h(
                'span',
                { class: 'jp-MLOps-name', ...pressable(`Model ${m.model_id}: ${open ? 'hide' : 'show'} versions and lineage`, toggle, open, `model:${m.model_id}`) },
                m.model_id
              ),
              h('span', { class: 'jp-MLOps-dim' }, `${plural(m.version_count, 'version')} · latest ${m.latest ?? '—'}`),
              mlflowLink(mlflowLinks.model(this.mlflowUI, this.currentTenant ?? '', m.model_id), `model ${m.model_id}`)
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
    this.paint(this.dep.root, () => this.drawDeployments());
  }

  private drawDeployments(): void {
    const { body, meta } = this.dep;
    setText(meta, `${this.deployments.length}`);
    const gw = this.gateway;
    const gwLine = h(
      'div',
      { class: 'jp-MLOps-dim jp-MLOps-gateway' },
      gw?.running ? `Gateway ${gw.url} (pid ${gw.pid})` : gw ? 'Gateway stopped: the next change starts it.' : ''
    );
    if (!this.deployments.length) {
      updateChildren(body, gwLine, h('div', { class: 'jp-MLOps-empty' }, 'No deployments yet. Deploy with %mlops deploy MODEL VERSION.'));
      return;
    }
    updateChildren(
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
        h(
          'span',
          { class: 'jp-MLOps-dim jp-MLOps-target', title: 'Where it runs: the local gateway, Ray Serve or KServe' },
          targetLabel(d)
        ),
        badge(healthBadge(d.health), 'jp-MLOps-health')
      ),
      h(
        'a',
        {
          class: 'jp-MLOps-endpoint',
          href: d.endpoint,
          target: '_blank',
          rel: 'noopener noreferrer',
          title: 'Endpoint (POST …/invocations with the tenant\'s bearer token)',
          'aria-label': `Endpoint of ${d.model_id} in ${d.environment}: ${d.endpoint}`
        },
        d.endpoint
      ),
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
    this.paint(this.dri.root, () => this.drawDrift());
  }

  private drawDrift(): void {
    const { body, meta } = this.dri;
    const models = deployedModels(this.deployments);
    const alerts = Array.isArray(this.alerts) ? activeAlerts(this.alerts) : [];
    setText(meta, alerts.length ? plural(alerts.length, 'alert') : '');
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
      const open = this.openDrift === m;
      const toggle = () => {
        this.openDrift = open ? null : m;
        this.renderDrift();
      };
      return h(
        'li',
        { class: `jp-MLOps-item jp-MLOps-clickable${open ? ' jp-mod-open' : ''}`, 'data-model': m, onclick: toggle },
        h(
          'div',
          { class: 'jp-MLOps-runHead' },
          h('span', { class: 'jp-MLOps-name', ...pressable(`Drift of ${m}: ${b.label}`, toggle, open, `drift:${m}`) }, m),
          badge(b, 'jp-MLOps-drift')
        ),
        open ? h('div', { class: 'jp-MLOps-details jp-MLOps-dim' }, b.title || b.label) : null
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
                  h('div', { class: 'jp-MLOps-dim' }, `${a.severity ?? ''} · fired ${formatRelative(a.fired_at ?? null)}`),
                  deliveryText(a) ? h('div', { class: 'jp-MLOps-dim jp-MLOps-delivery' }, deliveryText(a)) : null
                )
              )
            )
          : h('div', { class: 'jp-MLOps-dim' }, 'No alerts firing.');
    updateChildren(
      body,
      models.length ? h('ul', { class: 'jp-MLOps-list jp-MLOps-driftList', 'aria-label': 'Drift of deployed models' }, rows) : h('div', { class: 'jp-MLOps-empty' }, 'No deployed models to watch.'),
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
      const result = await postAPI<IChangeResult>(path, body, { tenant: this.tenant ?? undefined });
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
