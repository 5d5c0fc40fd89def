import { GraphApiError, GraphNetworkError, type MetaErrorBody } from './graph-errors';
import { fetchGraph } from './graph-http';
import type { GraphApi } from '../db/channels';
import type { UsageReport } from './usage-headers';

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
    const { res, json, usage } = await fetchGraph(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${target.accessToken}` }, body: JSON.stringify(body), timeoutMs: this.opts.timeoutMs },
      'Graph API',
    );
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
