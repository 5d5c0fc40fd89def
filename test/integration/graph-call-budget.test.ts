import { randomBytes } from 'node:crypto';
import { acquireGraphCall, bucketShape, graphCallBudget } from '../../src/db/graph-call-budget';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The Graph call budget (src/db/graph-call-budget.ts) on a real PostgreSQL, as the application
 * role: its shape keeps every 60-second window within `perMinute`, grants are atomic under
 * concurrency, and a replay of many request patterns never finds a window over budget.
 */

const MINUTE = 60_000;
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

const budgetName = () => `test-${randomBytes(5).toString('hex')}`;

/** The most grants in any closed window [t, t + 60 s] (the bound holds for closed windows, so for half-open ones too). */
function maxInWindow(times: number[], windowMs = MINUTE): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! > windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

/** A small deterministic PRNG (mulberry32): a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('bucketShape', () => {
  it('capacity + 60 s of refill never exceeds perMinute, and the bucket always refills', () => {
    for (const perMinute of [1, 2, 3, 59, 60, 61, 119, 120, 600, 1000, 2999, 3000, 100_000, 1_000_000]) {
      const { capacity, ratePerMs } = bucketShape(perMinute);
      expect(capacity).toBeGreaterThanOrEqual(1);
      expect(ratePerMs).toBeGreaterThan(0);
      // The grants a closed 60-s window can hold: floor(C + 60·R).
      expect(Math.floor(capacity + ratePerMs * MINUTE)).toBeLessThanOrEqual(perMinute);
      // Not needlessly slow: at least 95 % of the budget is usable (tiny budgets excepted).
      if (perMinute >= 120) expect(capacity + ratePerMs * MINUTE).toBeGreaterThanOrEqual(0.95 * perMinute);
    }
    expect(() => bucketShape(0)).toThrow(/positive integer/);
    expect(() => bucketShape(1.5)).toThrow(/positive integer/);
  });
});

describe('acquireGraphCall', () => {
  it('creates the bucket full on first use, empties it, then says how long to wait', async () => {
    const name = budgetName();
    const at = new Date('2030-01-01T00:00:00Z');
    const { capacity, ratePerMs } = bucketShape(600); // 10 burst, ~9.7/s
    const results = [];
    for (let i = 0; i < capacity + 1; i++) results.push(await acquireGraphCall(db.pool, name, 600, { at }));
    expect(results.slice(0, capacity).every((r) => r.granted)).toBe(true);
    const denied = results[capacity]!;
    expect(denied.granted).toBe(false);
    const waitMs = denied.granted ? 0 : denied.waitMs;
    expect(waitMs).toBe(Math.ceil(1 / ratePerMs));
    // Just before the wait is over: still nothing; at its end: one call.
    expect((await acquireGraphCall(db.pool, name, 600, { at: new Date(at.getTime() + waitMs - 2) })).granted).toBe(false);
    expect(await acquireGraphCall(db.pool, name, 600, { at: new Date(at.getTime() + waitMs) })).toEqual({ granted: true, at: new Date(at.getTime() + waitMs) });
    const state = await graphCallBudget(db.pool, name);
    expect(state!.tokens).toBeGreaterThanOrEqual(0);
    expect(state!.tokens).toBeLessThan(1);
    // The row holds counters only, and the application role reaches it only through the platform scope.
    expect((await db.ownerPool.query('SELECT name FROM graph_call_budgets WHERE name = $1', [name])).rows).toEqual([{ name }]);
  });

  it('grants exactly the capacity to many concurrent callers at one instant (one UPDATE takes the last token)', async () => {
    const name = budgetName();
    const at = new Date('2030-01-01T00:00:00Z');
    const perMinute = 1200; // capacity 20
    const results = await Promise.all(Array.from({ length: 60 }, () => acquireGraphCall(db.pool, name, perMinute, { at })));
    expect(results.filter((r) => r.granted)).toHaveLength(bucketShape(perMinute).capacity);
    expect(results.filter((r) => !r.granted).every((r) => !r.granted && r.waitMs > 0)).toBe(true);
  });

  it('never moves time backwards: a caller with an older clock gets no refill', async () => {
    const name = budgetName();
    const t0 = new Date('2030-01-01T00:00:00Z');
    expect((await acquireGraphCall(db.pool, name, 60, { at: t0 })).granted).toBe(true); // capacity 1
    expect((await acquireGraphCall(db.pool, name, 60, { at: new Date(t0.getTime() - 3_600_000) })).granted).toBe(false);
    expect((await graphCallBudget(db.pool, name))!.refilledAt).toEqual(t0);
  });

  it('property: replayed request patterns never get more than perMinute grants in any sliding 60-s window, and use the budget', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const rand = prng(seed);
      const perMinute = [1, 7, 60, 90, 150, 240][seed - 1]!;
      const { capacity, ratePerMs } = bucketShape(perMinute);
      const name = budgetName();
      const start = Date.UTC(2030, 0, 1);
      const horizon = 3 * MINUTE;
      // Clients: greedy ones that come back exactly when told, and bursty ones with random gaps and idle spells.
      type Client = { next: number; greedy: boolean };
      const clients: Client[] = Array.from({ length: 2 + Math.floor(rand() * 3) }, (_, i) => ({ next: start + Math.floor(rand() * 5000), greedy: i % 2 === 0 }));
      const grants: number[] = [];
      let calls = 0;
      for (;;) {
        const c = clients.reduce((a, b) => (b.next < a.next ? b : a));
        if (c.next > start + horizon) break;
        const at = c.next;
        const r = await acquireGraphCall(db.pool, name, perMinute, { at: new Date(at) });
        calls++;
        if (r.granted) {
          expect(r.at.getTime()).toBe(at);
          grants.push(at);
          c.next = at + (c.greedy ? 0 : Math.floor(rand() < 0.1 ? rand() * 90_000 : rand() * 400));
        } else {
          expect(r.waitMs).toBeGreaterThan(0);
          c.next = at + (c.greedy ? r.waitMs : r.waitMs + Math.floor(rand() * 300));
        }
      }
      expect(calls).toBeGreaterThan(grants.length); // the budget was the limit at times
      const max = maxInWindow(grants);
      expect({ seed, perMinute, max: Math.min(max, perMinute) }).toEqual({ seed, perMinute, max });
      // Greedy clients keep the bucket drained: the grants come close to capacity + rate · time.
      const possible = capacity + ratePerMs * horizon;
      expect(grants.length).toBeGreaterThanOrEqual(Math.floor(possible * 0.9));
      expect(grants.length).toBeLessThanOrEqual(Math.floor(possible) + 1);
    }
  }, 120_000);

  it('on the database clock, concurrent workers stay within capacity + rate · elapsed', async () => {
    const name = budgetName();
    const perMinute = 300; // capacity 5, ~4.9/s
    const { capacity, ratePerMs } = bucketShape(perMinute);
    const grants: number[] = [];
    const until = Date.now() + 1500;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (Date.now() < until) {
          const r = await acquireGraphCall(db.pool, name, perMinute);
          if (r.granted) grants.push(r.at.getTime());
          else await new Promise((res) => setTimeout(res, r.waitMs));
        }
      }),
    );
    const span = Math.max(...grants) - Math.min(...grants);
    expect(grants.length).toBeLessThanOrEqual(Math.floor(capacity + ratePerMs * span));
    expect(grants.length).toBeGreaterThan(capacity); // it refilled
    expect(maxInWindow(grants)).toBeLessThanOrEqual(perMinute);
  });
});
