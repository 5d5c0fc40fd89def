import type { LatencySummary } from './stats';
import { summarize } from './stats';

/**
 * What one phase sent, per message index i (customer = i % customers.length), in bounded typed
 * arrays, and the matching of Send API calls recorded by the sandbox back to those messages.
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
}

export interface ReplyAnalysis {
  sendCalls: number;
  sendCallsNon200: number;
  /** Distinct messages with at least one successful Send API call (accepted or not). */
  repliedMessages: number;
  /** Accepted (200) messages with no successful Send API call. */
  missing: number;
  missingExamples: string[];
  /** Successful Send API calls beyond the first for the same outbound message (same `sb:out:` metadata). */
  duplicateCalls: number;
  duplicateExamples: string[];
  /** Messages that got more than one outbound reply row (different metadata, same customer message). */
  repliedTwice: number;
  /** Replies to messages the gateway did not answer 200 (the hand-off reached Temporal anyway). */
  repliesToUnacknowledged: number;
  /** Calls whose message the database could not name (no metadata, or an outbound row of another run). */
  unattributed: number;
  /** k-th reply ↔ k-th accepted message of the customer, checked against metadata → in_reply_to → mid. */
  pairingChecked: number;
  pairingMismatches: number;
  /** Replies that reached the Send API before the reply to an earlier message of the same conversation. */
  outOfOrder: number;
  /** Sandbox receivedAt − webhook send time, one sample per replied message. */
  inboundToSendMs: LatencySummary | null;
  firstQuarterP50: number | null;
  lastQuarterP50: number | null;
  lastReplyAt: number | null;
}

export class PhaseLedger {
  readonly sendEpoch: Float64Array;
  readonly ackMs: Float64Array;
  readonly outcome: Int16Array;
  private readonly customerIndex: Map<string, number>;

  constructor(readonly total: number, readonly customers: string[], readonly midPrefix: string) {
    this.sendEpoch = new Float64Array(total);
    this.ackMs = new Float64Array(total).fill(NaN);
    this.outcome = new Int16Array(total);
    this.customerIndex = new Map(customers.map((c, k) => [c, k]));
  }

  customerOf(i: number): string {
    return this.customers[i % this.customers.length]!;
  }

  mid(i: number): string {
    return this.midPrefix + i;
  }

  isOurs(call: SendCall): boolean {
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
   * Matches calls (already filtered to this phase's customers) to messages. `answers` maps an
   * outbound message id to the index of the inbound message it answers (from the database).
   */
  analyze(calls: SendCall[], answers: Map<string, number>): ReplyAnalysis {
    const C = this.customers.length;
    const perCustomer = new Map<number, SendCall[]>();
    for (const c of calls) {
      const k = this.customerIndex.get(c.recipient);
      if (k === undefined) continue;
      const list = perCustomer.get(k) ?? [];
      list.push(c);
      perCustomer.set(k, list);
    }
    const replied = new Uint8Array(this.total);
    const e2e = new Float64Array(this.total).fill(NaN);
    const samples: number[] = [];
    const seenOutbound = new Set<string>();
    const a = {
      sendCalls: calls.length,
      sendCallsNon200: 0,
      duplicateCalls: 0,
      duplicateExamples: [] as string[],
      repliedTwice: 0,
      repliesToUnacknowledged: 0,
      unattributed: 0,
      pairingChecked: 0,
      pairingMismatches: 0,
      outOfOrder: 0,
    };
    let lastReplyAt: number | null = null;

    for (const [k, list] of perCustomer) {
      list.sort((x, y) => x.receivedAt - y.receivedAt);
      const acceptedOfCustomer: number[] = [];
      for (let i = k; i < this.total; i += C) if (this.outcome[i] === 200) acceptedOfCustomer.push(i);
      let ordinal = 0;
      let previous = -1;
      for (const call of list) {
        // A non-200 answer (none expected from the sandbox without faults) is a failed attempt, not a reply.
        if (call.status !== 200) {
          a.sendCallsNon200++;
          continue;
        }
        if (call.outboundId !== null) {
          if (seenOutbound.has(call.outboundId)) {
            a.duplicateCalls++;
            if (a.duplicateExamples.length < 5) {
              const i = answers.get(call.outboundId);
              a.duplicateExamples.push(`outbound ${call.outboundId} to ${call.recipient} (answers ${i === undefined ? '?' : this.mid(i)})`);
            }
            continue;
          }
          seenOutbound.add(call.outboundId);
        }
        lastReplyAt = Math.max(lastReplyAt ?? 0, call.receivedAt);
        const byOrder = acceptedOfCustomer[ordinal++];
        const exact = call.outboundId !== null ? answers.get(call.outboundId) : undefined;
        if (exact === undefined) a.unattributed++;
        else {
          a.pairingChecked++;
          if (exact !== byOrder) a.pairingMismatches++;
          if (this.outcome[exact] !== 200) a.repliesToUnacknowledged++;
          if (exact < previous) a.outOfOrder++;
          previous = Math.max(previous, exact);
        }
        // Latency from the message the reply really answers when the database names it, else the k-th pairing.
        const i = exact ?? byOrder;
        if (i === undefined) continue;
        if (replied[i]) {
          a.repliedTwice++;
          continue;
        }
        replied[i] = 1;
        const ms = call.receivedAt - this.sendEpoch[i]!;
        e2e[i] = ms;
        samples.push(ms);
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
      repliedMessages,
      missing,
      missingExamples,
      inboundToSendMs: summarize(samples),
      firstQuarterP50: quarter ? p50Of(0, quarter) : null,
      lastQuarterP50: quarter ? p50Of(this.total - quarter, this.total) : null,
      lastReplyAt,
    };
  }
}
