import { GraphApiError, GraphNetworkError, type MetaErrorBody } from './graph-errors';
import type { GraphApi } from '../db/channels';
import { parseUsage, type UsageReport } from './usage-headers';

export interface GraphClientOptions {
  /** graph.facebook.com (Page tokens) or the sandbox. */
  graphBase: string;
  /** graph.instagram.com (Instagram-Login tokens) or the sandbox. */
  instagramBase: string;
  version: string;
  timeoutMs: number;
}

export interface SendTarget {
  graphApi: GraphApi;
  accountId: string;
  accessToken: string;
}

/** Contract §3.2: `tag` sits beside `messaging_type` (not inside `message`) and only with MESSAGE_TAG. */
export type SendMessageRequest = {
  recipient: { id: string };
  message: { text: string; metadata?: string };
} & ({ messaging_type: 'RESPONSE' | 'UPDATE'; tag?: never } | { messaging_type: 'MESSAGE_TAG'; tag: 'HUMAN_AGENT' });

export interface SendMessageResult {
  recipientId: string | undefined;
  messageId: string;
  /** Meta's usage headers on the answer, for the channel's send budget. */
  usage: UsageReport;
}

export class GraphClient {
  constructor(private readonly opts: GraphClientOptions) {}

  private base(api: GraphApi): string {
    return api === 'instagram' ? this.opts.instagramBase : this.opts.graphBase;
  }

  /** Send API (contract §3). The token goes in a header, never in a URL that proxies might log. */
  async sendMessage(target: SendTarget, body: SendMessageRequest): Promise<SendMessageResult> {
    const url = `${this.base(target.graphApi).replace(/\/$/, '')}/${this.opts.version}/${encodeURIComponent(target.accountId)}/messages`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${target.accessToken}` },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      // Refused or unresolvable: nothing reached Meta. A timeout or reset may have been delivered.
      const ambiguous = !(cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOTFOUND');
      throw new GraphNetworkError(`Graph API request failed: ${(err as Error).name}${cause?.code ? ` (${cause.code})` : ''}`, ambiguous);
    }
    const usage = parseUsage(res.headers);
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      // A refusal stays a refusal without its body; a success cut off may or may not have been accepted.
      if (!res.ok) throw new GraphApiError(res.status, undefined, usage);
      throw new GraphNetworkError(`Graph API answer was cut off: ${(err as Error).name}`, true);
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const error = (json as { error?: MetaErrorBody } | undefined)?.error;
      throw new GraphApiError(res.status, error, usage);
    }
    const ok = json as { recipient_id?: string; message_id?: string } | undefined;
    // A 2xx we cannot read (a proxy's page, a truncated body) may still have been delivered: retrying blindly could send twice.
    if (!ok?.message_id) throw new GraphNetworkError(`Graph API answered HTTP ${res.status} without a message_id`, true);
    return { recipientId: ok.recipient_id, messageId: ok.message_id, usage };
  }
}
