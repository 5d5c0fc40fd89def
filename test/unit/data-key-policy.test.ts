import { DAY_MS, DEFAULT_DATA_KEY_POLICY, dataKeyAgeDays, dataKeyDueReasons, dueDataKeys, type DataKeyUsage } from '../../src/shared/data-key-policy';

/** The data-key rotation policy: a current key is due at 90 days or 2^30 encryptions, whichever comes first. */

const asOf = Date.UTC(2025, 5, 1, 12);
const policy = { maxAgeMs: 90 * DAY_MS, maxEncryptions: 1000 };
const key = (over: Partial<DataKeyUsage> = {}): DataKeyUsage => ({ tenantId: 't', version: 1, createdAt: asOf - DAY_MS, supersededAt: null, encryptions: 1, ...over });

describe('data key rotation policy', () => {
  it('defaults to 90 days or 2^30 encryptions', () => {
    expect(DEFAULT_DATA_KEY_POLICY).toEqual({ maxAgeMs: 90 * 86_400_000, maxEncryptions: 1_073_741_824 });
  });

  it('age: due exactly at the limit, not one millisecond before', () => {
    expect(dataKeyDueReasons(key({ createdAt: asOf - 90 * DAY_MS + 1 }), policy, asOf)).toEqual([]);
    expect(dataKeyDueReasons(key({ createdAt: asOf - 90 * DAY_MS }), policy, asOf)).toEqual(['age']);
    expect(dataKeyDueReasons(key({ createdAt: asOf - 400 * DAY_MS }), policy, asOf)).toEqual(['age']);
    // A key created after `asOf` (a database clock ahead of the workflow's) is simply young.
    expect(dataKeyDueReasons(key({ createdAt: asOf + DAY_MS }), policy, asOf)).toEqual([]);
  });

  it('usage: due at the limit, not one encryption before', () => {
    expect(dataKeyDueReasons(key({ encryptions: 999 }), policy, asOf)).toEqual([]);
    expect(dataKeyDueReasons(key({ encryptions: 1000 }), policy, asOf)).toEqual(['encryptions']);
    expect(dataKeyDueReasons(key({ encryptions: 2 ** 31 }), DEFAULT_DATA_KEY_POLICY, asOf)).toEqual(['encryptions']);
    expect(dataKeyDueReasons(key({ encryptions: 2 ** 30 - 1 }), DEFAULT_DATA_KEY_POLICY, asOf)).toEqual([]);
  });

  it('names both limits when both are reached', () => {
    expect(dataKeyDueReasons(key({ createdAt: asOf - 100 * DAY_MS, encryptions: 5000 }), policy, asOf)).toEqual(['age', 'encryptions']);
  });

  it('ignores superseded keys, however old or used', () => {
    expect(dataKeyDueReasons(key({ createdAt: asOf - 400 * DAY_MS, encryptions: 10_000, supersededAt: asOf - DAY_MS }), policy, asOf)).toEqual([]);
  });

  it('dueDataKeys keeps the order given and only the due current keys', () => {
    const keys: DataKeyUsage[] = [
      key({ tenantId: 'old', createdAt: asOf - 91 * DAY_MS }),
      key({ tenantId: 'fresh' }),
      key({ tenantId: 'busy', version: 3, encryptions: 1000 }),
      key({ tenantId: 'busy', version: 2, encryptions: 5000, supersededAt: asOf - 10 * DAY_MS }),
      key({ tenantId: 'both', createdAt: asOf - 91 * DAY_MS, encryptions: 1001 }),
    ];
    expect(dueDataKeys(keys, policy, asOf)).toEqual([
      { tenantId: 'old', version: 1, reasons: ['age'] },
      { tenantId: 'busy', version: 3, reasons: ['encryptions'] },
      { tenantId: 'both', version: 1, reasons: ['age', 'encryptions'] },
    ]);
    expect(dueDataKeys([], policy, asOf)).toEqual([]);
  });

  it('ageDays counts whole days and never goes negative', () => {
    expect(dataKeyAgeDays(asOf, asOf)).toBe(0);
    expect(dataKeyAgeDays(asOf - DAY_MS + 1, asOf)).toBe(0);
    expect(dataKeyAgeDays(asOf - DAY_MS, asOf)).toBe(1);
    expect(dataKeyAgeDays(asOf - 90.5 * DAY_MS, asOf)).toBe(90);
    expect(dataKeyAgeDays(asOf + 5000, asOf)).toBe(0);
  });
});
