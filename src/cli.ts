import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { auditSettings } from './audit/checkpoints';
import { exportAuditChain } from './audit/export';
import { appendAuditEvent } from './audit/log';
import { formatAuditReport, verifyAuditLog, type AuditVerifyReport } from './audit/verify';
import { ConfigError, loadConfig, type Config } from './config';
import { StaticKeyProvider } from './crypto/key-provider';
import { SecretVault } from './crypto/vault';
import { ChannelConflictError, connectChannel } from './db/channels';
import { dataKeyPolicyFromConfig, KeyInUseError, keyStatus, retireMasterKey } from './db/key-inventory';
import { recordCliAction } from './audit/cli-actions';
import { CatalogValidationError, formatFromFileName, importCatalog, MAX_CATALOG_BYTES, parseCatalog } from './catalog/import';
import { createPool, type Pool } from './db/pool';
import type { Queryable } from './db/tenant-scope';
import { addProduct } from './db/products';
import { loadTenantSettings, SettingsError, tenantSettingsPatchSchema, updateTenantSettings } from './db/tenant-settings';
import { createTenant, deleteTenant, tenantExists } from './db/tenants';
import { AccountError, createOperator, createTenantUser, emailSchema, findAccountById, tenantRoleSchema } from './auth/accounts';
import { ApiKeyError, createApiKey, revokeApiKey } from './auth/api-keys';
import { PasswordPolicyError } from './auth/passwords';
import { ROLES } from './auth/permissions';
import { revokeSessionsOf } from './auth/sessions';
import { createTemporalClient } from './temporal/client';
import { createDataConverter } from './temporal/payload-codec';
import type { KeyRotationInput } from '../workflows/key-rotation';

/**
 * Operator CLI: `npm run cli -- <command> [--flags]`. Output is JSON on stdout; usage errors exit 2.
 * Exceptions: `audit:verify` prints a readable report (JSON with `--json yes`) and exits 3 when the
 * audit log is broken; `audit:export` without `--out` prints the JSON Lines export itself.
 */

class UsageError extends Error {
  override name = 'UsageError';
}

/** A command's own stdout text and exit code (instead of the default JSON and 0). */
class CliOutput {
  constructor(
    readonly text: string,
    readonly exitCode: number,
  ) {}
}

const uuid = z.uuid('must be a UUID');
const chainTenant = z
  .string()
  .refine((v) => v === 'platform' || z.uuid().safeParse(v).success, 'must be a tenant UUID (or platform, for platform events)')
  .transform((v) => v.toLowerCase());
const isoTime = z
  .string()
  .refine((v) => /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(v) && !Number.isNaN(Date.parse(v)), 'must be an ISO-8601 date or time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z')
  .transform((v) => new Date(v));
/** Passwords only ever come on stdin: never in shell history or `ps`. */
const passwordFromStdin = z.literal('-', 'must be - : the password is read from stdin, never from the command line');
const keyTenant = z
  .string()
  .refine((v) => v === 'platform' || z.uuid().safeParse(v).success, 'must be a tenant UUID, or platform for a platform (operator) key')
  .transform((v) => v.toLowerCase());

