import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { signPayload } from '../../src/meta/signature';
import { FIXTURES } from './paths';
import { TEST_APP_SECRET } from './stack';

export const PAGE_A = '104829376511820';
export const PAGE_B = '231907745812664';
export const IG_ACCOUNT = '17841469920315587';

export interface WebhookFixture {
  file: string;
  bytes: Buffer;
  signature256: string;
  signature1: string;
}

/** Webhook fixtures with the signatures published in the fixtures README (not recomputed here). */
export function webhookFixtures(): WebhookFixture[] {
  const readme = readFileSync(path.join(FIXTURES, 'README.md'), 'utf8');
  const rows = new Map<string, { s256: string; s1: string }>();
  for (const m of readme.matchAll(/^\| `([\w-]+\.json)` \| `(sha256=[0-9a-f]{64})` \| `(sha1=[0-9a-f]{40})` \|/gm)) {
    rows.set(m[1]!, { s256: m[2]!, s1: m[3]! });
  }
  const files = readdirSync(FIXTURES).filter((f) => /^(messenger|ig|page)-.*\.json$/.test(f)).sort();
  return files.map((file) => {
    const sig = rows.get(file);
    if (!sig) throw new Error(`fixtures README has no signature for ${file}`);
    return { file, bytes: readFileSync(path.join(FIXTURES, file)), signature256: sig.s256, signature1: sig.s1 };
  });
}

export function fixture(file: string): WebhookFixture {
  const f = webhookFixtures().find((x) => x.file === file);
  if (!f) throw new Error(`no fixture ${file}`);
  return f;
}

export async function postWebhook(
  gatewayUrl: string,
  body: Buffer | string,
  opts: { signature?: string | null; contentType?: string } = {},
): Promise<Response> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/json' };
  const signature = opts.signature === undefined ? signPayload(TEST_APP_SECRET, bytes) : opts.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return fetch(`${gatewayUrl}/webhooks/meta`, { method: 'POST', headers, body: bytes });
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export async function errorOf(res: Response): Promise<ErrorBody['error']> {
  return ((await res.json()) as ErrorBody).error;
}

/** A signed-body-ready Messenger delivery of one customer text message. */
export function textDelivery(o: { pageId: string; customerId: string; mid: string; text: string; timestamp?: number }): string {
  const timestamp = o.timestamp ?? Date.now();
  return JSON.stringify({
    object: 'page',
    entry: [{ id: o.pageId, time: timestamp, messaging: [{ sender: { id: o.customerId }, recipient: { id: o.pageId }, timestamp, message: { mid: o.mid, text: o.text } }] }],
  });
}
