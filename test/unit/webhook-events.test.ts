import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WebhookPayloadError, parseWebhookPayload } from '../../src/meta/webhook-events';
import type { InboundEvent, ParsedWebhook } from '../../src/shared/types';

// The fixtures live in `../shared` beside the project root, wherever the project is cloned.
const PROJECT_ROOT = path.resolve(__dirname, '../..');
const FIXTURES = path.resolve(PROJECT_ROOT, '../shared/meta-fixtures');
const WEBHOOK_FIXTURE = /^(messenger|ig|page)-.+\.json$/;

const readFixture = (name: string): string => readFileSync(path.join(FIXTURES, name), 'utf8');
const loadFixture = (name: string): unknown => JSON.parse(readFixture(name));

// Cast from meta-fixtures/README.md.
const PAGE_A = '104829376511820';
const PAGE_B = '231907745812664';
const PSID_1 = '7291845503617724';
const PSID_2 = '6650238819274415';
const PSID_B = '8012557340198863';
const IG_ACCOUNT = '17841469920315587';
const IGSID_1 = '1128374650392817';
const IGSID_2 = '9473850216648302';
const APP_ID = '618273940215567';

const MESSENGER_ECHO_MID =
  'm_6wdc0CF5Q00MJ7EGKfIIRXWDRmUiF-5y9_-n4nt9Ej9BAcROgkl2Yrz8OokRu68KnLyKub6kLDo6BBH1BBxCHN';
const IG_IMAGE_MID =
  'aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6MzA0MTQ3ODgzMDIyNjkxNzM0MDI5ODc3NDI5NTY4MTc0MjgzMTc4OjIxMzc0NjE4OTc5OTQ5MzYwNDkxNjYzMDY3ODkwMDczNTUzMTIxODI';
const IG_ECHO_MID =
  'aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6OTQ5MjYyMjI4NTU4OTQ2ODUwNTc4ODMzNTYyNjMwNDE0MDg0NzQ4OjY5MDE2MzA1MDM3MjE1ODI2NzAwMTc0NzgwMTk4OTc4OTYzMDM4MjU';

const only = (object: string, events: InboundEvent[]): ParsedWebhook => ({ object, events, unsupported: [] });