const commands = {
  'tenants:create': {
    usage: 'tenants:create --name NAME',
    schema: z.object({ name: z.string().trim().min(1, 'is required').max(200) }),
  },
  'channels:connect': {
    usage: 'channels:connect --tenant ID --platform instagram|messenger --account-id ID --access-token TOKEN|-',
    schema: z.object({
      tenant: uuid,
      platform: z.enum(['instagram', 'messenger'], 'must be instagram or messenger'),
      'account-id': z.string().regex(/^[0-9]{1,32}$/, 'must be the numeric Page or Instagram account ID'),
      'access-token': z.string().min(1, 'is required'),
    }),
  },
  'products:add': {
    usage: 'products:add --tenant ID --name NAME [--sku SKU] [--description TEXT] [--price 9.99] [--currency EUR] [--stock N] [--url URL]   (sku default: generated)',
    schema: z.object({
      tenant: uuid,
      sku: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters').optional(),
      name: z.string().trim().min(1, 'is required'),
      description: z.string().optional(),
      price: z.coerce.number().nonnegative().optional(),
      currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code like EUR').optional(),
      stock: z.coerce.number().int().nonnegative().optional(),
      url: z.url().optional(),
    }),
  },
  'products:import': {
    usage: 'products:import --tenant ID --file PATH [--format csv|json] [--mode upsert|replace]   (all rows or none; replace also removes products not in the file)',
    schema: z.object({
      tenant: uuid,
      file: z.string().min(1, 'is required'),
      format: z.enum(['csv', 'json'], 'must be csv or json').optional(),
      mode: z.enum(['upsert', 'replace'], 'must be upsert or replace').default('upsert'),
    }),
  },
  'settings:show': {
    usage: 'settings:show --tenant ID',
    schema: z.object({ tenant: uuid }),
  },
  'settings:set': {
    usage: `settings:set --tenant ID --json '{"replyEngine":"catalog","assistant":{"language":"de"}}'   ("llmApiKey":"-" reads the key from stdin)`,
    schema: z.object({ tenant: uuid, json: z.string().min(1, 'is required') }),
  },
  'tenants:delete': {
    usage: 'tenants:delete --id ID   (destroys the tenant, its data and its data keys: crypto-shredding)',
    schema: z.object({ id: uuid }),
  },
  'keys:status': {
    usage: 'keys:status   (key hierarchy; every tenant data key with its age, usage and whether the rotation policy finds it due)',
    schema: z.object({}),
  },
  'keys:rotate': {
    usage: 'keys:rotate [--data-keys yes] [--batch-size 100] [--wait yes]   (rewrap data keys under the newest master key)',
    schema: z.object({
      'data-keys': z.enum(['yes', 'no'], 'must be yes or no').default('no'),
      'batch-size': z.coerce.number().int().min(1).max(10_000).default(100),
      wait: z.enum(['yes', 'no'], 'must be yes or no').default('no'),
    }),
  },
  'keys:retire': {
    usage: 'keys:retire --version N   (refused while any data key is still wrapped by it)',
    schema: z.object({ version: z.coerce.number().int().min(1) }),
  },
  'audit:verify': {
    usage: 'audit:verify [--tenant ID|platform] [--json yes]   (recompute the audit chains, check the signed checkpoints; exit 3 if broken)',
    schema: z.object({
      tenant: chainTenant.optional(),
      json: z.enum(['yes', 'no'], 'must be yes or no').default('no'),
    }),
  },
  'audit:export': {
    usage: 'audit:export --tenant ID|platform --from ISO --to ISO [--out FILE]   (JSON Lines with the chain proofs, for auditors)',
    schema: z
      .object({ tenant: chainTenant, from: isoTime, to: isoTime, out: z.string().min(1).optional() })
      // Zod still runs this when a date above failed to parse (the value is then the raw string).
      .refine((a) => !(a.from instanceof Date && a.to instanceof Date) || a.from.getTime() < a.to.getTime(), { message: 'must be after --from', path: ['to'] }),
  },
  'operators:create': {
    usage: 'operators:create --email EMAIL --password -   (password on stdin; at least 12 characters)',
    schema: z.object({ email: emailSchema, password: passwordFromStdin }),
  },
  'users:create': {
    usage: 'users:create --tenant ID --email EMAIL --role owner|admin|developer|viewer --password -   (password on stdin)',
    schema: z.object({ tenant: uuid, email: emailSchema, role: tenantRoleSchema, password: passwordFromStdin }),
  },
  'api-keys:create': {
    usage: 'api-keys:create --tenant ID|platform --role ROLE --name NAME   (prints the key once; platform keys have the role operator)',
    schema: z.object({
      tenant: keyTenant,
      role: z.enum(ROLES as [string, ...string[]], `must be one of ${ROLES.join(', ')}`),
      name: z.string().trim().min(1, 'is required').max(100, 'must be at most 100 characters'),
    }),
  },
  'api-keys:revoke': {
    usage: 'api-keys:revoke --id ID',
    schema: z.object({ id: uuid }),
  },
  'sessions:revoke': {
    usage: 'sessions:revoke --user ID   (ends every browser session of a tenant user or an operator)',
    schema: z.object({ user: uuid }),
  },
} as const;

type CommandName = keyof typeof commands;

function usage(): string {
  return `usage: npm run cli -- <command>\n${Object.values(commands).map((c) => `  ${c.usage}`).join('\n')}`;
}

function parseCommand(argv: string[]): { name: CommandName; args: Record<string, string | undefined> } {
  const [name, ...rest] = argv;
  // Own keys only: `in` would also accept `constructor`, `toString`, … from Object.prototype.
  if (!name || !Object.hasOwn(commands, name)) throw new UsageError(name ? `unknown command "${name}"\n${usage()}` : usage());
  const command = commands[name as CommandName];
  const options = Object.fromEntries(Object.keys(command.schema.shape).map((k) => [k, { type: 'string' as const }]));
  try {
    const { values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false });
    return { name: name as CommandName, args: values as Record<string, string | undefined> };
  } catch (err) {
    // Node's message quotes a stray argument, which may well be a token typed without its flag.
    const message = (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
      ? 'unexpected argument: every value must follow its --flag'
      : (err as Error).message;
    throw new UsageError(`${message}\n  ${command.usage}`);
  }
}

