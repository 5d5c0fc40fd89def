import { GraphApiError, GraphNetworkError, type MetaErrorBody } from './graph-errors';
import type { GraphApi } from '../db/channels';

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

export interface SendMessageRequest {
  recipient: { id: string };
  messaging_type: 'RESPONSE' | 'UPDATE' | 'MESSAGE_TAG';
  message: { text: string; metadata?: string };
  tag?: 'HUMAN_AGENT';
}

export interface SendMessageResult {
  recipientId: string | undefined;
  messageId: string;
}

/** `X-Business-Use-Case-Usage`: {"<id>":[{"estimated_time_to_regain_access": <minutes>, …}]}. */
export function regainAccessSeconds(header: string | null): number | undefined {
  if (!header) return undefined;
  try {
    const usage = JSON.parse(header) as Record<string, Array<{ estimated_time_to_regain_access?: number }>>;
    const minutes = Math.max(0, ...Object.values(usage).flat().map((u) => u.estimated_time_to_regain_access ?? 0));
    return minutes > 0 ? minutes * 60 : undefined;
  } catch {
    return undefined;
  }
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
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const error = (json as { error?: MetaErrorBody } | undefined)?.error;
      throw new GraphApiError(res.status, error, regainAccessSeconds(res.headers.get('x-business-use-case-usage')));
    }
    const ok = json as { recipient_id?: string; message_id?: string } | undefined;
    if (!ok?.message_id) throw new GraphApiError(res.status, { message: 'success response without message_id', code: 1 });
    return { recipientId: ok.recipient_id, messageId: ok.message_id };
  }
}