const EXPECTED: Record<string, ParsedWebhook> = {
  'messenger-text.json': only('page', [
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_1,
      timestamp: 1768485807000,
      dedupeKey: 'mid:m_foTuOJlZhZSKOOSVJM4X1AaipKpFAzmm9bjac6mQSKioXDd7-tNUKDIlCVN6xYAfNzJ6zGmPyWi92Yw4YMKEms',
      mid: 'm_foTuOJlZhZSKOOSVJM4X1AaipKpFAzmm9bjac6mQSKioXDd7-tNUKDIlCVN6xYAfNzJ6zGmPyWi92Yw4YMKEms',
      text: 'Hallo! Habt ihr die Jacke noch in Größe M? 🧥',
      attachments: [],
    },
  ]),
  'messenger-image-attachment.json': only('page', [
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_1,
      timestamp: 1768485852112,
      dedupeKey: 'mid:m_XQ8beolrjQSx-dJus49FN2G1w155DeV8kNQ-T4J-nYPYPqeywyk8N6b8TWBC5_ntdN2HFxJL0viOuYi_ldtAbd',
      mid: 'm_XQ8beolrjQSx-dJus49FN2G1w155DeV8kNQ-T4J-nYPYPqeywyk8N6b8TWBC5_ntdN2HFxJL0viOuYi_ldtAbd',
      attachments: [
        {
          type: 'image',
          url: 'https://scontent.xx.fbcdn.net/v/t1.15752-9/493825651_8151542203410139_6895592339375309001_n.jpg?_nc_cat=104&ccb=1-7&_nc_sid=fc17b8&_nc_ohc=0wkvnCphBXW&_nc_ht=scontent.xx&oh=03_mYLUxW07G2p29mXNS07cLcQCGOzdgblkahH9ToYm&oe=699080AF',
        },
      ],
    },
  ]),
  'messenger-postback.json': only('page', [
    {
      kind: 'postback',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_2,
      timestamp: 1768489407000,
      dedupeKey: 'mid:m_ss28jS-wrw71v6R_Cbz0iuRutnZ6fL7N96cZpLKOQDQF4z7ZmVswsOn0mAs1cuzsrAORF93ffduEGkUoJk9WDx',
      mid: 'm_ss28jS-wrw71v6R_Cbz0iuRutnZ6fL7N96cZpLKOQDQF4z7ZmVswsOn0mAs1cuzsrAORF93ffduEGkUoJk9WDx',
      title: 'Get Started',
      payload: 'GET_STARTED',
      referral: { ref: 'winter-sale-2026', source: 'SHORTLINK', type: 'OPEN_THREAD' },
    },
  ]),
  'messenger-quick-reply.json': only('page', [
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_2,
      timestamp: 1768489447500,
      dedupeKey: 'mid:m_XMierWZSZRguxiVr3OU88IKXaKUBju7O6_EMVuZsM55npGKiLxtiCLoCWX3P_3CX4a7dCbzDWB0K3gRwfnQmup',
      mid: 'm_XMierWZSZRguxiVr3OU88IKXaKUBju7O6_EMVuZsM55npGKiLxtiCLoCWX3P_3CX4a7dCbzDWB0K3gRwfnQmup',
      text: 'Talk to a person',
      attachments: [],
      quickReplyPayload: 'HANDOFF_HUMAN',
    },
  ]),
  'messenger-echo.json': only('page', [
    {
      kind: 'echo',
      platform: 'messenger',
      accountId: PAGE_A,
      // The customer is the recipient of an echo, not the sender (the Page).
      customerId: PSID_1,
      timestamp: 1768485868904,
      dedupeKey: `mid:${MESSENGER_ECHO_MID}`,
      mid: MESSENGER_ECHO_MID,
      text: 'Ja, Größe M ist noch da. Soll ich sie für dich reservieren?',
      attachments: [],
      metadata: 'sb:out:01JHK7Q2W4N8V6R3T5Y9Z1X0AB',
      appId: APP_ID,
    },
  ]),
  'messenger-read-and-delivery.json': only('page', [
    {
      kind: 'delivery',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_1,
      // The delivery item has no timestamp of its own: entry.time stands in.
      timestamp: 1768485882310,
      dedupeKey: `delivery:${PSID_1}:1768485868904`,
      watermark: 1768485868904,
      mids: [MESSENGER_ECHO_MID],
    },
    {
      kind: 'read',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_1,
      timestamp: 1768485891120,
      dedupeKey: `read:${PSID_1}:1768485868904`,
      watermark: 1768485868904,
    },
  ]),
  'ig-text-dm.json': only('instagram', [
    {
      kind: 'message',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493007000,
      dedupeKey:
        'mid:aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6OTA4NTIwNjA3MjIxODI0NDU3MTgzODkxOTYxNTQyMDQ5NTk4MjE4Ojg1OTc0NzUyODIxNzQ0ODcyODg5NDA3MDY4NjczNDg2MTE5ODgzMzI',
      mid: 'aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6OTA4NTIwNjA3MjIxODI0NDU3MTgzODkxOTYxNTQyMDQ5NTk4MjE4Ojg1OTc0NzUyODIxNzQ0ODcyODg5NDA3MDY4NjczNDg2MTE5ODgzMzI',
      text: 'Oi! Vocês entregam em Porto Alegre?',
      attachments: [],
    },
  ]),
  'ig-image-dm.json': only('instagram', [
    {
      kind: 'message',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493040010,
      dedupeKey: `mid:${IG_IMAGE_MID}`,
      mid: IG_IMAGE_MID,
      attachments: [
        {
          type: 'image',
          url: 'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=9566299132593497&signature=nX-HgWZWbMIFHPDHS65iog4VT6Q0-7EYIDZOAc-0EUMRhPVrtkZKSy9yWP_ccU6a7qhPISzP_lenx2ReUfYe_i_XJsBeqnQpyXsKLZqlxT2O7Uff4jRrpbEV',
        },
      ],
    },
  ]),
  'ig-story-reply.json': only('instagram', [
    {
      kind: 'message',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_2,
      timestamp: 1768494812400,
      dedupeKey:
        'mid:aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6ODQ3MjQ1NjE4MDQyNTAwODE0NDUyMjMxMzQzMDk4NzAyNzI4NTk0OjkwOTM3OTA3NDM1OTU4NzIyNjU1MjA5MjI5OTcxODc0MTk1NTE1Mjg',
      mid: 'aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6ODQ3MjQ1NjE4MDQyNTAwODE0NDUyMjMxMzQzMDk4NzAyNzI4NTk0OjkwOTM3OTA3NDM1OTU4NzIyNjU1MjA5MjI5OTcxODc0MTk1NTE1Mjg',
      text: 'Essa cor é linda 😍 tem no tamanho P?',
      attachments: [],
      replyTo: {
        story: {
          url: 'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18043922817265530&signature=y8JhwiCn70kb3plE0V_8SI0COnmNPWROENq78e9iJyvaM3hyzrGOt3JzAYWgf7vLwqa4sH8UkPq6JPs5IW0i3Hk9H3oNF11FbWcKQSfGWQPNTvUS9A9KLIBq',
          id: '18043922817265530',
        },
      },
    },
  ]),
  'ig-story-mention.json': only('instagram', [
    {
      kind: 'message',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_2,
      timestamp: 1768495417250,
      dedupeKey:
        'mid:aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6NzY3MjgzNjA1MjM5OTI3NjIwMDA4MzA2NzAzNTk3NDM2ODE1NDkxOjU4MDQ3OTU2MDE2MTc3MTUyNDQzNTM5MjMxMzk5MjcwNTU5NjkxODU',
      mid: 'aWdfbWVzc2FnZV9pdGVtOjE6SUdNZXNzYWdlSUQ6MTc4NDE0Njk5MjAzMTU1ODc6NzY3MjgzNjA1MjM5OTI3NjIwMDA4MzA2NzAzNTk3NDM2ODE1NDkxOjU4MDQ3OTU2MDE2MTc3MTUyNDQzNTM5MjMxMzk5MjcwNTU5NjkxODU',
      attachments: [
        {
          type: 'story_mention',
          url: 'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=3874974542234602&signature=aUNO_XhENGpzwt6Khq3aG67V8xpzoaCWkjk6n8H-5pxKJoiRWPa6sM2KxzFLJF_9pcupUtzk_qU_Xte2Z1-osKs-URg8SVxHhRTdAgh9PFmiUwCOnQlOMNlW',
        },
      ],
    },
  ]),
  'ig-reaction.json': only('instagram', [
    {
      kind: 'reaction',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493067800,
      dedupeKey: `reaction:${IG_ECHO_MID}:react:love:1768493067800`,
      mid: IG_ECHO_MID,
      action: 'react',
      reaction: 'love',
      emoji: '❤️',
    },
  ]),
  'ig-deleted-message.json': only('instagram', [
    {
      kind: 'message_deleted',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493097000,
      dedupeKey: `deleted:${IG_IMAGE_MID}`,
      mid: IG_IMAGE_MID,
    },
  ]),
  'ig-echo.json': only('instagram', [
    {
      kind: 'echo',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493052600,
      dedupeKey: `mid:${IG_ECHO_MID}`,
      mid: IG_ECHO_MID,
      text: 'Entregamos sim! O frete para Porto Alegre sai em 2 dias úteis.',
      attachments: [],
    },
  ]),
  'ig-seen.json': only('instagram', [
    {
      kind: 'read',
      platform: 'instagram',
      accountId: IG_ACCOUNT,
      customerId: IGSID_1,
      timestamp: 1768493059300,
      dedupeKey: `read:${IGSID_1}:${IG_ECHO_MID}`,
      mid: IG_ECHO_MID,
    },
  ]),
  'page-batched-two-entries.json': only('page', [
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_1,
      timestamp: 1768496607000,
      dedupeKey: 'mid:m_wrF809fnBDCElEQdehwrlNu_Ko3Cm77RDBQpp1Id5HociCU5bwDEXD38itmIPw8Tu-OS8bHitnopNFyGrGU3lM',
      mid: 'm_wrF809fnBDCElEQdehwrlNu_Ko3Cm77RDBQpp1Id5HociCU5bwDEXD38itmIPw8Tu-OS8bHitnopNFyGrGU3lM',
      text: 'Ich nehme sie!',
      attachments: [],
    },
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_A,
      customerId: PSID_2,
      timestamp: 1768496608204,
      dedupeKey: 'mid:m__r_tOFmKKmliH8rVX2Bkvwqk-S7r4YaGA3kRdbAUOzog4eDzSq2HifzJ6Awk0SkwTV5zKiWRxDlI87MVx6Ae5z',
      mid: 'm__r_tOFmKKmliH8rVX2Bkvwqk-S7r4YaGA3kRdbAUOzog4eDzSq2HifzJ6Awk0SkwTV5zKiWRxDlI87MVx6Ae5z',
      text: 'Is the store open on Sunday?',
      attachments: [],
    },
    {
      kind: 'message',
      platform: 'messenger',
      accountId: PAGE_B,
      customerId: PSID_B,
      timestamp: 1768496607388,
      dedupeKey: 'mid:m_WvWaF97gaiPnWkj7ayIVwv72JwuDXursrVrXl-VFgr13pPoYTBStvX2x1hpZ6mLi52Qe2wMYYSp2lFSn1Ahi3i',
      mid: 'm_WvWaF97gaiPnWkj7ayIVwv72JwuDXursrVrXl-VFgr13pPoYTBStvX2x1hpZ6mLi52Qe2wMYYSp2lFSn1Ahi3i',
      text: '¿Tienen cita disponible mañana?',
      attachments: [],
    },
  ]),
};

