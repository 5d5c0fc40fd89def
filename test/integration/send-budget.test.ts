import { randomBytes, randomUUID } from 'node:crypto';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { createPool, type Pool } from '../../src/db/pool';
import { ChannelNotFoundError, recordUsageFeedback, reserveSendSlot, sendBudgetStatus } from '../../src/db/send-budget';
import { createTenant } from '../../src/db/tenants';
import type { SendSlot } from '../../src/shared/types';
import { createTestDatabase, type TestDatabase } from '../support/stack';

let db: TestDatabase;
let vault: SecretVault;
let tenantId: string;
let nextAccount = 104829376511000;

beforeAll(async () => {
  db = await createTestDatabase();
  vault = new SecretVault(db.pool, new StaticKeyProvider(new Map([[1, randomBytes(32)]])));
  tenantId = (await createTenant(db.pool, 'Budget Shop')).id;
});
afterAll(() => db.drop());

async function newChannel(ratePerSec?: number): Promise<string> {
  const { id } = await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId: String(nextAccount++), accessToken: 'EAAB-budget-test' });
  if (ratePerSec !== undefined) await db.ownerPool.query('UPDATE channels SET send_rate_per_sec = $2 WHERE id = $1', [id, ratePerSec]);
  return id;
}

const at = (base: Date, ms: number) => new Date(base.getTime() + ms);
const T0 = new Date('2026-03-01T12:00:00.000Z');

describe('reserveSendSlot (token bucket per channel)', () => {
  it('grants the default 20/s as 20 immediate sends, then asks for a 50 ms wait, then grants again', async () => {
    const channelId = await newChannel();
    const slots: SendSlot[] = [];
    for (let i = 0; i < 20; i++) slots.push(await reserveSendSlot(db.pool, tenantId, channelId, T0));
    expect(slots.every((s) => s.granted)).toBe(true);

    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'budget', waitMs: 50 });
    // A refusal takes nothing: asking again at the same instant gives the same answer.
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'budget', waitMs: 50 });
    // Half-way there: the rest of the wait.
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 30))).toEqual({ granted: false, reason: 'budget', waitMs: 20 });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 50))).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 50))).toMatchObject({ granted: false, reason: 'budget', waitMs: 50 });
  });

  it('refills continuously but never beyond one second of the rate', async () => {
    const channelId = await newChannel(5);
    for (let i = 0; i < 5; i++) expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'budget', waitMs: 200 });
    // An hour idle still only buys a 1 s burst.
    const later = at(T0, 3_600_000);
    let granted = 0;
    while ((await reserveSendSlot(db.pool, tenantId, channelId, later)).granted) granted++;
    expect(granted).toBe(5);
    expect((await sendBudgetStatus(db.pool, tenantId, channelId, later))!.tokens).toBeCloseTo(0, 9);
  });

  it('keeps a rate below 1/s usable (a bucket holds at least one token)', async () => {
    const channelId = await newChannel(0.5);
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'budget', waitMs: 2000 });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 2000))).toEqual({ granted: true });
  });

  it('grants exactly the capacity to 100 concurrent reservations from two worker pools', async () => {
    const channelId = await newChannel(20);
    // A second pool stands in for a second worker process: separate connections, same row.
    const other: Pool = createPool(db.url, 10);
    try {
      const now = new Date();
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => reserveSendSlot(i % 2 === 0 ? db.pool : other, tenantId, channelId, now)));
      expect(results.filter((r) => r.granted)).toHaveLength(20);
      const refused = results.filter((r): r is Extract<SendSlot, { granted: false }> => !r.granted);
      expect(refused).toHaveLength(80);
      for (const r of refused) expect(r).toEqual({ granted: false, reason: 'budget', waitMs: 50 });
      const { rows } = await db.ownerPool.query<{ tokens: number }>('SELECT tokens FROM channel_send_budgets WHERE channel_id = $1', [channelId]);
      expect(rows[0]!.tokens).toBeCloseTo(0, 9);
    } finally {
      await other.end();
    }
  });

  it('keeps channels apart', async () => {
    const a = await newChannel(1);
    const b = await newChannel(1);
    expect(await reserveSendSlot(db.pool, tenantId, a, T0)).toEqual({ granted: true });
    expect((await reserveSendSlot(db.pool, tenantId, a, T0)).granted).toBe(false);
    expect(await reserveSendSlot(db.pool, tenantId, b, T0)).toEqual({ granted: true });
  });

  it('refuses an unknown channel with a typed error', async () => {
    const missing = randomUUID();
    await expect(reserveSendSlot(db.pool, tenantId, missing, T0)).rejects.toBeInstanceOf(ChannelNotFoundError);
    await expect(reserveSendSlot(db.pool, tenantId, missing, T0)).rejects.toThrow(`channel ${missing} does not exist`);
    await expect(recordUsageFeedback(db.pool, tenantId, missing, { maxPercent: 10 }, T0)).rejects.toBeInstanceOf(ChannelNotFoundError);
    expect(await sendBudgetStatus(db.pool, tenantId, missing)).toBeNull();
  });
});

