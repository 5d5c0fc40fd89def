import { z } from 'zod';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { SecretLocation, SecretVault } from '../crypto/vault';
import type { AgentSettings, ReplyEngineKind } from '../shared/types';
import type { AuditActor } from './channels';
import { recordSecretDecrypt } from './channels';
import { inTenant, withTenant, type Queryable } from './tenant-scope';

/**
 * A tenant's assistant: who it is, what it knows about the business, which engine answers and how
 * the conversation workflow paces itself. A tenant without a row gets the defaults (the offline
 * catalog engine, English, an 800 ms quiet window).
 */

const text = (max: number) => z.string().trim().min(1).max(max);

/** The `assistant` jsonb column: persona and business facts the engines and `get_business_info` use. */
export const assistantProfileSchema = z
  .object({
    businessName: text(200).optional(),
    persona: text(2000).optional(),
    /** BCP 47 primary language, e.g. `en`, `de`, `es`. */
    language: z.string().regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a BCP 47 tag such as en or de-AT').optional(),
    hours: text(1000).optional(),
    address: text(1000).optional(),
    /** Named policies: shipping, returns, payment, … */
    policies: z.record(z.string().regex(/^[a-z0-9_ -]{1,40}$/i, 'policy names are 1–40 letters, digits, spaces, - or _'), text(2000)).optional(),
    /** Free-form facts the assistant may state. */
    facts: z.array(text(500)).max(50).optional(),
  })
  .strict();

export type AssistantProfile = z.infer<typeof assistantProfileSchema>;

/** What an admin may change; omitted fields stay as they are, `null` clears an optional one. */
export const tenantSettingsPatchSchema = z
  .object({
    assistant: assistantProfileSchema.optional(),
    replyEngine: z.enum(['catalog', 'openai-compatible']).optional(),
    llmBaseUrl: z.url({ protocol: /^https?$/ }).nullable().optional(),
    llmModel: text(200).nullable().optional(),
    /** Write-only: stored in the vault, never returned. */
    llmApiKey: text(4000).nullable().optional(),
    debounceMs: z.number().int().min(0).max(3000).optional(),
    historyMessages: z.number().int().min(0).max(100).optional(),
    turnDeadlineMs: z.number().int().min(500).max(60_000).optional(),
    storyReplies: z.enum(['answer', 'ignore']).optional(),
    handoffIdleMs: z.number().int().min(60_000).max(2_592_000_000).optional(),
  })
  .strict();

export type TenantSettingsPatch = z.infer<typeof tenantSettingsPatchSchema>;

export interface TenantSettings {
  assistant: AssistantProfile;
  engine: ReplyEngineKind;
  llm: { baseUrl: string | null; model: string | null; hasApiKey: boolean };
  historyMessages: number;
  agent: AgentSettings;
}

export const DEFAULT_AGENT_SETTINGS: AgentSettings = {
  engine: 'catalog',
  debounceMs: 800,
  turnDeadlineMs: 8000,
  storyReplies: 'answer',
  handoffIdleMs: 30 * 60_000,
  language: 'en',
};

interface SettingsRow {
  id: string;
  assistant: unknown;
  reply_engine: ReplyEngineKind;
  llm_base_url: string | null;
  llm_model: string | null;
  has_key: boolean;
  debounce_ms: number;
  history_messages: number;
  turn_deadline_ms: number;
  story_replies: 'answer' | 'ignore';
  handoff_idle_ms: string;
}

const llmKeyLocation = (tenantId: string, rowId: string): SecretLocation => ({ tenantId, table: 'tenant_settings', column: 'llm_api_key', rowId });

