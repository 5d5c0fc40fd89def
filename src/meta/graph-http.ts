import { GraphApiError, GraphNetworkError } from './graph-errors';
import { parseUsage, type UsageReport } from './usage-headers';

/**
 * One HTTP exchange with a Meta host, shared by the Send API client and the OAuth client, with the
 * failure classes decided once:
 * - no answer: `GraphNetworkError`, ambiguous unless the connection was refused or the host
 *   unknown (then nothing reached Meta); a timeout or reset may have been delivered;
 * - an answer whose body was cut off: a refusal stays a `GraphApiError` without its body, a
 *   success is ambiguous;
 * - otherwise the parsed JSON (undefined when the body is not JSON) with the status and Meta's
 *   usage headers, for the caller to judge.
 */
export async function fetchGraph(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; timeoutMs: number },
  what: string,
): Promise<{ res: Response; json: unknown; usage: UsageReport }> {
  let res: Response;
  try {
    res = await fetch(url, { method: init.method, headers: init.headers, body: init.body, signal: AbortSignal.timeout(init.timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    const ambiguous = !(cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOTFOUND');
    throw new GraphNetworkError(`${what} request failed: ${(err as Error).name}${cause?.code ? ` (${cause.code})` : ''}`, ambiguous);
  }
  const usage = parseUsage(res.headers);
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    if (!res.ok) throw new GraphApiError(res.status, undefined, usage);
    throw new GraphNetworkError(`${what} answer was cut off: ${(err as Error).name}`, true);
  }
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { res, json, usage };
}