describe('pauses', () => {
  it('a throttle code pauses the channel: nothing is granted until the pause ends, then the bucket is there again', async () => {
    const channelId = await newChannel(20);
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: true });
    const result = await recordUsageFeedback(db.pool, tenantId, channelId, { throttled: { code: 613, retryAfterMs: 10_000 } }, T0);
    expect(result.pausedUntil).toEqual(at(T0, 10_000));

    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'paused', waitMs: 10_000 });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 9_999))).toEqual({ granted: false, reason: 'paused', waitMs: 1 });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 10_000))).toEqual({ granted: true });

    const status = await sendBudgetStatus(db.pool, tenantId, channelId, at(T0, 5_000));
    expect(status).toMatchObject({ pausedUntil: at(T0, 10_000), pauseReason: 'code 613' });
    expect((await sendBudgetStatus(db.pool, tenantId, channelId, at(T0, 10_001)))!.pausedUntil).toBeNull();
  });

  it("Meta's regain time pauses the channel with the usage as the reason", async () => {
    const channelId = await newChannel();
    const result = await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 97, regainAccessSeconds: 120 }, T0);
    expect(result.pausedUntil).toEqual(at(T0, 120_000));
    expect(await sendBudgetStatus(db.pool, tenantId, channelId, T0)).toMatchObject({ pauseReason: 'usage 97%, regain in 120 s' });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 60_000))).toEqual({ granted: false, reason: 'paused', waitMs: 60_000 });
  });

  it('never shortens a longer pause, and a longer one extends it', async () => {
    const channelId = await newChannel();
    await recordUsageFeedback(db.pool, tenantId, channelId, { regainAccessSeconds: 300, maxPercent: 100 }, T0);
    const shorter = await recordUsageFeedback(db.pool, tenantId, channelId, { throttled: { code: 4, retryAfterMs: 10_000 } }, at(T0, 1_000));
    expect(shorter.pausedUntil).toEqual(at(T0, 300_000));
    expect((await sendBudgetStatus(db.pool, tenantId, channelId, at(T0, 1_000)))!.pauseReason).toBe('usage 100%, regain in 300 s');

    const longer = await recordUsageFeedback(db.pool, tenantId, channelId, { throttled: { code: 80006, retryAfterMs: 600_000 } }, at(T0, 2_000));
    expect(longer.pausedUntil).toEqual(at(T0, 602_000));
    expect((await sendBudgetStatus(db.pool, tenantId, channelId, at(T0, 2_000)))!.pauseReason).toBe('code 80006');
  });

  it('takes the longer of a throttle delay and a regain time reported together', async () => {
    const channelId = await newChannel();
    const result = await recordUsageFeedback(db.pool, tenantId, channelId, { regainAccessSeconds: 60, throttled: { code: 613, retryAfterMs: 10_000 } }, T0);
    expect(result.pausedUntil).toEqual(at(T0, 60_000));
  });
});

