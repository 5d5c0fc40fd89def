import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { devEnvFile, readEnvFile } from '../src/config';
import { StaticKeyProvider } from '../src/crypto/key-provider';
import { SecretVault, type SecretLocation } from '../src/crypto/vault';
import { createPool } from '../src/db/pool';
import { createTenant, deleteTenant } from '../src/db/tenants';
import { summarize, type LatencySummary } from './lib/stats';

/**
 * `npm run bench:vault`: decrypt latency of a 2 KiB secret through the envelope vault (issue #3:
 * p99 ≤ 50 µs with a warm data-key cache), plus the cold path (data key fetched from PostgreSQL
 * and unwrapped) and encrypt. Needs a database: the running `npm start` stack's (from
 * .data/dev.env) or DATABASE_URL. Creates one throwaway tenant and deletes it (crypto-shred).
 */

const options = z
  .object({
    rounds: z.coerce.number().int().min(1).max(100).default(10),
    'per-round': z.coerce.number().int().min(100).max(1_000_000).default(20_000),
    cold: z.coerce.number().int().min(10).max(10_000).default(300),
  })
  .parse(parseArgs({ options: { rounds: { type: 'string' }, 'per-round': { type: 'string' }, cold: { type: 'string' } } }).values);

const env = { ...readEnvFile(devEnvFile()), ...process.env };
const databaseUrl = env.DATABASE_URL;
if (!databaseUrl) {
  process.stderr.write('DATABASE_URL is not set and .data/dev.env has none: start the stack with `npm start` first\n');
  process.exit(2);
}

const micros = (start: bigint) => Number(process.hrtime.bigint() - start) / 1000;
const fmt = (s: LatencySummary | null) => (s ? `p50 ${s.p50} µs · p95 ${s.p95} µs · p99 ${s.p99} µs · max ${s.max} µs (n=${s.count})` : 'no samples');

async function main(): Promise<void> {
  const pool = createPool(databaseUrl!, 4);
  const keys = new StaticKeyProvider(new Map([[1, randomBytes(32)]]));
  const tenantId = (await createTenant(pool, 'bench-vault')).id;
  try {
    const loc: SecretLocation = { tenantId, table: 'channels', column: 'access_token', rowId: 'bench-row' };
    const secret = randomBytes(1536).toString('base64'); // 2048 characters
    const vault = new SecretVault(pool, keys);

    const encrypt: number[] = [];
    let sealed = await vault.encrypt(loc, secret);
    for (let i = 0; i < 200; i++) {
      const t = process.hrtime.bigint();
      sealed = await vault.encrypt(loc, secret);
      encrypt.push(micros(t));
    }

    const cold: number[] = [];
    for (let i = 0; i < options.cold; i++) {
      const fresh = new SecretVault(pool, keys);
      const t = process.hrtime.bigint();
      await fresh.decrypt(loc, sealed.blob);
      cold.push(micros(t));
    }

    // Warm: the data key is cached; every op is timed on its own.
    if ((await vault.decrypt(loc, sealed.blob)) !== secret) throw new Error('round trip failed');
    const warm: number[] = [];
    const rounds: Array<LatencySummary | null> = [];
    for (let r = 0; r < options.rounds; r++) {
      const round: number[] = [];
      for (let i = 0; i < options['per-round']; i++) {
        const t = process.hrtime.bigint();
        await vault.decrypt(loc, sealed.blob);
        round.push(micros(t));
      }
      rounds.push(summarize(round));
      warm.push(...round);
    }

    const cpu = os.cpus()[0]?.model ?? 'unknown';
    process.stdout.write(
      [
        `vault decrypt benchmark — ${new Date().toISOString()}`,
        `machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
        `secret: ${secret.length} bytes, ciphertext ${sealed.blob.length} bytes`,
        `decrypt, warm cache: ${fmt(summarize(warm))}`,
        ...rounds.map((s, i) => `  round ${i + 1}: ${fmt(s)}`),
        `decrypt, cold (DB fetch + unwrap): ${fmt(summarize(cold))}`,
        `encrypt (incl. usage-counter UPDATE): ${fmt(summarize(encrypt))}`,
        '',
      ].join('\n'),
    );
  } finally {
    await deleteTenant(pool, tenantId);
    await pool.end();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
