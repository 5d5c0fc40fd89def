import type { LatencySummary } from './stats';
import { summarize } from './stats';

/**
 * What one phase sent, per message index i, in bounded typed arrays, and the matching of Send API
 * calls recorded by the sandbox back to those messages.
 *
 * A reply may answer several messages: the conversation workflow debounces a burst (messages of
 * one conversation inside the tenant's quiet window) into ONE outbound row whose `covers` lists
 * every inbound message it answers (`in_reply_to` = the newest). So the pairing goes
 *   Send API call → metadata `sb:out:<outbound id>` → the row's covers → inbound mids → i,
 * and a message is answered when a row covering it had a successful Send API call.
 */

export const OUT_NONE = 0;
export const OUT_TIMEOUT = -1;
export const OUT_NETWORK = -2;
export const OUT_SKIPPED = -3;

export interface SendCall {
  recipient: string;
  receivedAt: number;
  status: number;
  /** From `message.metadata` = `sb:out:<outbound message id>`. */
  outboundId: string | null;
  /** The Send API's `message_id` for an accepted message (what delivery receipts name). */
  messageId: string | null;
}

/** An outbound row of the bench channel, reduced to the messages of this ledger it answers. */
export interface OutboundCover {
  id: string;
  status: string;
  author: string;
  /** Ledger indexes of covers ∪ {in_reply_to}, ascending. */
  covers: number[];
  /** Ledger index of in_reply_to (null when it is not a message of this ledger, or absent). */
  inReplyTo: number | null;
}

/** One reply that reached the Send API: what phase 4 reacts to and acknowledges. */
export interface AnsweredReply {
  outboundId: string;
  customer: string;
  /** The newest message it covers (the one a customer would react to). */
  newest: number;
  messageId: string | null;
  receivedAt: number;
}

export interface ReplyAnalysis {
  sendCalls: number;
  sendCallsNon200: number;
  /** Successful Send API calls (first or not). */
  sendCallsOk: number;
  /** Distinct outbound rows with a successful Send API call. */
  repliesSent: number;
  /** Distinct messages covered by a reply that was sent (accepted webhooks or not). */
  repliedMessages: number;
  /** Sent replies covering more than one message (debounced bursts), and the messages they cover. */
  burstReplies: number;
  messagesInBurstReplies: number;
  /** Accepted (200) messages covered by no sent reply. */
  missing: number;
  missingExamples: string[];
  /** Successful Send API calls beyond the first for the same outbound row (same `sb:out:` metadata). */
  duplicateCalls: number;
  duplicateExamples: string[];
  /** Messages covered by more than one outbound row (any status): two answers decided for one message. */
  coveredTwice: number;
  coveredTwiceExamples: string[];
  /** Rows whose in_reply_to is not the newest message they cover (the schema's promise). */
  inReplyToNotNewest: number;
  /** Replies to messages the gateway did not answer 200 (the hand-off reached Temporal anyway). */
  repliesToUnacknowledged: number;
  /**
   * Successful calls to this phase's customers that pair with no customer message: no metadata,
   * an outbound row the database does not have, or a row covering none of our messages (a human
   * agent's message, a reply to an echo, a reaction or a receipt).
   */
  unattributed: number;
  unattributedExamples: string[];
  /** Replies that reached the Send API before the reply to an earlier message of the same conversation. */
  outOfOrder: number;
  /** Sandbox receivedAt − webhook send time, one sample per answered message (every covered one). */
  inboundToSendMs: LatencySummary | null;
  /** The same, only for messages answered alone (no burst): the latency a lone message sees. */
  inboundToSendSingleMs: LatencySummary | null;
  firstQuarterP50: number | null;
  lastQuarterP50: number | null;
  lastReplyAt: number | null;
  /** Sent replies in send order; phase 4 samples them. */
  answered: AnsweredReply[];
}

export class PhaseLedger {
  readonly sendEpoch: Float64Array;
  readonly ackMs: Float64Array;
  readonly outcome: Int16Array;
  private readonly customerIndex: Map<string, number>;

  /**
   * `burst` consecutive messages go to the same conversation (1 = round robin, one message per
   * conversation per turn): with a burst > 1 and a rate high enough, they fall inside the quiet
   * window and should get one answer.
   */
  constructor(readonly total: number, readonly customers: string[], readonly midPrefix: string, readonly burst = 1) {
    this.sendEpoch = new Float64Array(total);
    this.ackMs = new Float64Array(total).fill(NaN);
    this.outcome = new Int16Array(total);
    this.customerIndex = new Map(customers.map((c, k) => [c, k]));
  }

  customerOf(i: number): string {
    return this.customers[Math.floor(i / this.burst) % this.customers.length]!;
  }

  mid(i: number): string {
    return this.midPrefix + i;
  }

  /** The index of one of our mids, or undefined for anyone else's. */
  indexOfMid(mid: string): number | undefined {
    if (!mid.startsWith(this.midPrefix)) return undefined;
    const tail = mid.slice(this.midPrefix.length);
    if (!/^\d+$/.test(tail)) return undefined;
    const i = Number(tail);
    return i < this.total ? i : undefined;
  }

  isOurs(call: { recipient: string }): boolean {
    return this.customerIndex.has(call.recipient);
  }

  accepted(): number {
    let n = 0;
    for (let i = 0; i < this.total; i++) if (this.outcome[i] === 200) n++;
    return n;
  }