describe('adaptive throttle factor', () => {
  it('lowers the factor linearly from 75 % (1) to 100 % (0.1) and slows the refill to match', async () => {
    const channelId = await newChannel(20);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 74 }, T0)).throttleFactor).toBe(1);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 75 }, T0)).throttleFactor).toBeCloseTo(1, 9);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 87.5 }, T0)).throttleFactor).toBeCloseTo(0.55, 9);
    // A lower-but-still-high report does not speed up again.
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 80 }, T0)).throttleFactor).toBeCloseTo(0.55, 9);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 100 }, T0)).throttleFactor).toBeCloseTo(0.1, 9);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 130 }, T0)).throttleFactor).toBeCloseTo(0.1, 9);

    // At 20/s × 0.1 the bucket holds 2 tokens and refills one per 500 ms.
    const status = await sendBudgetStatus(db.pool, tenantId, channelId, T0);
    expect(status).toMatchObject({ ratePerSec: 20, capacity: 2 });
    expect(status!.effectiveRatePerSec).toBeCloseTo(2, 9);
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, T0)).toEqual({ granted: false, reason: 'budget', waitMs: 500 });
  });

  it('recovers by half again per report below 75 %, up to the full rate', async () => {
    const channelId = await newChannel(20);
    await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 100 }, T0);
    const factors: number[] = [];
    for (let i = 0; i < 7; i++) factors.push((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 10 }, at(T0, i))).throttleFactor);
    const expected = [0.15, 0.225, 0.3375, 0.50625, 0.759375, 1, 1];
    factors.forEach((f, i) => expect(f).toBeCloseTo(expected[i]!, 9));
  });

  it('halves the factor on a throttle code, and a report without usage leaves it alone', async () => {
    const channelId = await newChannel(20);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { throttled: { code: 613, retryAfterMs: 1_000 } }, T0)).throttleFactor).toBeCloseTo(0.5, 9);
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, {}, T0)).throttleFactor).toBeCloseTo(0.5, 9);
    // Even a low usage report in the same answer as a throttle does not speed up.
    expect((await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 5, throttled: { code: 4, retryAfterMs: 1_000 } }, T0)).throttleFactor).toBeCloseTo(0.25, 9);
  });

  it('settles tokens earned at the old rate before the rate changes', async () => {
    const channelId = await newChannel(10);
    for (let i = 0; i < 10; i++) await reserveSendSlot(db.pool, tenantId, channelId, T0);
    // 300 ms at 10/s earned 3 tokens; then the rate drops to 10 × 0.1 = 1/s (capacity 1).
    await recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: 100 }, at(T0, 300));
    const status = await sendBudgetStatus(db.pool, tenantId, channelId, at(T0, 300));
    expect(status!.capacity).toBe(1);
    expect(status!.tokens).toBeCloseTo(1, 9);
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 300))).toEqual({ granted: true });
    expect(await reserveSendSlot(db.pool, tenantId, channelId, at(T0, 300))).toEqual({ granted: false, reason: 'budget', waitMs: 1000 });
  });

  it('rejects feedback that is not a report, naming the field', async () => {
    const channelId = await newChannel();
    await expect(recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: -1 })).rejects.toThrow(/maxPercent/);
    await expect(recordUsageFeedback(db.pool, tenantId, channelId, { maxPercent: Number.NaN })).rejects.toThrow(/maxPercent/);
    await expect(recordUsageFeedback(db.pool, tenantId, channelId, { throttled: { code: 613 } } as never)).rejects.toThrow(/throttled\.retryAfterMs/);
  });
});

describe('sendBudgetStatus', () => {
  it('shows a full bucket for a channel that has not sent yet, and the configured rate', async () => {
    const channelId = await newChannel(7.5);
    expect(await sendBudgetStatus(db.pool, tenantId, channelId, T0)).toEqual({
      channelId,
      ratePerSec: 7.5,
      throttleFactor: 1,
      effectiveRatePerSec: 7.5,
      capacity: 7.5,
      tokens: 7.5,
      pausedUntil: null,
      pauseReason: null,
      updatedAt: null,
    });
  });
});
