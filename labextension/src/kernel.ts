/**
 * What the sidebar and the status bar learn from a notebook's kernel, without touching the
 * notebook: a silent execute (no history, no output) whose `user_expressions` report the
 * kernel's MLOps state. The expression imports nothing that is not loaded already, so asking
 * a kernel that never used mlops_jupyter costs nothing and reports nothing.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { IKernelState, parseKernelState } from './model';
import { MLOpsError } from './request';

export { IKernelState, parseKernelState };

export const KERNEL_STATE_EXPRESSION =
  '(lambda os, sys, json: json.dumps({' +
  "'tenant': os.environ.get('MLOPS_TENANT') or None, " +
  "'autolog': 'on' if 'mlops_jupyter.notebook.magics' in sys.modules and getattr(" +
  "sys.modules['mlops_jupyter.notebook.magics'].get_magics(get_ipython()), 'autolog_obj', None) is not None and " +
  "sys.modules['mlops_jupyter.notebook.magics'].get_magics(get_ipython()).autolog_obj.enabled else 'off', " +
  "'mlflow_ui': sys.modules['mlops_jupyter.notebook.magics.ui'].current_url() " +
  "if 'mlops_jupyter.notebook.magics.ui' in sys.modules else None}))" +
  "(__import__('os'), __import__('sys'), __import__('json'))";

/**
 * Run `code` silently in `kernel` and return its MLOps state afterwards.
 *
 * @throws MLOpsError when the code fails or the kernel answers anything but ok.
 */
export async function runInKernel(kernel: Kernel.IKernelConnection, code = ''): Promise<IKernelState | null> {
  const future = kernel.requestExecute({
    code,
    silent: true,
    store_history: false,
    allow_stdin: false,
    stop_on_error: false,
    user_expressions: { state: KERNEL_STATE_EXPRESSION }
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content;
  if (content.status === 'error') {
    throw new MLOpsError(`${content.ename}: ${content.evalue}`);
  }
  if (content.status !== 'ok') {
    throw new MLOpsError(`the kernel answered ${content.status}`);
  }
  const expr = content.user_expressions?.['state'] as { status: string; data?: Record<string, string> } | undefined;
  return expr?.status === 'ok' ? parseKernelState(String(expr.data?.['text/plain'] ?? '')) : null;
}