  ackSummary(): LatencySummary | null {
    return summarize(this.ackMs.filter((v) => !Number.isNaN(v)));
  }

  /**
   * Matches calls (already filtered to this phase's customers) to messages through the outbound
   * rows of the database (`rows`: already reduced to this ledger's messages).
   */
  analyze(calls: SendCall[], rows: OutboundCover[]): ReplyAnalysis {
    const byId = new Map(rows.map((r) => [r.id, r]));
    const coverCount = new Uint16Array(this.total);
    const a = {
      sendCalls: calls.length,
      sendCallsNon200: 0,
      sendCallsOk: 0,
      duplicateCalls: 0,
      duplicateExamples: [] as string[],
      coveredTwice: 0,
      coveredTwiceExamples: [] as string[],
      inReplyToNotNewest: 0,
      repliesToUnacknowledged: 0,
      unattributed: 0,
      unattributedExamples: [] as string[],
      outOfOrder: 0,
      burstReplies: 0,
      messagesInBurstReplies: 0,
    };
    for (const r of rows) {
      if (r.covers.length === 0) continue;
      if (r.inReplyTo !== null && r.inReplyTo !== r.covers[r.covers.length - 1]) a.inReplyToNotNewest++;
      for (const i of r.covers) {
        coverCount[i] = coverCount[i]! + 1;
        if (coverCount[i] === 2) {
          a.coveredTwice++;
          if (a.coveredTwiceExamples.length < 5) a.coveredTwiceExamples.push(`${this.mid(i)} (customer ${this.customerOf(i)})`);
        }
      }
    }

    // First successful call per outbound row, in the order the sandbox received them.
    const sorted = [...calls].sort((x, y) => x.receivedAt - y.receivedAt);
    const firstCall = new Map<string, SendCall>();
    for (const call of sorted) {
      // A non-200 answer (none expected from the sandbox without faults) is a failed attempt, not a reply.
      if (call.status !== 200) {
        a.sendCallsNon200++;
        continue;
      }
      a.sendCallsOk++;
      const row = call.outboundId === null ? undefined : byId.get(call.outboundId);
      if (!row || row.covers.length === 0) {
        a.unattributed++;
        if (a.unattributedExamples.length < 5) a.unattributedExamples.push(`to ${call.recipient}, metadata ${call.outboundId === null ? 'none' : `sb:out:${call.outboundId}`}${row ? ` (row by ${row.author}, covers none of our messages)` : ''}`);
        continue;
      }
      if (firstCall.has(row.id)) {
        a.duplicateCalls++;
        if (a.duplicateExamples.length < 5) a.duplicateExamples.push(`outbound ${row.id} to ${call.recipient} (covers ${row.covers.map((i) => this.mid(i)).join(', ')})`);
        continue;
      }
      firstCall.set(row.id, call);
    }

    const replied = new Uint8Array(this.total);
    const e2e = new Float64Array(this.total).fill(NaN);
    const samples: number[] = [];
    const single: number[] = [];
    const answered: AnsweredReply[] = [];
    const lastNewestOf = new Map<string, number>();
    let lastReplyAt: number | null = null;
    for (const [id, call] of firstCall) {
      const row = byId.get(id)!;
      lastReplyAt = Math.max(lastReplyAt ?? 0, call.receivedAt);
      const newest = row.covers[row.covers.length - 1]!;
      // The workflow sends a conversation's replies one at a time: a reply covering an earlier message after a later one is out of order.
      const before = lastNewestOf.get(call.recipient);
      if (before !== undefined && row.covers[0]! < before) a.outOfOrder++;
      lastNewestOf.set(call.recipient, Math.max(before ?? -1, newest));
      if (row.covers.length > 1) {
        a.burstReplies++;
        a.messagesInBurstReplies += row.covers.length;
      }
      answered.push({ outboundId: id, customer: call.recipient, newest, messageId: call.messageId, receivedAt: call.receivedAt });
      for (const i of row.covers) {
        if (replied[i]) continue; // covered twice: counted above, the first answer's latency stands
        replied[i] = 1;
        if (this.outcome[i] !== 200) a.repliesToUnacknowledged++;
        const ms = call.receivedAt - this.sendEpoch[i]!;
        e2e[i] = ms;
        samples.push(ms);
        if (row.covers.length === 1) single.push(ms);
      }
    }

    let repliedMessages = 0;
    for (let i = 0; i < this.total; i++) repliedMessages += replied[i]!;
    let missing = 0;
    const missingExamples: string[] = [];
    for (let i = 0; i < this.total; i++) {
      if (this.outcome[i] === 200 && !replied[i]) {
        missing++;
        if (missingExamples.length < 5) missingExamples.push(`${this.mid(i)} (customer ${this.customerOf(i)})`);
      }
    }
    const quarter = Math.floor(this.total / 4);
    const p50Of = (from: number, to: number) => summarize(e2e.subarray(from, to).filter((v) => !Number.isNaN(v)))?.p50 ?? null;
    return {
      ...a,
      repliesSent: firstCall.size,
      repliedMessages,
      missing,
      missingExamples,
      inboundToSendMs: summarize(samples),
      inboundToSendSingleMs: summarize(single),
      firstQuarterP50: quarter ? p50Of(0, quarter) : null,
      lastQuarterP50: quarter ? p50Of(this.total - quarter, this.total) : null,
      lastReplyAt,
      answered,
    };
  }
}