export async function loadTenantSettings(pool: Pool | Queryable, tenantId: string): Promise<TenantSettings> {
  const { rows } = await inTenant(pool, tenantId, (tx) => tx.query<SettingsRow>(
    `SELECT id, assistant, reply_engine, llm_base_url, llm_model, llm_api_key_ciphertext IS NOT NULL AS has_key,
            debounce_ms, history_messages, turn_deadline_ms, story_replies, handoff_idle_ms
     FROM tenant_settings WHERE tenant_id = $1`,
    [tenantId],
  ));
  const r = rows[0];
  if (!r) {
    return { assistant: {}, engine: 'catalog', llm: { baseUrl: null, model: null, hasApiKey: false }, historyMessages: 12, agent: { ...DEFAULT_AGENT_SETTINGS } };
  }
  // A row written by an older version may not parse: fall back to no profile rather than fail every turn.
  const parsed = assistantProfileSchema.safeParse(r.assistant);
  const assistant = parsed.success ? parsed.data : {};
  return {
    assistant,
    engine: r.reply_engine,
    llm: { baseUrl: r.llm_base_url, model: r.llm_model, hasApiKey: r.has_key },
    historyMessages: r.history_messages,
    agent: {
      engine: r.reply_engine,
      debounceMs: r.debounce_ms,
      turnDeadlineMs: r.turn_deadline_ms,
      storyReplies: r.story_replies,
      handoffIdleMs: Number(r.handoff_idle_ms),
      language: assistant.language ?? DEFAULT_AGENT_SETTINGS.language,
    },
  };
}

export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/**
 * Applies a validated patch. The API key is sealed in the same transaction as the row and the
 * `settings.updated` audit event (which names the changed fields, never their values for the key).
 */
