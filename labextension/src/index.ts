/**
 * mlops-jupyter: the MLOps sidebar and its palette commands.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import { MLOpsPanel, notifyError } from './panel';
import { MLOpsError } from './request';

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

/** What the kernel says about cell autolog, read through `user_expressions`. */
const AUTOLOG_STATE =
  "(lambda m: 'on' if getattr(m, 'autolog_obj', None) is not None and m.autolog_obj.enabled else 'off')" +
  "(__import__('mlops_jupyter.notebook.magics', fromlist=['get_magics']).get_magics(get_ipython()))";

/**
 * Run `code` in a kernel without touching the notebook (silent, no history) and return the
 * autolog state the kernel reports after it.
 */
async function runInKernel(kernel: Kernel.IKernelConnection, code: string): Promise<'on' | 'off' | null> {
  const future = kernel.requestExecute({
    code,
    silent: true,
    store_history: false,
    allow_stdin: false,
    stop_on_error: false,
    user_expressions: { state: AUTOLOG_STATE }
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content;
  if (content.status === 'error') {
    throw new MLOpsError(`${content.ename}: ${content.evalue}`);
  }
  if (content.status !== 'ok') {
    throw new MLOpsError(`the kernel answered ${content.status}`);
  }
  const expr = content.user_expressions?.['state'] as
    | { status: string; data?: Record<string, string> }
    | undefined;
  const text = expr?.status === 'ok' ? String(expr.data?.['text/plain'] ?? '') : '';
  return text.includes('on') ? 'on' : text.includes('off') ? 'off' : null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlops-jupyter:plugin',
  description: 'An MLOps sidebar (experiments, models, deployments, drift) and palette commands.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new MLOpsPanel();
    panel.id = PANEL_ID;
    panel.title.icon = mlopsIcon;
    panel.title.caption = 'MLOps';
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    const autolog = new Map<string, 'on' | 'off'>();
    const currentKernel = (): Kernel.IKernelConnection | null =>
      notebooks?.currentWidget?.sessionContext.session?.kernel ?? null;

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
          const current = (await runInKernel(kernel, '%load_ext mlops_jupyter')) ?? autolog.get(kernel.id) ?? 'off';
          const wanted = current === 'on' ? 'off' : 'on';
          const now = (await runInKernel(kernel, `%mlops autolog ${wanted}`)) ?? wanted;
          autolog.set(kernel.id, now);
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