/** Adds an unknown field to every object in the tree, as a future Meta API version might. */
function withUnknownFields(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withUnknownFields);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = { x_future_field: { nested: [1, 'two'] } };
    for (const [k, v] of Object.entries(value)) out[k] = withUnknownFields(v);
    return out;
  }
  return value;
}

function payloadError(body: unknown): WebhookPayloadError {
  try {
    parseWebhookPayload(body);
  } catch (err) {
    if (err instanceof WebhookPayloadError) return err;
    throw err;
  }
  throw new Error('expected parseWebhookPayload to throw WebhookPayloadError');
}

const page = (messaging: unknown[], entryExtra: Record<string, unknown> = {}) => ({
  object: 'page',
  entry: [{ id: PAGE_A, time: 1768500000999, messaging, ...entryExtra }],
});

const sender = { sender: { id: PSID_1 }, recipient: { id: PAGE_A } };

describe('parseWebhookPayload on the shared fixtures', () => {
  it('has an expectation for every webhook fixture in the directory', () => {
    const onDisk = readdirSync(FIXTURES).filter((f) => WEBHOOK_FIXTURE.test(f)).sort();
    expect(onDisk.length).toBeGreaterThanOrEqual(15);
    expect(Object.keys(EXPECTED).sort()).toEqual(onDisk);
  });

  it.each(Object.keys(EXPECTED))('%s normalizes to the exact events', (file) => {
    expect(parseWebhookPayload(loadFixture(file))).toStrictEqual(EXPECTED[file]);
  });

  it('decodes the \\u escapes on the wire into umlauts and surrogate-pair emoji', () => {
    const bytes = readFixture('messenger-text.json');
    expect(bytes).toContain('Gr\\u00f6\\u00dfe M? \\ud83e\\udde5');
    const [event] = parseWebhookPayload(JSON.parse(bytes)).events;
    expect(event).toMatchObject({ kind: 'message', text: 'Hallo! Habt ihr die Jacke noch in Größe M? 🧥' });
  });

  it('keeps the numeric app_id of a Messenger echo as a string', () => {
    expect(readFixture('messenger-echo.json')).toContain('"app_id":618273940215567,');
    const [event] = parseWebhookPayload(loadFixture('messenger-echo.json')).events;
    expect(event).toMatchObject({ kind: 'echo', appId: '618273940215567' });
  });

  it('matches the echo mid to the Send API message_id (the story the fixtures tell)', () => {
    const sent = loadFixture('send-api-success.json') as { message_id: string; recipient_id: string };
    const [echo] = parseWebhookPayload(loadFixture('messenger-echo.json')).events;
    expect(echo).toMatchObject({ mid: sent.message_id, customerId: sent.recipient_id });
  });

  it('gives an unsent message a dedupe key distinct from the message it deletes', () => {
    const [original] = parseWebhookPayload(loadFixture('ig-image-dm.json')).events;
    const [deleted] = parseWebhookPayload(loadFixture('ig-deleted-message.json')).events;
    expect(deleted?.kind).toBe('message_deleted');
    expect(original && 'mid' in original && original.mid).toBe(deleted && 'mid' in deleted && deleted.mid);
    expect(original?.dedupeKey).not.toBe(deleted?.dedupeKey);
  });

  it('yields three events across two accounts from the batched delivery', () => {
    const { events } = parseWebhookPayload(loadFixture('page-batched-two-entries.json'));
    expect(events).toHaveLength(3);
    expect(new Set(events.map((e) => e.accountId))).toEqual(new Set([PAGE_A, PAGE_B]));
    expect(events.map((e) => `${e.accountId}/${e.customerId}`)).toEqual([
      `${PAGE_A}/${PSID_1}`,
      `${PAGE_A}/${PSID_2}`,
      `${PAGE_B}/${PSID_B}`,
    ]);
  });

  it.each(Object.keys(EXPECTED))('%s with unknown fields on every object parses the same', (file) => {
    expect(parseWebhookPayload(withUnknownFields(loadFixture(file)))).toStrictEqual(EXPECTED[file]);
  });
});