export async function updateTenantSettings(
  pool: Pool,
  vault: SecretVault,
  tenantId: string,
  patch: TenantSettingsPatch,
  opts: { actor: AuditActor; requestId?: string; ip?: string },
): Promise<TenantSettings> {
  await withTenant(pool, tenantId, async (client) => {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO tenant_settings (tenant_id) VALUES ($1)
       ON CONFLICT (tenant_id) DO UPDATE SET updated_at = now() RETURNING id`,
      [tenantId],
    );
    const rowId = rows[0]!.id;
    const sets: string[] = [];
    const values: unknown[] = [];
    const set = (column: string, value: unknown) => {
      values.push(value);
      sets.push(`${column} = $${values.length + 1}`);
    };
    if (patch.assistant !== undefined) set('assistant', JSON.stringify(patch.assistant));
    if (patch.replyEngine !== undefined) set('reply_engine', patch.replyEngine);
    if (patch.llmBaseUrl !== undefined) set('llm_base_url', patch.llmBaseUrl);
    if (patch.llmModel !== undefined) set('llm_model', patch.llmModel);
    if (patch.debounceMs !== undefined) set('debounce_ms', patch.debounceMs);
    if (patch.historyMessages !== undefined) set('history_messages', patch.historyMessages);
    if (patch.turnDeadlineMs !== undefined) set('turn_deadline_ms', patch.turnDeadlineMs);
    if (patch.storyReplies !== undefined) set('story_replies', patch.storyReplies);
    if (patch.handoffIdleMs !== undefined) set('handoff_idle_ms', patch.handoffIdleMs);
    if (patch.llmApiKey === null) {
      set('llm_api_key_ciphertext', null);
      set('llm_api_key_version', null);
    } else if (patch.llmApiKey !== undefined) {
      const sealed = await vault.encrypt(llmKeyLocation(tenantId, rowId), patch.llmApiKey, client);
      set('llm_api_key_ciphertext', sealed.blob);
      set('llm_api_key_version', sealed.keyVersion);
    }
    if (sets.length > 0) await client.query(`UPDATE tenant_settings SET ${sets.join(', ')} WHERE tenant_id = $1`, [tenantId, ...values]);

    const after = await loadTenantSettings(client, tenantId);
    if (after.engine === 'openai-compatible' && (!after.llm.baseUrl || !after.llm.model)) {
      throw new SettingsError('replyEngine openai-compatible needs llmBaseUrl and llmModel');
    }
    await appendAuditEvent(client, {
      tenantId,
      actor: opts.actor,
      action: 'settings.updated',
      resource: `tenant:${tenantId}`,
      outcome: 'success',
      ip: opts.ip,
      requestId: opts.requestId,
      details: { fields: Object.keys(patch).sort(), engine: after.engine },
    });
  });
  return loadTenantSettings(pool, tenantId);
}

/**
 * Decrypts one of the tenant's settings secrets for `purpose`, counted (`secret_decrypts`) and
 * audited (`token.decrypted`) before it is handed out, like every other secret.
 */
async function decryptSettingsSecret(pool: Pool, vault: SecretVault, location: SecretLocation, ciphertext: Buffer, purpose: 'ai.reply' | 'notify.webhook'): Promise<string> {
  const secret = await vault.decrypt(location, ciphertext);
  await withTenant(pool, location.tenantId, async (client) => {
    await recordSecretDecrypt(client, location.tenantId, purpose);
    await appendAuditEvent(client, {
      tenantId: location.tenantId,
      actor: { type: 'system', id: 'switchboard' },
      action: 'token.decrypted',
      resource: `tenant_settings:${location.rowId}`,
      outcome: 'success',
      details: { purpose },
    });
  });
  return secret;
}

/**
 * Decrypts the tenant's model API key for one reply step; counted and audited like a channel
 * token (purpose `ai.reply`). Null when the tenant stored none (e.g. a local Ollama).
 */
export async function loadLlmApiKey(pool: Pool, vault: SecretVault, tenantId: string): Promise<string | null> {
  const { rows } = await inTenant(pool, tenantId, (tx) => tx.query<{ id: string; llm_api_key_ciphertext: Buffer | null }>(
    'SELECT id, llm_api_key_ciphertext FROM tenant_settings WHERE tenant_id = $1',
    [tenantId],
  ));
  const r = rows[0];
  if (!r?.llm_api_key_ciphertext) return null;
  return decryptSettingsSecret(pool, vault, llmKeyLocation(tenantId, r.id), r.llm_api_key_ciphertext, 'ai.reply');
}

// ---- notifications (issue 8, docs/token-lifecycle.md "Notifications") ---------------------------

/** Where a tenant hears about its channels' tokens: an address (else its owners) and an optional signed webhook. */
export interface NotificationSettings {
  /** null: the tenant's active owners are e-mailed. */
  notifyEmail: string | null;
  webhookUrl: string | null;
  /** Whether a signing secret exists (it is shown once, when generated, and never again). */
  webhookSecretSet: boolean;
}

export interface NotificationSettingsPatch {
  /** null: back to the owners. */
  notifyEmail?: string | null;
  /** null: no webhook (the secret goes with it). */
  webhookUrl?: string | null;
  rotateWebhookSecret?: boolean;
}

const notifySecretLocation = (tenantId: string, rowId: string): SecretLocation => ({ tenantId, table: 'tenant_settings', column: 'notify_webhook_secret', rowId });

export async function loadNotificationSettings(db: Pool | Queryable, tenantId: string): Promise<NotificationSettings> {
  const { rows } = await inTenant(db, tenantId, (tx) =>
    tx.query<{ notify_email: string | null; notify_webhook_url: string | null; has_secret: boolean }>(
      `SELECT notify_email, notify_webhook_url, notify_webhook_secret_ciphertext IS NOT NULL AS has_secret
         FROM tenant_settings WHERE tenant_id = $1`,
      [tenantId],
    ),
  );
  const r = rows[0];
  return { notifyEmail: r?.notify_email ?? null, webhookUrl: r?.notify_webhook_url ?? null, webhookSecretSet: r?.has_secret ?? false };
}

/**
 * Applies a validated patch with its `settings.updated` audit event in one transaction. A new
 * signing secret is generated when asked for, or when a webhook URL is set and none exists; it is
 * returned here once (sealed in the vault, never readable through any API again). Removing the URL
 * removes the secret, so the next URL starts with a fresh one.
 */
export async function updateNotificationSettings(
  pool: Pool,
  vault: SecretVault,
  tenantId: string,
  patch: NotificationSettingsPatch,
  opts: { actor: AuditActor; requestId?: string; ip?: string; userAgent?: string; generateSecret: () => string },
): Promise<{ settings: NotificationSettings; webhookSecret: string | null }> {
  let webhookSecret: string | null = null;
  await withTenant(pool, tenantId, async (client) => {
    const { rows } = await client.query<{ id: string; has_secret: boolean; notify_webhook_url: string | null }>(
      `INSERT INTO tenant_settings (tenant_id) VALUES ($1)
       ON CONFLICT (tenant_id) DO UPDATE SET updated_at = now()
       RETURNING id, notify_webhook_secret_ciphertext IS NOT NULL AS has_secret, notify_webhook_url`,
      [tenantId],
    );
    const row = rows[0]!;
    const sets: string[] = [];
    const values: unknown[] = [];
    const set = (column: string, value: unknown) => {
      values.push(value);
      sets.push(`${column} = $${values.length + 1}`);
    };
    if (patch.notifyEmail !== undefined) set('notify_email', patch.notifyEmail);
    const url = patch.webhookUrl !== undefined ? patch.webhookUrl : row.notify_webhook_url;
    if (patch.webhookUrl !== undefined) set('notify_webhook_url', patch.webhookUrl);
    if (url === null) {
      if (row.has_secret) {
        set('notify_webhook_secret_ciphertext', null);
        set('notify_webhook_secret_version', null);
      }
    } else if (patch.rotateWebhookSecret === true || !row.has_secret) {
      webhookSecret = opts.generateSecret();
      const sealed = await vault.encrypt(notifySecretLocation(tenantId, row.id), webhookSecret, client);
      set('notify_webhook_secret_ciphertext', sealed.blob);
      set('notify_webhook_secret_version', sealed.keyVersion);
    }
    if (sets.length > 0) await client.query(`UPDATE tenant_settings SET ${sets.join(', ')} WHERE tenant_id = $1`, [tenantId, ...values]);
    await appendAuditEvent(client, {
      tenantId,
      actor: opts.actor,
      action: 'settings.updated',
      resource: `tenant:${tenantId}`,
      outcome: 'success',
      ip: opts.ip,
      userAgent: opts.userAgent,
      requestId: opts.requestId,
      // Field names only: the address is personal data and the secret is a secret (a detail named "…secret…" would be dropped anyway).
      details: { fields: Object.keys(patch).filter((k) => k !== 'rotateWebhookSecret').sort(), signingKeyGenerated: webhookSecret !== null },
    });
  });
  return { settings: await loadNotificationSettings(pool, tenantId), webhookSecret };
}

/**
 * The webhook URL and its signing secret, decrypted for one delivery attempt: counted
 * (`secret_decrypts`, purpose `notify.webhook`) and audited (`token.decrypted`) before it is
 * returned, like every other secret. Null when the tenant has no webhook.
 */
export async function loadNotifyWebhook(pool: Pool, vault: SecretVault, tenantId: string): Promise<{ url: string; secret: string } | null> {
  const { rows } = await inTenant(pool, tenantId, (tx) =>
    tx.query<{ id: string; notify_webhook_url: string | null; notify_webhook_secret_ciphertext: Buffer | null }>(
      'SELECT id, notify_webhook_url, notify_webhook_secret_ciphertext FROM tenant_settings WHERE tenant_id = $1',
      [tenantId],
    ),
  );
  const r = rows[0];
  if (!r?.notify_webhook_url || !r.notify_webhook_secret_ciphertext) return null;
  const secret = await decryptSettingsSecret(pool, vault, notifySecretLocation(tenantId, r.id), r.notify_webhook_secret_ciphertext, 'notify.webhook');
  return { url: r.notify_webhook_url, secret };
}

/** Who gets the notification e-mails: the configured address, else every active owner (personal data: never logged). */
export async function notificationRecipients(db: Pool | Queryable, tenantId: string): Promise<string[]> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<{ notify_email: string | null }>('SELECT notify_email FROM tenant_settings WHERE tenant_id = $1', [tenantId]);
    if (rows[0]?.notify_email) return [rows[0].notify_email];
    const owners = await tx.query<{ email: string }>(
      `SELECT email FROM tenant_users WHERE tenant_id = $1 AND role = 'owner' AND disabled_at IS NULL ORDER BY created_at, id LIMIT 20`,
      [tenantId],
    );
    return owners.rows.map((o) => o.email);
  });
}