function validate<S extends z.ZodType>(name: CommandName, schema: S, args: Record<string, string | undefined>): z.infer<S> {
  const result = schema.safeParse(args);
  if (!result.success) {
    // A missing flag is an invalid_type; so is a given one that does not coerce (`--version abc`).
    const problems = result.error.issues.map(
      (i) => `--${i.path.join('.')}: ${i.code === 'invalid_type' && args[String(i.path[0])] === undefined ? 'is required' : i.message}`,
    );
    throw new UsageError(`${problems.join('\n')}\n  ${commands[name].usage}`);
  }
  return result.data;
}

async function run(argv: string[]): Promise<unknown> {
  const { name, args } = parseCommand(argv);
  const auditArgs = name === 'settings:set' ? withoutSecretsInJson(args) : args;
  // The token may come on stdin (`--access-token -`) so it stays out of shell history and `ps`.
  if (args['access-token'] === '-') args['access-token'] = readFileSync(0, 'utf8').trim();
  // Only the trailing newline: a password may begin or end with spaces.
  const password = args.password === '-' ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : undefined;
  const config = loadConfig();
  const pool = createPool(config.DATABASE_URL, 2);
  try {
    const result = await runCommand(name, args, config, pool, password);
    await recordCliAction(pool, { command: name, args: auditArgs, outcome: 'success' });
    return result;
  } catch (err) {
    // Usage errors included: a refused operator action is a security event too.
    await recordCliAction(pool, { command: name, args: auditArgs, outcome: 'failure', reason: (err as Error).name });
    throw err;
  } finally {
    await pool.end();
  }
}

/**
 * `settings:set --json` is audited like any argument, but its `llmApiKey` is a secret the
 * argument's name does not reveal: redacted here (and the whole value when it does not parse).
 */
function withoutSecretsInJson(args: Record<string, string | undefined>): Record<string, string | undefined> {
  if (args.json === undefined) return { ...args };
  let value: unknown;
  try {
    value = JSON.parse(args.json);
  } catch {
    return { ...args, json: '[not valid JSON]' };
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'llmApiKey' in value) {
    const key = (value as { llmApiKey: unknown }).llmApiKey;
    value = { ...value, llmApiKey: key === null ? null : key === '-' ? '[from stdin]' : '[redacted]' };
  }
  return { ...args, json: JSON.stringify(value) };
}

/** Who the audit trail names for an operator's change. */
const operatorActor = () => ({ type: 'operator' as const, id: process.env.USER ?? 'cli' });

/** An account or credential change, in the chain of the tenant it belongs to (never a password or key). */
async function auditPeople(db: Queryable, event: { tenantId: string | null; action: 'operator.created' | 'user.created' | 'api_key.created' | 'api_key.revoked' | 'session.revoked'; resource: string; details?: Record<string, unknown> }): Promise<void> {
  await appendAuditEvent(db, { ...event, actor: operatorActor(), outcome: 'success' });
}

async function requireTenant(pool: Pool, tenantId: string): Promise<void> {
  if (!(await tenantExists(pool, tenantId))) throw new UsageError(`--tenant: no tenant ${tenantId}`);
}

