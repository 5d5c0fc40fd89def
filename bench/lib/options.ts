import { parseArgs } from 'node:util';
import { z } from 'zod';

/** Command-line flags of `npm run bench`. Every loop the benchmark runs is bounded by one of these. */

export class UsageError extends Error {
  override name = 'UsageError';
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** The benchmark only ever talks to this machine. */
export function isLocalUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && LOCAL_HOSTS.has(u.hostname);
  } catch {
    return false;
  }
}

const int = (min: number, max: number) => z.coerce.number().int('must be an integer').min(min).max(max);

const optionsSchema = z
  .object({
    gateway: z
      .string()
      .refine(isLocalUrl, 'must be an http URL on localhost / 127.0.0.1 (the benchmark only drives a local stack)')
      .transform((v) => v.replace(/\/+$/, '')),
    rate: int(1, 5000),
    duration: int(1, 600),
    conversations: int(1, 1_000_000),
    concurrency: int(1, 1000),
    'baseline-ops': int(0, 1_000_000),
    'saturation-ops': int(0, 1_000_000),
    'max-in-flight': int(1, 20_000),
    'request-timeout': int(100, 120_000),
    'reply-wait': int(0, 600),
    'late-wait': int(0, 1800),
    'drain-wait': int(0, 1800),
    burst: int(1, 100),
    'send-rate': z.coerce.number().min(0).max(1000).refine((v) => v === 0 || v >= 0.01, 'must be 0 (keep the channel default) or 0.01–1000'),
    'events-sample': int(0, 1_000_000),
    'events-rate': int(1, 5000),
    'events-wait': int(0, 1800),
    echo: z.enum(['on', 'off']),
    out: z.string().min(1).optional(),
    keep: z.boolean().default(false),
  })
  .refine((o) => o.rate * o.duration <= 3_000_000, { message: 'rate × duration must stay ≤ 3 000 000 events', path: ['rate'] });

export type BenchOptions = z.infer<typeof optionsSchema>;

export const DEFAULTS = {
  gateway: 'http://localhost:3000',
  rate: '100',
  duration: '20',
  conversations: '1000',
  concurrency: '32',
  'baseline-ops': '2000',
  'saturation-ops': '2000',
  'max-in-flight': '2000',
  'request-timeout': '10000',
  'reply-wait': '60',
  'late-wait': '600',
  'drain-wait': '600',
  burst: '1',
  'send-rate': '0',
  'events-sample': '1000',
  'events-rate': '20',
  'events-wait': '180',
  echo: 'on',
} as const;

export const USAGE = `usage: npm run bench -- [flags]   (drives a stack started with \`npm start\`)

  --gateway URL            gateway base URL (default ${DEFAULTS.gateway}; localhost only)
  --rate N                 phase 3: offered webhook events per second, open loop (default ${DEFAULTS.rate})
  --duration S             phase 3: seconds of sustained load (default ${DEFAULTS.duration})
  --conversations N        distinct customers (one conversation each) per phase (default ${DEFAULTS.conversations})
  --concurrency N          phases 1–2: requests in flight, closed loop (default ${DEFAULTS.concurrency})
  --baseline-ops N         phase 1: bare Temporal signalWithStart calls; 0 skips (default ${DEFAULTS['baseline-ops']})
  --saturation-ops N       phase 2: signed webhooks as fast as accepted; 0 skips (default ${DEFAULTS['saturation-ops']})
  --max-in-flight N        phase 3: cap on outstanding webhooks; sends over it are skipped and counted as errors (default ${DEFAULTS['max-in-flight']})
  --request-timeout MS     a webhook without an answer after this long counts as a timeout (default ${DEFAULTS['request-timeout']})
  --reply-wait S           phase 3: how long to wait for the replies; what is still missing then is reported (default ${DEFAULTS['reply-wait']})
  --late-wait S            phase 3: then up to this much longer, to tell late replies from lost ones (default ${DEFAULTS['late-wait']})
  --drain-wait S           phase 2: how long to wait for its replies before phase 3 starts (default ${DEFAULTS['drain-wait']})
  --burst N                phase 3: N consecutive messages go to the same conversation (default ${DEFAULTS.burst}: one
                           message per conversation per round, so its messages are conversations/rate s apart and
                           the 800 ms quiet window rarely gathers two); at rate ≥ 2/s a burst of N falls into one
                           window and should get ONE answer covering all N
  --send-rate R            set the bench channel's send budget (channels.send_rate_per_sec, 0.01–1000 sends/s);
                           0 keeps the default, 20/s — with one channel that is the whole benchmark's ceiling
                           (default ${DEFAULTS['send-rate']})
  --events-sample N        phase 4: up to N conversations answered in phase 3 get a reaction, a delivery receipt
                           and a read receipt, none of which may be answered; 0 skips (default ${DEFAULTS['events-sample']})
  --events-rate N          phase 4: webhook events per second, open loop (default ${DEFAULTS['events-rate']})
  --events-wait S          phase 4: how long to wait for the database to show them applied (default ${DEFAULTS['events-wait']})
  --echo on|off            have the Graph API sandbox deliver signed message_echoes webhooks back to the gateway
                           for every accepted send, as Meta does (default ${DEFAULTS.echo}; restored at the end)
  --out FILE               also write the results as JSON
  --keep                   keep the bench tenant, its rows and its open conversation workflows (by default the
                           workflows are terminated, so their idle timeouts do not fire during the next run,
                           and the tenant is deleted)
  --help                   this text`;

/** Parses argv; throws UsageError with a readable message on any bad or unknown flag. */
export function parseBenchOptions(argv: string[]): BenchOptions | 'help' {
  const names = Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>;
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])),
        out: { type: 'string' },
        keep: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  const { help: _help, ...given } = values;
  const parsed = optionsSchema.safeParse({ ...DEFAULTS, ...given });
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues.map((i) => `--${i.path.join('.') || '(flags)'}: ${i.message}${i.path[0] ? ` (got "${String(given[String(i.path[0])] ?? DEFAULTS[i.path[0] as keyof typeof DEFAULTS])}")` : ''}`).join('\n'),
    );
  }
  return parsed.data;
}