describe('parseWebhookPayload on shapes without a fixture', () => {
  it('records every entry of an unknown object as unsupported, without a platform', () => {
    const entry = { id: '5550001', time: 1768500000, changes: [{ field: 'messages', value: {} }] };
    const parsed = parseWebhookPayload({ object: 'whatsapp_business_account', entry: [entry] });
    expect(parsed).toStrictEqual({
      object: 'whatsapp_business_account',
      events: [],
      unsupported: [
        {
          object: 'whatsapp_business_account',
          accountId: '5550001',
          eventType: 'object:whatsapp_business_account',
          timestamp: 1768500000,
          raw: entry,
        },
      ],
    });
  });

  it('records an Instagram comment (changes) as unsupported changes:comments', () => {
    const change = {
      field: 'comments',
      value: { id: '1790', text: 'Preço?', from: { id: IGSID_2, username: 'ana.lima' }, media: { id: '1801' } },
    };
    const parsed = parseWebhookPayload({
      object: 'instagram',
      entry: [{ id: IG_ACCOUNT, time: 1768500000, changes: [change] }],
    });
    expect(parsed.events).toEqual([]);
    expect(parsed.unsupported).toStrictEqual([
      {
        object: 'instagram',
        platform: 'instagram',
        accountId: IG_ACCOUNT,
        eventType: 'changes:comments',
        timestamp: 1768500000,
        raw: change,
      },
    ]);
  });

  it('records standby items as unsupported standby', () => {
    const item = { ...sender, timestamp: 1768500000500, message: { mid: 'm_standby', text: 'hi' } };
    const parsed = parseWebhookPayload({
      object: 'page',
      entry: [{ id: PAGE_A, time: 1768500000999, standby: [item] }],
    });
    expect(parsed.events).toEqual([]);
    expect(parsed.unsupported).toStrictEqual([
      {
        object: 'page',
        platform: 'messenger',
        accountId: PAGE_A,
        eventType: 'standby',
        timestamp: 1768500000500,
        raw: item,
      },
    ]);
  });

  it('records policy_enforcement (which has no sender) as unsupported without crashing', () => {
    const item = { recipient: { id: PAGE_A }, timestamp: 1768500000123, policy_enforcement: { action: 'block', reason: 'spam' } };
    const parsed = parseWebhookPayload(page([item]));
    expect(parsed.events).toEqual([]);
    expect(parsed.unsupported).toStrictEqual([
      {
        object: 'page',
        platform: 'messenger',
        accountId: PAGE_A,
        eventType: 'messaging:policy_enforcement',
        timestamp: 1768500000123,
        raw: item,
      },
    ]);
  });

  it('names other unhandled messaging keys in the event type and keeps the rest of the batch', () => {
    const optin = { ...sender, timestamp: 1768500000001, optin: { type: 'notification_messages', payload: 'x' } };
    const edit = { ...sender, timestamp: 1768500000002, message_edit: { mid: 'm_1', text: 'fixed', num_edit: 1 } };
    const message = { ...sender, timestamp: 1768500000003, message: { mid: 'm_2', text: 'ok' } };
    const parsed = parseWebhookPayload(page([optin, edit, message]));
    expect(parsed.unsupported.map((u) => u.eventType)).toEqual(['messaging:optin', 'messaging:message_edit']);
    expect(parsed.events.map((e) => e.dedupeKey)).toEqual(['mid:m_2']);
  });

  it('records an entry with no messaging, standby or changes instead of dropping it', () => {
    const entry = { id: PAGE_A, time: 1768500000999, hop_context: [{ app_id: 1 }] };
    const parsed = parseWebhookPayload({ object: 'page', entry: [entry] });
    expect(parsed.unsupported).toStrictEqual([
      {
        object: 'page',
        platform: 'messenger',
        accountId: PAGE_A,
        eventType: 'entry:hop_context',
        timestamp: 1768500000999,
        raw: entry,
      },
    ]);
  });

  it('derives the postback dedupe key from sender, timestamp and payload when mid is absent', () => {
    const parsed = parseWebhookPayload(
      page([{ ...sender, timestamp: 1768500000400, postback: { title: 'Menu', payload: 'MENU' } }]),
    );
    expect(parsed.events).toStrictEqual([
      {
        kind: 'postback',
        platform: 'messenger',
        accountId: PAGE_A,
        customerId: PSID_1,
        timestamp: 1768500000400,
        dedupeKey: `postback:${PSID_1}:1768500000400:MENU`,
        title: 'Menu',
        payload: 'MENU',
      },
    ]);
  });

  it('normalizes an unreact, which carries neither reaction nor emoji', () => {
    const parsed = parseWebhookPayload(
      page([{ ...sender, timestamp: 1768500000500, reaction: { mid: 'm_r', action: 'unreact' } }]),
    );
    expect(parsed.events).toStrictEqual([
      {
        kind: 'reaction',
        platform: 'messenger',
        accountId: PAGE_A,
        customerId: PSID_1,
        timestamp: 1768500000500,
        dedupeKey: 'reaction:m_r:unreact::1768500000500',
        mid: 'm_r',
        action: 'unreact',
      },
    ]);
  });

  it('normalizes a standalone referral with ad_id as adId', () => {
    const parsed = parseWebhookPayload(
      page([
        { ...sender, timestamp: 1768500000600, referral: { ref: 'promo', source: 'ADS', type: 'OPEN_THREAD', ad_id: '6045' } },
      ]),
    );
    expect(parsed.events).toStrictEqual([
      {
        kind: 'referral',
        platform: 'messenger',
        accountId: PAGE_A,
        customerId: PSID_1,
        timestamp: 1768500000600,
        dedupeKey: `referral:${PSID_1}:1768500000600`,
        referral: { ref: 'promo', source: 'ADS', type: 'OPEN_THREAD', adId: '6045' },
      },
    ]);
  });

  it('keeps reply_to.mid, an ad referral, is_unsupported and tolerates a null attachment payload', () => {
    const parsed = parseWebhookPayload({
      object: 'instagram',
      entry: [
        {
          id: IG_ACCOUNT,
          time: 1768500000999,
          messaging: [
            {
              sender: { id: IGSID_1 },
              recipient: { id: IG_ACCOUNT },
              timestamp: 1768500000700,
              message: {
                mid: 'aWdf_x',
                is_unsupported: true,
                reply_to: { mid: 'aWdf_prev' },
                referral: { ad_id: '6046', source: 'ADS', type: 'OPEN_THREAD', ads_context_data: { ad_title: 'Sale' } },
                attachments: [
                  { type: 'fallback', payload: null },
                  { type: 'ig_reel', payload: { url: 'https://example.invalid/reel', title: 'Reel', reel_video_id: '1' } },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(parsed.events).toStrictEqual([
      {
        kind: 'message',
        platform: 'instagram',
        accountId: IG_ACCOUNT,
        customerId: IGSID_1,
        timestamp: 1768500000700,
        dedupeKey: 'mid:aWdf_x',
        mid: 'aWdf_x',
        attachments: [{ type: 'fallback' }, { type: 'ig_reel', url: 'https://example.invalid/reel', title: 'Reel' }],
        replyTo: { mid: 'aWdf_prev' },
        referral: { source: 'ADS', type: 'OPEN_THREAD', adId: '6046' },
        isUnsupported: true,
      },
    ]);
  });

  it('defaults delivery mids to [] and falls back to timestamp 0 when item and entry have none', () => {
    const parsed = parseWebhookPayload({
      object: 'page',
      entry: [{ id: PAGE_A, messaging: [{ ...sender, delivery: { watermark: 1768500000800 } }] }],
    });
    expect(parsed.events).toStrictEqual([
      {
        kind: 'delivery',
        platform: 'messenger',
        accountId: PAGE_A,
        customerId: PSID_1,
        timestamp: 0,
        dedupeKey: `delivery:${PSID_1}:1768500000800`,
        watermark: 1768500000800,
        mids: [],
      },
    ]);
  });

  it('treats an echo as an echo even if it also says is_deleted', () => {
    const parsed = parseWebhookPayload(
      page([{ sender: { id: PAGE_A }, recipient: { id: PSID_1 }, message: { mid: 'm_e', is_echo: true, is_deleted: true, app_id: '42' } }]),
    );
    expect(parsed.events).toStrictEqual([
      {
        kind: 'echo',
        platform: 'messenger',
        accountId: PAGE_A,
        customerId: PSID_1,
        timestamp: 1768500000999,
        dedupeKey: 'mid:m_e',
        mid: 'm_e',
        attachments: [],
        appId: '42',
      },
    ]);
  });
});

describe('parseWebhookPayload on malformed input', () => {
  it.each<[string, unknown, string]>([
    ['a string body', 'hello', '(root): expected object, received string'],
    ['a null body', null, '(root): expected object, received null'],
    ['an array body', [], '(root): expected object, received array'],
    ['a missing object', { entry: [] }, 'object: expected string, received undefined'],
    ['entry as an object', { object: 'page', entry: {} }, 'entry: expected array, received object'],
    ['an entry without id', { object: 'page', entry: [{ time: 1, messaging: [] }] }, 'entry[0].id: expected string'],
    ['a numeric entry id of an unknown object', { object: 'user', entry: [{ id: 7 }] }, 'entry[0].id: expected string, received number'],
    ['messaging as an object', { object: 'page', entry: [{ id: PAGE_A, messaging: {} }] }, 'entry[0].messaging: expected array'],
    ['a messaging item that is a string', page(['x']), 'entry[0].messaging[0]: expected object, received string'],
  ])('rejects %s', (_what, body, message) => {
    const err = payloadError(body);
    expect(err.name).toBe('WebhookPayloadError');
    expect(err.message).toContain(message);
  });

  it('names the path of a numeric sender.id in a batched entry', () => {
    const ok = { ...sender, timestamp: 1, message: { mid: 'm_ok' } };
    const bad = { sender: { id: 7291845503617724 }, recipient: { id: PAGE_A }, timestamp: 2, message: { mid: 'm_bad' } };
    const err = payloadError({ object: 'page', entry: [{ id: PAGE_A, messaging: [] }, { id: PAGE_A, messaging: [ok, bad] }] });
    expect(err.message).toBe('entry[1].messaging[1].sender.id: expected string, received number');
  });

  it.each<[string, unknown, string]>([
    ['a message without mid', { ...sender, message: { text: 'hi' } }, 'entry[0].messaging[0].message.mid: expected string, received undefined'],
    ['a message without sender', { recipient: { id: PAGE_A }, message: { mid: 'm_1' } }, 'entry[0].messaging[0].sender: expected object, received undefined'],
    ['an echo without recipient', { sender: { id: PAGE_A }, message: { mid: 'm_1', is_echo: true } }, 'entry[0].messaging[0].recipient: expected object'],
    ['an attachment without type', { ...sender, message: { mid: 'm_1', attachments: [{ payload: {} }] } }, 'entry[0].messaging[0].message.attachments[0].type: expected string'],
    ['a reaction with an unknown action', { ...sender, reaction: { mid: 'm_1', action: 'boost' } }, 'entry[0].messaging[0].reaction.action:'],
    ['a read with neither watermark nor mid', { ...sender, read: {} }, 'entry[0].messaging[0].read: expected watermark (Messenger) or mid (Instagram)'],
    ['a delivery without watermark', { ...sender, delivery: { mids: ['m_1'] } }, 'entry[0].messaging[0].delivery.watermark: expected number'],
    ['a string timestamp', { ...sender, timestamp: '1768500000000', message: { mid: 'm_1' } }, 'entry[0].messaging[0].timestamp: expected number, received string'],
  ])('rejects %s with the path in the message', (_what, item, message) => {
    expect(payloadError(page([item])).message).toContain(message);
  });

  it('rejects a changes item without field', () => {
    const err = payloadError({ object: 'instagram', entry: [{ id: IG_ACCOUNT, changes: [{ value: {} }] }] });
    expect(err.message).toBe('entry[0].changes[0].field: expected string, received undefined');
  });
});