/** One command's work; `run` records every call in the audit trail. */
async function runCommand(name: CommandName, args: Record<string, string | undefined>, config: Config, pool: Pool, password?: string): Promise<unknown> {
  {
    switch (name) {
      case 'operators:create': {
        const a = validate(name, commands[name].schema, args);
        const created = await createOperator(pool, { email: a.email, password: password ?? '' });
        await auditPeople(pool, { tenantId: null, action: 'operator.created', resource: `operator:${created.id}` });
        return created;
      }
      case 'users:create': {
        const a = validate(name, commands[name].schema, args);
        await requireTenant(pool, a.tenant);
        // The audit row commits with the user, in the tenant's scope.
        const created = await createTenantUser(pool, { tenantId: a.tenant, email: a.email, role: a.role, password: password ?? '' }, (tx, u) =>
          auditPeople(tx, { tenantId: a.tenant, action: 'user.created', resource: `tenant_user:${u.id}`, details: { role: u.role } }),
        );
        return { id: created.id, tenantId: created.tenantId, email: created.email, role: created.role };
      }
      case 'api-keys:create': {
        const a = validate(name, commands[name].schema, args);
        const tenantId = a.tenant === 'platform' ? null : a.tenant;
        if (tenantId) await requireTenant(pool, tenantId);
        const created = await createApiKey(pool, { tenantId, role: a.role as (typeof ROLES)[number], name: a.name, createdBy: `cli:${operatorActor().id}` });
        await auditPeople(pool, { tenantId, action: 'api_key.created', resource: `api_key:${created.id}`, details: { prefix: created.prefix, role: created.role } });
        // The only time the key is shown: it is stored as a hash.
        return { ...created, note: 'store the key now: it is not shown again' };
      }
      case 'api-keys:revoke': {
        const a = validate(name, commands[name].schema, args);
        const result = await revokeApiKey(pool, a.id);
        if (!result) throw new UsageError(`--id: no API key ${a.id}`);
        if (result.revoked) await auditPeople(pool, { tenantId: result.tenantId, action: 'api_key.revoked', resource: `api_key:${a.id}` });
        return { id: a.id, revoked: result.revoked ? 'now' : 'already' };
      }
      case 'sessions:revoke': {
        const a = validate(name, commands[name].schema, args);
        const account = await findAccountById(pool, a.user);
        if (!account) throw new UsageError(`--user: no tenant user or operator ${a.user}`);
        const revoked = await revokeSessionsOf(pool, account.tenantId, a.user, 'operator_revoked');
        await auditPeople(pool, { tenantId: account.tenantId, action: 'session.revoked', resource: `account:${a.user}`, details: { sessions: revoked } });
        return { user: a.user, sessionsRevoked: revoked };
      }
      case 'tenants:create': {
        const a = validate(name, commands[name].schema, args);
        return await createTenant(pool, a.name);
      }
      case 'channels:connect': {
        const a = validate(name, commands[name].schema, args);
        if (!(await tenantExists(pool, a.tenant))) throw new UsageError(`--tenant: no tenant ${a.tenant}`);
        const { id } = await connectChannel(pool, new SecretVault(pool, keys(config)), {
          tenantId: a.tenant,
          platform: a.platform,
          accountId: a['account-id'],
          accessToken: a['access-token'],
        });
        return { id };
      }
      case 'tenants:delete': {
        const a = validate(name, commands[name].schema, args);
        const result = await deleteTenant(pool, a.id);
        if (!result.deleted) throw new UsageError(`--id: no tenant ${a.id}`);
        return { id: a.id, ...result };
      }
      case 'keys:status':
        validate(name, commands[name].schema, args);
        return await keyStatus(pool, keys(config), { policy: dataKeyPolicyFromConfig(config) });
      case 'keys:retire': {
        const a = validate(name, commands[name].schema, args);
        await retireMasterKey(pool, keys(config), a.version);
        return { retired: a.version };
      }
      case 'keys:rotate': {
        const a = validate(name, commands[name].schema, args);
        return await startKeyRotation(config, { batchSize: a['batch-size'], rotateDataKeys: a['data-keys'] === 'yes' }, a.wait === 'yes');
      }
      case 'products:add': {
        const a = validate(name, commands[name].schema, args);
        await requireTenant(pool, a.tenant);
        try {
          return await addProduct(pool, a.tenant, a);
        } catch (err) {
          if ((err as { constraint?: string }).constraint === 'products_tenant_sku_uq') {
            throw new UsageError(`--sku: the tenant already has a product ${a.sku}; products:import updates existing products`);
          }
          throw err;
        }
      }
      case 'products:import': {
        const a = validate(name, commands[name].schema, args);
        const format = a.format ?? formatFromFileName(a.file);
        if (!format) throw new UsageError(`--format: cannot tell the format from the file name; give --format csv or --format json\n  ${commands[name].usage}`);
        await requireTenant(pool, a.tenant);
        let size: number;
        try {
          size = statSync(a.file).size;
        } catch (err) {
          throw new UsageError(`--file: cannot read ${a.file} (${(err as { code?: string }).code ?? (err as Error).name})`);
        }
        // Checked before reading: a huge file is refused without loading it.
        if (size > MAX_CATALOG_BYTES) throw new UsageError(`--file: ${a.file} has ${size} bytes; at most ${MAX_CATALOG_BYTES} (5 MiB) per import`);
        const products = parseCatalog(readFileSync(a.file), format);
        return await importCatalog(pool, a.tenant, products, { mode: a.mode, actor: operatorActor(), format });
      }
      case 'settings:show': {
        const a = validate(name, commands[name].schema, args);
        await requireTenant(pool, a.tenant);
        return await loadTenantSettings(pool, a.tenant);
      }
      case 'settings:set': {
        const a = validate(name, commands[name].schema, args);
        let json: unknown;
        try {
          json = JSON.parse(a.json);
        } catch {
          throw new UsageError(`--json: is not valid JSON\n  ${commands[name].usage}`);
        }
        // The key may come on stdin (`"llmApiKey": "-"`), like `--access-token -`.
        if (json !== null && typeof json === 'object' && (json as { llmApiKey?: unknown }).llmApiKey === '-') {
          json = { ...json, llmApiKey: readFileSync(0, 'utf8').trim() };
        }
        const patch = tenantSettingsPatchSchema.safeParse(json);
        if (!patch.success) {
          const problems = patch.error.issues.map((i) => `--json ${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
          throw new UsageError(`${problems.join('\n')}\n  ${commands[name].usage}`);
        }
        await requireTenant(pool, a.tenant);
        return await updateTenantSettings(pool, new SecretVault(pool, keys(config)), a.tenant, patch.data, { actor: operatorActor() });
      }
      case 'audit:verify': {
        const a = validate(name, commands[name].schema, args);
        const { keyring, dir } = auditSettings(config);
        const report = await verifyAuditLog(pool, { keyring, dir, tenantId: a.tenant });
        if (!report.ok) await recordVerificationFailure(pool, report);
        return new CliOutput(a.json === 'yes' ? `${JSON.stringify(report)}\n` : formatAuditReport(report), report.ok ? 0 : 3);
      }
      case 'audit:export': {
        const a = validate(name, commands[name].schema, args);
        const { keyring, dir, signer } = auditSettings(config);
        // To a file (then a summary on stdout), or the export itself on stdout.
        const fd = a.out ? openSync(a.out, 'w', 0o600) : 1;
        try {
          const summary = await exportAuditChain(pool, (line) => void writeAll(fd, `${line}\n`), { tenantId: a.tenant, from: a.from, to: a.to, keyring, signer, dir });
          return a.out ? { out: a.out, ...summary } : new CliOutput('', 0);
        } finally {
          if (a.out) closeSync(fd);
        }
      }
    }
  }
}

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      // A non-blocking stdout pipe that is full: wait for the reader.
      if ((err as { code?: string }).code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

/** A failed verification is itself an audit event (platform chain); never fails the command. */
async function recordVerificationFailure(pool: ReturnType<typeof createPool>, report: AuditVerifyReport): Promise<void> {
  const broken = report.chains.filter((c) => !c.ok);
  await appendAuditEvent(pool, {
    tenantId: null,
    actor: { type: 'operator', id: 'cli' },
    action: 'audit.verification_failed',
    resource: report.scope === 'all chains' ? 'audit_log' : `audit_chain:${report.scope}`,
    outcome: 'failure',
    reason: `${broken.length} broken chain(s)`,
    details: { firstBad: broken.slice(0, 20).map((c) => ({ chainId: c.chainId, seq: c.firstBad?.seq ?? null, kind: c.firstBad?.kind ?? null })) },
  }).catch(() => undefined);
}

function keys(config: Config): StaticKeyProvider {
  return StaticKeyProvider.fromSpec(config.MASTER_KEYS);
}

/** One rotation at a time: a second `keys:rotate` while one runs attaches to it. */
async function startKeyRotation(config: Config, input: KeyRotationInput, wait: boolean): Promise<unknown> {
  const { client, connection } = createTemporalClient({
    address: config.TEMPORAL_ADDRESS,
    namespace: config.TEMPORAL_NAMESPACE,
    dataConverter: await createDataConverter(keys(config)),
  });
  try {
    const handle = await client.workflow.start('keyRotationWorkflow', {
      workflowId: 'key-rotation',
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    return wait ? { workflowId: handle.workflowId, result: await handle.result() } : { workflowId: handle.workflowId, runId: handle.firstExecutionRunId };
  } finally {
    await connection.close();
  }
}

run(process.argv.slice(2)).then(
  (result) => {
    if (result instanceof CliOutput) {
      if (result.text) writeAll(1, result.text);
      process.exitCode = result.exitCode;
      return;
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (err: unknown) => {
    if (err instanceof CatalogValidationError) {
      process.stderr.write(`error: ${err.describe()}\n`);
      process.exit(2);
    }
    if (
      err instanceof UsageError ||
      err instanceof ChannelConflictError ||
      err instanceof KeyInUseError ||
      err instanceof SettingsError ||
      err instanceof PasswordPolicyError ||
      err instanceof AccountError ||
      err instanceof ApiKeyError
    ) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nRun \`npm start\` once (it writes .data/dev.env) or export the variables.\n`);
      process.exit(2);
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
