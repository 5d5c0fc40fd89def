import { controlRequest } from './http';

/**
 * Meta echoes every message a Page sends back to the webhook (`message_echoes`); the Graph API
 * sandbox does the same when asked (`POST /_sandbox/echo`), so the benchmark turns echoes on for
 * its run: the gateway and the conversation workflows then carry that load as in production, and
 * an echo that is mistaken for a customer (answered) or for a human (handoff) shows up.
 *
 * The sandbox keeps only its last 1,000 echo deliveries, so the tracker polls them while a phase
 * runs and accumulates them by mid (each echo is one accepted Send API message).
 */

interface EchoDeliveryRecord {
  mid: string;
  accountId?: string;
  at: number;
  status?: number;
  error?: string;
}

interface EchoControl {
  echo: { webhookUrl: string; delayMs: number; appId: number } | null;
  deliveries: EchoDeliveryRecord[];
}

export interface EchoCounts {
  /** Echo webhooks the sandbox attempted for our page since the tracker started. */
  attempted: number;
  /** …answered 200 by the gateway. */
  delivered: number;
  /** …answered otherwise, failed (timeout, connection) or skipped; by status or error. */
  failed: Record<string, number>;
  /** Polls that found the sandbox's ring buffer had overflowed since the previous one: counts are a lower bound. */
  gaps: number;
}

export class EchoTracker {
  private readonly seen = new Map<string, string>();
  private gaps = 0;
  private lastAt: number;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private previous: EchoControl['echo'] = null;
  private enabled = false;

  constructor(
    private readonly sandbox: string,
    private readonly pageId: string,
    private readonly since: number,
  ) {
    this.lastAt = since;
  }

  /**
   * Turns echoes on towards the gateway, or off (`webhookUrl` null: the dev stack starts with
   * them on), remembering what was configured before.
   */
  async configure(webhookUrl: string | null, appSecret: string): Promise<void> {
    this.previous = (await controlRequest<EchoControl>(`${this.sandbox}/_sandbox/echo`, 'GET'))?.echo ?? null;
    if (webhookUrl) await controlRequest(`${this.sandbox}/_sandbox/echo`, 'POST', 10_000, { webhookUrl, appSecret });
    else await controlRequest(`${this.sandbox}/_sandbox/echo`, 'DELETE', 10_000);
    this.enabled = true;
  }

  /** Restores the sandbox's echo setting as it was before (off unless the stack was started with echoes). */
  async restore(appSecret: string): Promise<void> {
    if (!this.enabled) return;
    this.enabled = false;
    const p = this.previous;
    if (p) await controlRequest(`${this.sandbox}/_sandbox/echo`, 'POST', 10_000, { webhookUrl: p.webhookUrl, appSecret, delayMs: p.delayMs, appId: p.appId });
    else await controlRequest(`${this.sandbox}/_sandbox/echo`, 'DELETE', 10_000);
  }

  /** Polls every `intervalMs` until stop(); failures of one poll are ignored (the next one catches up). */
  start(intervalMs = 2000): void {
    this.timer ??= setInterval(() => void this.poll(), intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.poll();
  }

  poll(): Promise<void> {
    // One poll at a time: an overlapping one would only fetch the same records again.
    this.polling ??= this.fetchOnce().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async fetchOnce(): Promise<void> {
    let control: EchoControl | undefined;
    try {
      control = await controlRequest<EchoControl>(`${this.sandbox}/_sandbox/echo`, 'GET', 10_000);
    } catch {
      return;
    }
    const deliveries = control?.deliveries ?? [];
    // A full buffer whose oldest record is newer than what we last saw has dropped records in between.
    if (deliveries.length >= 1000 && deliveries[0]!.at > this.lastAt) this.gaps++;
    for (const d of deliveries) {
      if (d.at < this.since || d.accountId !== this.pageId) continue;
      this.lastAt = Math.max(this.lastAt, d.at);
      this.seen.set(d.mid, d.status === 200 ? 'ok' : d.status !== undefined ? `HTTP ${d.status}` : (d.error ?? 'unknown'));
    }
  }

  counts(): EchoCounts {
    const failed: Record<string, number> = {};
    let delivered = 0;
    for (const outcome of this.seen.values()) {
      if (outcome === 'ok') delivered++;
      else failed[outcome] = (failed[outcome] ?? 0) + 1;
    }
    return { attempted: this.seen.size, delivered, failed, gaps: this.gaps };
  }

  /** Mids of the Send API messages whose echo the gateway accepted. */
  deliveredMids(): Set<string> {
    return new Set([...this.seen].filter(([, o]) => o === 'ok').map(([mid]) => mid));
  }
}
