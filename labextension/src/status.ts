/**
 * The status-bar item: cell autolog in the active notebook's kernel and the serving
 * gateway's state, as jupyter-resource-usage shows memory. Clicking it opens the sidebar.
 */
import { Widget } from '@lumino/widgets';

import { IGateway, statusText } from './model';
import { requestAPI } from './request';

export class MLOpsStatus extends Widget {
  /** Milliseconds between reads of the gateway's state. */
  pollInterval = 15000;
  /** The tenant whose gateway state is read (the sidebar's). */
  tenant: () => string | null = () => null;

  private autolog: 'on' | 'off' | null = null;
  private gateway: IGateway | null = null;
  private timer: number | null = null;

  constructor(onClick: () => void) {
    super({ node: document.createElement('button') });
    this.addClass('jp-MLOps-statusItem');
    this.node.setAttribute('type', 'button');
    this.node.addEventListener('click', onClick);
    this.render();
  }

  setAutolog(state: 'on' | 'off' | null): void {
    this.autolog = state;
    this.render();
  }

  setGateway(gateway: IGateway | null | undefined): void {
    this.gateway = gateway ?? null;
    this.render();
  }

  /** Read the gateway's state now and every `pollInterval` ms (not counted as activity). */
  start(): void {
    const poll = async () => {
      if (document.hidden) {
        return;
      }
      try {
        const info = await requestAPI<{ gateway?: IGateway }>('info', {
          background: true,
          query: { tenant: this.tenant() ?? undefined }
        });
        this.setGateway(info.gateway);
      } catch {
        this.setGateway(null);
      }
    };
    void poll();
    this.timer = window.setInterval(() => void poll(), this.pollInterval);
  }

  dispose(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
    }
    super.dispose();
  }

  private render(): void {
    const text = statusText(this.autolog, this.gateway);
    this.node.textContent = text;
    this.node.title = `${text}. Click to open the MLOps sidebar.`;
    this.node.setAttribute('aria-label', `${text}. Open the MLOps sidebar`);
    this.node.dataset.autolog = this.autolog ?? '';
    this.node.dataset.gateway = this.gateway ? (this.gateway.running ? 'running' : 'stopped') : '';
  }
}
