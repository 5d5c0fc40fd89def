import Router from '@koa/router';
import type { Client, Connection } from '@temporalio/client';
import type { Pool } from 'pg';
import { appendAuditEvents } from '../audit/log';
import { auditRequest } from './request-audit';
import type { Config } from '../config';
import { withPlatform } from '../db/tenant-scope';
import { findChannelByAccount, type ChannelRoute } from '../db/channels';
import { recordUnrouted, type UnroutedRow } from '../db/unrouted';
import type { Logger } from '../logger';
import { constantTimeEqual, verifySignature } from '../meta/signature';
import { parseWebhookPayload, WebhookPayloadError } from '../meta/webhook-events';
import type { InboundEvent, ParsedWebhook } from '../shared/types';
import { withTemporalDeadline } from '../temporal/client';
import { dispatchToConversation } from './conversation-dispatch';
import { sendError } from './errors';
import { readBodyOr413 } from './raw-body';

export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;

export interface WebhookDeps {
  config: Pick<Config, 'META_APP_SECRET' | 'INSTAGRAM_APP_SECRET' | 'META_VERIFY_TOKEN' | 'TEMPORAL_TASK_QUEUE' | 'TEMPORAL_RPC_TIMEOUT_MS' | 'CONVERSATION_IDLE_TIMEOUT_MS'>;
  pool: Pool;
  temporal: { client: Client; connection: Connection };
  logger: Logger;
}

/** Resolves each event's channel (one lookup per account in the delivery); the rest is unrouted. */
async function routeEvents(pool: Pool, parsed: ParsedWebhook): Promise<{ routed: Array<{ channel: ChannelRoute; event: InboundEvent }>; unrouted: UnroutedRow[] }> {
  const channels = new Map<string, Promise<ChannelRoute | null>>();
  const lookup = (event: InboundEvent) => {
    const key = `${event.platform}:${event.accountId}`;
    if (!channels.has(key)) channels.set(key, findChannelByAccount(pool, event.platform, event.accountId));
    return channels.get(key)!;
  };
  const routed: Array<{ channel: ChannelRoute; event: InboundEvent }> = [];
  const unrouted: UnroutedRow[] = parsed.unsupported.map((event) => ({ reason: 'unsupported_event' as const, event }));
  const resolved = await Promise.all(parsed.events.map(async (event) => ({ event, channel: await lookup(event) })));
  for (const { event, channel } of resolved) {
    if (channel) routed.push({ channel, event });
    else unrouted.push({ reason: 'unknown_account', event, object: parsed.object });
  }
  return { routed, unrouted };
}

export function metaWebhookRoutes(deps: WebhookDeps): Router {
  const { config, pool, temporal, logger } = deps;
  const secrets = [config.META_APP_SECRET, ...(config.INSTAGRAM_APP_SECRET ? [config.INSTAGRAM_APP_SECRET] : [])];
  const router = new Router();

  // Verification handshake (contract §1.1): echo hub.challenge only for our verify token.
  router.get('/webhooks/meta', (ctx) => {
    const mode = ctx.query['hub.mode'];
    const token = ctx.query['hub.verify_token'];
    const challenge = ctx.query['hub.challenge'];
    if (mode === 'subscribe' && typeof token === 'string' && typeof challenge === 'string' && constantTimeEqual(token, config.META_VERIFY_TOKEN)) {
      ctx.type = 'text/plain';
      ctx.body = challenge;
      return;
    }
    sendError(ctx, 403, 'verification_failed', 'hub.mode must be "subscribe" and hub.verify_token must match');
  });

  router.post('/webhooks/meta', async (ctx) => {
    const raw = await readBodyOr413(ctx, MAX_WEBHOOK_BODY_BYTES, 'webhook body');
    if (!raw) return;
    if (!ctx.is('application/json')) {
      return sendError(ctx, 415, 'unsupported_media_type', 'Content-Type must be application/json');
    }
    const matched = verifySignature(ctx.get('x-hub-signature-256') || undefined, raw, secrets);
    if (matched < 0) {
      logger.warn({ ip: ctx.ip, requestId: ctx.state.requestId, bytes: raw.length }, 'webhook signature rejected');
      // Outside any transaction: an audit failure is logged and never changes the 401.
      await auditRequest(pool, logger, ctx, {
        tenantId: null,
        actor: { type: 'meta' },
        action: 'webhook.signature_rejected',
        resource: 'webhook:meta',
        outcome: 'failure',
        reason: ctx.get('x-hub-signature-256') ? 'signature_mismatch' : 'signature_missing',
        details: { bytes: raw.length },
      });
      return sendError(ctx, 401, 'invalid_signature', 'X-Hub-Signature-256 is missing or does not match the request body');
    }

    let parsed: ParsedWebhook;
    try {
      parsed = parseWebhookPayload(JSON.parse(raw.toString('utf8')));
    } catch (err) {
      if (err instanceof SyntaxError) {
        // V8's message quotes the input; name only the position so no body content is echoed.
        const at = /position (\d+)/.exec(err.message)?.[1];
        const where = /end of JSON input/.test(err.message) ? ' (unexpected end of input)' : at ? ` (error at byte ${at})` : '';
        return sendError(ctx, 400, 'malformed_json', `request body is not valid JSON${where}`);
      }
      if (err instanceof WebhookPayloadError) return sendError(ctx, 400, 'invalid_payload', err.message);
      throw err;
    }

    try {
      const { routed, unrouted } = await routeEvents(pool, parsed);
      if (unrouted.length > 0) {
        // The unrouted rows and their audit events (the platform chain) commit together.
        await withPlatform(pool, async (client) => {
          await recordUnrouted(client, unrouted);
          await appendAuditEvents(
            client,
            unrouted.map((u) => ({
              event: {
                tenantId: null,
                actor: { type: 'meta' as const },
                action: 'webhook.unrouted' as const,
                resource: `account:${u.event.platform ?? 'unknown'}:${u.event.accountId}`,
                outcome: 'failure' as const,
                reason: u.reason,
                ip: ctx.ip,
                requestId: ctx.state.requestId,
                details: { accountId: u.event.accountId, eventType: u.reason === 'unknown_account' ? u.event.kind : u.event.eventType, reason: u.reason, platform: u.event.platform ?? null },
              },
            })),
          );
        });
      }
      await withTemporalDeadline(temporal.connection, config.TEMPORAL_RPC_TIMEOUT_MS, () =>
        Promise.all(
          routed.map(({ channel, event }) =>
            dispatchToConversation(temporal.client, { taskQueue: config.TEMPORAL_TASK_QUEUE, idleTimeoutMs: config.CONVERSATION_IDLE_TIMEOUT_MS }, channel, event),
          ),
        ),
      );
      logger.debug({ requestId: ctx.state.requestId, routed: routed.length, unrouted: unrouted.length, secret: matched }, 'webhook accepted');
    } catch (err) {
      // Nothing is acknowledged unless every event is durable: Meta redelivers on non-200 and the
      // conversation workflow drops the duplicates of whatever did get through.
      logger.error({ requestId: ctx.state.requestId, err: { name: (err as Error).name, message: (err as Error).message } }, 'webhook hand-off failed');
      return sendError(ctx, 503, 'temporarily_unavailable', 'events could not be handed off durably; retry later');
    }
    ctx.type = 'text/plain';
    ctx.body = 'EVENT_RECEIVED';
  });

  return router;
}
