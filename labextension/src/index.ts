/**
 * mlops-jupyter: the MLOps sidebar and its palette commands.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, IThemeManager, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Kernel } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { installStaticFallback } from './fallback';
import { IKernelState, runInKernel } from './kernel';
import { chartThemeCode } from './model';
import { ICellRef, MLOpsPanel, notifyError } from './panel';
import { MLOpsStatus } from './status';

export { requestAPI, MLOpsError, MLOpsAPIError, MLOpsNetworkError } from './request';

const PANEL_ID = 'mlops-sidebar';
const CATEGORY = 'MLOps';

export namespace CommandIDs {
  export const open = 'mlops:open-panel';
  export const refresh = 'mlops:refresh';
  export const toggleAutolog = 'mlops:toggle-autolog';
  export const insertRuns = 'mlops:insert-runs-cell';
}

export const mlopsIcon = new LabIcon({
  name: 'mlops-jupyter:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M3 19h18v2H3z"/><path d="M5 11h3v7H5zM10.5 6h3v12h-3zM16 13h3v5h-3z"/>' +
    '<circle cx="6.5" cy="7" r="1.6"/><circle cx="12" cy="3" r="1.4"/><circle cx="17.5" cy="9.5" r="1.6"/>' +
    '</g></svg>'
});

/** Debounce: how long after a cell ran the kernel's MLOps state is read again (ms). */
const KERNEL_STATE_DELAY = 300;

/**
 * Scroll `notebooks` to a run's cell: the open notebook with that cell id (JupyterLab's own
 * id, recorded by cell autolog), else the current notebook's cell with that execution count.
 * False when no open notebook has it.
 */
