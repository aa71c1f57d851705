/**
 * The one way the sidebar talks to the server: `requestAPI<T>()`, which throws typed errors.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Base of every error `requestAPI` throws. */
export class MLOpsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MLOpsError';
  }
}

/** The server could not be reached (network down, server stopped). */
export class MLOpsNetworkError extends MLOpsError {
  constructor(message: string) {
    super(message);
    this.name = 'MLOpsNetworkError';
  }
}

/**
 * The server answered with an error: `status` is the HTTP status, `type` the server's error
 * class (`ModelNotFoundError`, `ValidationError`, `DeploymentError`, ...), `allowed` what
 * the server would have accepted, when it says.
 */
export class MLOpsAPIError extends MLOpsError {
  readonly status: number;
  readonly type: string;
  readonly allowed: unknown;

  constructor(status: number, type: string, message: string, allowed?: unknown) {
    super(message);
    this.name = 'MLOpsAPIError';
    this.status = status;
    this.type = type;
    this.allowed = allowed;
  }

  /** A feature of the server that is not built or not available (HTTP 501). */
  get notAvailable(): boolean {
    return this.status === 501;
  }
}

/** The API's base path under Jupyter's base URL. */
export const API_PATH = 'mlops/api';

export interface IRequestOptions extends RequestInit {
  /** Query arguments, added to the URL. */
  query?: Record<string, string | number | undefined | null>;
  /** For background refreshes: do not count as user activity (Jupyter's idle culling). */
  background?: boolean;
}

/**
 * Call the MLOps REST API (`{baseUrl}/mlops/api/{endPoint}`) and return its JSON.
 *
 * @throws MLOpsNetworkError when the server cannot be reached.
 * @throws MLOpsAPIError when it answers with an error (4xx/5xx), with the server's message.
 */
export async function requestAPI<T>(endPoint = '', options: IRequestOptions = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const { query, background, ...init } = options;
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') {
      args[k] = String(v);
    }
  }
  if (background) {
    args['no_track_activity'] = '1';
  }
  const qs = Object.keys(args).length ? URLExt.objectToQueryString(args) : '';
  const url = URLExt.join(settings.baseUrl, API_PATH, endPoint) + qs;
  if (init.body !== undefined && !(init.headers as Record<string, string> | undefined)?.['Content-Type']) {
    init.headers = { ...(init.headers as Record<string, string> | undefined), 'Content-Type': 'application/json' };
  }

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new MLOpsNetworkError(
      `Cannot reach the Jupyter server for ${endPoint || 'the MLOps API'}: ${String(error)}`
    );
  }

  const text = await response.text();
  let data: any = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!response.ok) {
    if (data && typeof data === 'object' && typeof data.message === 'string') {
      throw new MLOpsAPIError(response.status, String(data.error ?? 'HTTPError'), data.message, data.allowed);
    }
    const hint =
      response.status === 404
        ? ' (is the mlops_jupyter server extension enabled? `jupyter server extension list`)'
        : '';
    throw new MLOpsAPIError(
      response.status,
      'HTTPError',
      `${response.status} ${response.statusText} from ${endPoint}${hint}`
    );
  }
  if (data === undefined) {
    throw new MLOpsAPIError(response.status, 'InvalidResponse', `The server's answer to ${endPoint} is not JSON.`);
  }
  return data as T;
}

/** POST a JSON body with `requestAPI`. */
export function postAPI<T>(endPoint: string, body: unknown, query?: IRequestOptions['query']): Promise<T> {
  return requestAPI<T>(endPoint, { method: 'POST', body: JSON.stringify(body), query });
}
