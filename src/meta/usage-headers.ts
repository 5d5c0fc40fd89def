/**
 * Meta's rate-limit usage headers (meta-api-contract §4.3), read so the send budget can slow down
 * before Meta throttles us instead of after:
 *
 * - `X-App-Usage: {"call_count":28,"total_time":25,"total_cputime":25}` — percent of the app's limit;
 * - `X-Business-Use-Case-Usage: {"<business object id>":[{"type":"messenger","call_count":n,
 *   "total_cputime":n,"total_time":n,"estimated_time_to_regain_access":<minutes>}]}` — what Page
 *   and Instagram messaging calls are counted against;
 * - `X-Ad-Account-Usage: {"acc_id_util_pct":n,…}` — Marketing API only (not in the contract);
 *   read because it costs one line, so a shared app near its ads limit is seen too.
 *
 * Headers come from a remote server and may be missing, truncated or reshaped without notice, so
 * parsing never throws: anything unreadable counts as "no report".
 */

export interface UsageReport {
  /** The highest percentage any counter reports (0–100, above 100 when Meta says so). */
  maxPercent: number | undefined;
  /** Seconds until Meta lets us call again (BUC `estimated_time_to_regain_access`), when it says we must wait. */
  regainAccessSeconds: number | undefined;
}

const APP_COUNTERS = ['call_count', 'total_time', 'total_cputime'] as const;

function parseJson(header: string | null): unknown {
  if (!header) return undefined;
  try {
    return JSON.parse(header) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Meta sends numbers, but a string "12" must not be read as a 0 % report. */
function percent(v: unknown): number | undefined {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

function maxOf(values: Array<number | undefined>): number | undefined {
  const present = values.filter((v): v is number => v !== undefined);
  return present.length > 0 ? Math.max(...present) : undefined;
}

function appUsagePercents(header: string | null): Array<number | undefined> {
  const usage = parseJson(header);
  return isRecord(usage) ? APP_COUNTERS.map((k) => percent(usage[k])) : [];
}

function businessUseCaseEntries(header: string | null): Record<string, unknown>[] {
  const usage = parseJson(header);
  if (!isRecord(usage)) return [];
  return Object.values(usage)
    .flatMap((list) => (Array.isArray(list) ? list : [list]))
    .filter(isRecord);
}

export function parseUsage(headers: Headers): UsageReport {
  const buc = businessUseCaseEntries(headers.get('x-business-use-case-usage'));
  const adAccount = parseJson(headers.get('x-ad-account-usage'));
  const maxPercent = maxOf([
    ...appUsagePercents(headers.get('x-app-usage')),
    ...buc.flatMap((entry) => APP_COUNTERS.map((k) => percent(entry[k]))),
    isRecord(adAccount) ? percent(adAccount['acc_id_util_pct']) : undefined,
  ]);
  const regainMinutes = maxOf(buc.map((entry) => percent(entry['estimated_time_to_regain_access'])));
  return {
    maxPercent,
    regainAccessSeconds: regainMinutes !== undefined && regainMinutes > 0 ? Math.ceil(regainMinutes * 60) : undefined,
  };
}

/** For callers that only have the one header (kept from the first version of the client). */
export function regainAccessSeconds(header: string | null): number | undefined {
  const headers = new Headers();
  try {
    if (header !== null) headers.set('x-business-use-case-usage', header);
  } catch {
    return undefined; // not a valid header value (e.g. a line break): nothing Meta could have sent
  }
  return parseUsage(headers).regainAccessSeconds;
}