export function scrollToCell(app: JupyterFrontEnd, notebooks: INotebookTracker, ref: ICellRef): boolean {
  const panels: NotebookPanel[] = [];
  if (notebooks.currentWidget) {
    panels.push(notebooks.currentWidget);
  }
  notebooks.forEach(p => {
    if (p !== notebooks.currentWidget) {
      panels.push(p);
    }
  });
  const find = (match: (i: number, p: NotebookPanel) => boolean): [NotebookPanel, number] | null => {
    for (const p of panels) {
      const cells = p.content.widgets;
      for (let i = 0; i < cells.length; i++) {
        if (match(i, p)) {
          return [p, i];
        }
      }
    }
    return null;
  };
  const hit =
    (ref.cellId ? find((i, p) => p.content.widgets[i].model.id === ref.cellId) : null) ??
    (ref.executionCount !== null
      ? find(
          (i, p) =>
            (!ref.notebook || p.context.path.replace(/^.*\//, '').replace(/\.ipynb$/, '') === ref.notebook ||
              p === notebooks.currentWidget) &&
            (p.content.widgets[i].model as { executionCount?: number | null }).executionCount === ref.executionCount
        )
      : null);
  if (!hit) {
    return false;
  }
  const [panel, index] = hit;
  app.shell.activateById(panel.id);
  panel.content.activeCellIndex = index;
  void panel.content.scrollToItem(index, 'center');
  const cell = panel.content.widgets[index];
  cell.addClass('jp-MLOps-flash');
  window.setTimeout(() => cell.removeClass('jp-MLOps-flash'), 1500);
  return true;
}

/** Whether JupyterLab's theme is a light one (the chart theme the kernels get, see `chartThemeCode`). */
function isLight(themes: IThemeManager | null): boolean {
  return !themes?.theme || themes.isLight(themes.theme);
}

/** The cell reference a panel's `[data-mlops-cell]` element carries (E1's panels set it). */
function cellRefOf(el: HTMLElement): ICellRef {
  const count = Number(el.dataset.mlopsCell);
  return {
    cellId: el.dataset.mlopsCellId || null,
    executionCount: el.dataset.mlopsCell && Number.isFinite(count) ? count : null,
    notebook: el.dataset.mlopsNotebook || null
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlops-jupyter:plugin',
  description: 'An MLOps sidebar (experiments, models, deployments, drift) and palette commands.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, IRenderMimeRegistry, IStatusBar, IThemeManager],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    rendermime: IRenderMimeRegistry | null,
    statusBar: IStatusBar | null,
    themes: IThemeManager | null
  ) => {
    // reopened notebooks: a panel whose widget model is gone shows its saved static view
    if (rendermime) {
      installStaticFallback(rendermime);
    }
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (nb: NotebookPanel) => {
        installStaticFallback(nb.content.rendermime);
      }
    });

    const panel = new MLOpsPanel();
    panel.id = PANEL_ID;
    panel.title.icon = mlopsIcon;
    panel.title.caption = 'MLOps';
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    const autolog = new Map<string, 'on' | 'off'>();
    const currentKernel = (): Kernel.IKernelConnection | null =>
      notebooks?.currentWidget?.sessionContext.session?.kernel ?? null;

    const status = new MLOpsStatus(() => app.shell.activateById(PANEL_ID));
    status.tenant = () => panel.currentTenant;
    if (statusBar) {
      statusBar.registerStatusItem('mlops-jupyter:status', { item: status, align: 'left', rank: 50 });
      status.start();
    }
    panel.refreshed.connect((_, info) => status.setGateway(info?.gateway));

    // the active notebook's kernel: its tenant (the sidebar follows it), autolog, MLflow UI
    const applyState = (kernel: Kernel.IKernelConnection, state: IKernelState | null) => {
      if (state) {
        autolog.set(kernel.id, state.autolog);
      }
      if (kernel === currentKernel()) {
        status.setAutolog(state?.autolog ?? null);
        void panel.setKernelState(state);
        app.commands.notifyCommandChanged(CommandIDs.toggleAutolog);
      }
    };
    let pending: number | null = null;
    const readKernelState = () => {
      if (pending !== null) {
        window.clearTimeout(pending);
      }
      pending = window.setTimeout(() => {
        pending = null;
        const kernel = currentKernel();
        if (!kernel) {
          status.setAutolog(null);
          return;
        }
        runInKernel(kernel, chartThemeCode(isLight(themes))).then(
          state => applyState(kernel, state),
          () => applyState(kernel, null)
        );
      }, KERNEL_STATE_DELAY);
    };
    notebooks?.currentChanged.connect(readKernelState);
    themes?.themeChanged.connect(readKernelState);
    notebooks?.widgetAdded.connect((_, nb) => {
      nb.sessionContext.kernelChanged.connect(readKernelState);
      nb.sessionContext.statusChanged.connect((_, s) => {
        if (s === 'restarting') {
          readKernelState();
        }
      });
    });
    NotebookActions.executed.connect((_, { notebook }) => {
      if (notebook === notebooks?.currentWidget?.content) {
        readKernelState();
      }
    });

    // `cell [6]` in the sidebar and in the panels (elements with data-mlops-cell) scroll to the cell
    if (notebooks) {
      panel.openCell = ref => scrollToCell(app, notebooks, ref);
      const onCellLink = (ev: Event) => {
        const target = ev.target as HTMLElement | null;
        const el = target?.closest?.('[data-mlops-cell], [data-mlops-cell-id]') as HTMLElement | null;
        if (!el || (ev.type === 'keydown' && (ev as KeyboardEvent).key !== 'Enter')) {
          return;
        }
        ev.preventDefault();
        const ref = cellRefOf(el);
        if (!scrollToCell(app, notebooks, ref)) {
          Notification.info(`Open the notebook${ref.notebook ? ` ${ref.notebook}` : ''} to go to that cell.`, {
            autoClose: 4000
          });
        }
      };
      document.addEventListener('click', onCellLink);
      document.addEventListener('keydown', onCellLink);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open MLOps Panel',
      caption: 'Show the MLOps sidebar',
      icon: mlopsIcon,
      execute: () => {
        app.shell.activateById(PANEL_ID);
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh MLOps Panel',
      execute: () => panel.refresh()
    });

    app.commands.addCommand(CommandIDs.toggleAutolog, {
      label: 'Toggle Cell Autolog in the Current Kernel',
      caption: 'Runs %mlops autolog on|off in the current notebook\'s kernel',
      isEnabled: () => currentKernel() !== null,
      isToggled: () => {
        const k = currentKernel();
        return k !== null && autolog.get(k.id) === 'on';
      },
      execute: async () => {
        const kernel = currentKernel();
        if (!kernel) {
          Notification.warning('Open a notebook with a running kernel to toggle cell autolog.', { autoClose: 5000 });
          return;
        }
        try {
          const current = (await runInKernel(kernel, '%load_ext mlops_jupyter'))?.autolog ?? autolog.get(kernel.id) ?? 'off';
          const wanted = current === 'on' ? 'off' : 'on';
          const after = await runInKernel(kernel, `%mlops autolog ${wanted}`);
          const now = after?.autolog ?? wanted;
          autolog.set(kernel.id, now);
          applyState(kernel, after);
          app.commands.notifyCommandChanged(CommandIDs.toggleAutolog);
          if (now === wanted) {
            Notification.success(`Cell autolog is ${now} in kernel ${kernel.name}.`, { autoClose: 4000 });
          } else {
            Notification.warning(`Cell autolog stayed ${now} in kernel ${kernel.name}.`, { autoClose: 8000 });
          }
        } catch (error) {
          notifyError(error, 'Toggling cell autolog failed');
        }
      }
    });

    app.commands.addCommand(CommandIDs.insertRuns, {
      label: 'Insert a %mlops runs Cell',
      caption: 'Insert a code cell listing the runs below the active cell',
      isEnabled: () => !!notebooks?.currentWidget,
      execute: () => {
        const current = notebooks?.currentWidget;
        if (!current) {
          Notification.warning('Open a notebook to insert a %mlops runs cell.', { autoClose: 5000 });
          return;
        }
        NotebookActions.insertBelow(current.content);
        const cell = current.content.activeCell;
        if (cell) {
          cell.model.sharedModel.setSource('%mlops runs');
        }
        app.shell.activateById(current.id);
      }
    });

    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.toggleAutolog, CommandIDs.insertRuns]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};

export default plugin;
