import type { Pool } from 'pg';
import type { SecretVault } from '../crypto/vault';
import { loadRecentMessages } from '../db/history';
import { loadLlmApiKey, loadTenantSettings, type TenantSettings } from '../db/tenant-settings';
import { CatalogReplyEngine } from './catalog-engine';
import { OpenAiCompatibleEngine } from './openai-compatible';
import type { ReplyEngine } from './reply-engine';

/** Picks a tenant's reply engine from its settings, per step (settings changes apply at once). */
export type EngineSelector = (tenantId: string) => Promise<{ engine: ReplyEngine; settings: TenantSettings }>;

/** The tenant chose the LLM engine but its settings cannot drive it; retrying will not help. */
export class EngineConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineConfigError';
  }
}

export interface EngineSelectorDeps {
  pool: Pool;
  vault: SecretVault;
  fetchImpl?: typeof fetch;
  /** Per-request limit for LLM calls, on top of the activity's cancellation. */
  llmTimeoutMs?: number;
}

export function createEngineSelector({ pool, vault, fetchImpl, llmTimeoutMs }: EngineSelectorDeps): EngineSelector {
  return async (tenantId) => {
    const settings = await loadTenantSettings(pool, tenantId);
    if (settings.engine === 'catalog') {
      const engine = new CatalogReplyEngine({
        language: settings.agent.language,
        ...(settings.assistant.businessName ? { businessName: settings.assistant.businessName } : {}),
      });
      return { engine, settings };
    }
    const { baseUrl, model, hasApiKey } = settings.llm;
    if (!baseUrl || !model) throw new EngineConfigError('the openai-compatible engine needs llmBaseUrl and llmModel');
    // Decrypted per step and never kept: a key rotated or removed applies to the next step.
    const apiKey = hasApiKey ? await loadLlmApiKey(pool, vault, tenantId) : null;
    const engine = new OpenAiCompatibleEngine({
      baseUrl,
      model,
      apiKey,
      profile: settings.assistant,
      language: settings.agent.language,
      loadHistory: (conversationId, exclude) => loadRecentMessages(pool, tenantId, conversationId, settings.historyMessages, exclude),
      ...(llmTimeoutMs !== undefined ? { timeoutMs: llmTimeoutMs } : {}),
      ...(fetchImpl ? { fetchImpl } : {}),
    });
    return { engine, settings };
  };
}
