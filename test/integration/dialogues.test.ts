import { randomBytes, randomUUID } from 'node:crypto';
import { createEngineSelector } from '../../src/ai/engine-selector';
import { LlmHttpError } from '../../src/ai/openai-compatible';
import { createToolRunner } from '../../src/ai/tools';
import { connectChannel } from '../../src/db/channels';
import { createOutbound, markOutboundSent, recordInbound } from '../../src/db/conversations';
import { addProduct } from '../../src/db/products';
import { updateTenantSettings, type TenantSettingsPatch } from '../../src/db/tenant-settings';
import { createTenant } from '../../src/db/tenants';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import type { ConversationRef, MessageEvent, PostbackEvent, ToolCall, ToolName, ToolResult } from '../../src/shared/types';
import { runTurn, MAX_TOOL_ROUNDS } from '../../workflows/turn';
import { startChatCompletionsServer, type ChatCompletionsServer, type ChatRequestBody, type RecordedRequest } from '../support/chat-completions-server';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The dialogue suite: scripted conversations through the real tool loop (`runTurn`), the real
 * tools on a real database, and the engine each tenant's settings select: the offline catalog
 * engine, or the Chat Completions engine against a local scripted server. Every case asserts
 * which tools ran with which arguments and what the customer was told.
 */

const LLM_KEY = 'sk-dialogue-suite-key';

const CATALOG = [
  { sku: 'JKT-TRAIL', name: 'Trail Jacket', description: 'Waterproof rain jacket for hiking. Regenjacke, chaqueta impermeable, veste imperméable.', price: 89.9, currency: 'EUR', stock: 12, url: 'https://shop.example/trail-jacket' },
  { sku: 'JKT-DOWN', name: 'Summit Down Jacket', description: 'Warm down jacket in blue. Daunenjacke blau, chaqueta de plumas azul, doudoune bleue.', price: 189, currency: 'EUR', stock: 0, url: 'https://shop.example/summit-down' },
  { sku: 'BOOT-ALP', name: 'Alpine Hiking Boots', description: 'Leather hiking boots. Wanderschuhe, botas de montaña, chaussures de randonnée.', price: 129, currency: 'EUR', stock: 5, url: 'https://shop.example/alpine-boots' },
  { sku: 'BAG-DAY', name: 'Daypack 20L', description: 'Light backpack. Rucksack, mochila, sac à dos, mochila de dia.', price: 45, currency: 'EUR', stock: 30, url: 'https://shop.example/daypack' },
  { sku: 'POLE-TRK', name: 'Trekking Poles', description: 'Aluminium trekking poles. Wanderstöcke, bastones de trekking, bâtons de randonnée.', price: 39.9, currency: 'EUR', stock: 8, url: 'https://shop.example/poles' },
  { sku: 'HAT-MER', name: 'Merino Beanie', description: 'Merino wool hat. Mütze, gorro de lana, bonnet en laine.', price: 24.5, currency: 'EUR', stock: 40, url: 'https://shop.example/beanie' },
  { sku: 'TENT-2P', name: 'Camping Tent 2P', description: 'Two-person tent. Zelt, tienda de campaña, tente, barraca, tenda.', price: 249, currency: 'EUR', stock: 3, url: 'https://shop.example/tent' },
];

const PROFILE = {
  businessName: 'Alpine Outfitters',
  persona: 'You are Heidi, the cheerful assistant of Alpine Outfitters, a mountain sports shop in Munich.',
  hours: 'Mon–Fri 9:00–18:00, Sat 10:00–14:00',
  address: 'Bergstraße 12, 80331 München',
  policies: { returns: 'Returns within 30 days with the receipt.', shipping: 'Free shipping from 50 EUR, delivery in 2–3 business days.' },
  facts: ['Free repairs for one year on all jackets.'],
};

// ---------------------------------------------------------------------------------------------
// What a customer sends

type Said =
  | { kind: 'text'; text: string }
  | { kind: 'image' }
  | { kind: 'quick_reply'; title: string; payload: string }
  | { kind: 'postback'; title: string; payload: string }
  | { kind: 'story_mention' }
  | { kind: 'story_reply'; text: string };

const say = (text: string): Said => ({ kind: 'text', text });
const image: Said = { kind: 'image' };
const quick = (title: string, payload: string): Said => ({ kind: 'quick_reply', title, payload });
const postback = (title: string, payload: string): Said => ({ kind: 'postback', title, payload });

let clock = Date.now() - 60_000;

function toEvent(tenant: TenantFixture, customerId: string, s: Said): MessageEvent | PostbackEvent {
  const mid = `m_${randomUUID()}`;
  const base = { platform: 'instagram' as const, accountId: tenant.accountId, customerId, timestamp: ++clock, dedupeKey: mid, mid };
  switch (s.kind) {
    case 'text':
      return { ...base, kind: 'message', text: s.text, attachments: [] };
    case 'image':
      return { ...base, kind: 'message', attachments: [{ type: 'image', url: 'https://cdn.example/photo.jpg' }] };
    case 'quick_reply':
      return { ...base, kind: 'message', text: s.title, attachments: [], quickReplyPayload: s.payload };
    case 'postback':
      return { ...base, kind: 'postback', title: s.title, payload: s.payload };
    case 'story_mention':
      return { ...base, kind: 'message', attachments: [{ type: 'story_mention', url: 'https://cdn.example/story.mp4' }] };
    case 'story_reply':
      return { ...base, kind: 'message', text: s.text, attachments: [], replyTo: { story: { url: 'https://cdn.example/story.jpg', id: 's1' } } };
  }
}

// ---------------------------------------------------------------------------------------------
// The harness

interface TenantFixture {
  id: string;
  channelId: string;
  accountId: string;
}

interface TurnLog {
  text: string;
  handoff: boolean;
  /** Engine steps (rounds) of this turn. */
  steps: number;
  calls: ToolCall[];
  results: ToolResult[];
  /** Chat Completions requests of this turn (LLM tenants only). */
  llm: RecordedRequest[];
}

let db: TestDatabase;
let vault: SecretVault;
let llm: ChatCompletionsServer;
const tenants: Record<'en' | 'de' | 'llm' | 'llmDe', TenantFixture> = {} as never;

async function makeTenant(name: string, patch: TenantSettingsPatch): Promise<TenantFixture> {
  const { id } = await createTenant(db.pool, name);
  const accountId = String(17_000_000_000 + Math.floor(Math.random() * 1_000_000_000));
  const channel = await connectChannel(db.pool, vault, { tenantId: id, platform: 'instagram', accountId, accessToken: `IGAA-${randomBytes(8).toString('hex')}` });
  for (const p of CATALOG) await addProduct(db.pool, id, p);
  await updateTenantSettings(db.pool, vault, id, patch, { actor: { type: 'system', id: 'dialogue-tests' } });
  return { id, channelId: channel.id, accountId };
}

class Dialogue {
  readonly customerId = String(Math.floor(Math.random() * 1e15));
  conversationId?: string;

  constructor(readonly tenant: TenantFixture) {}

  get ref(): ConversationRef {
    return { tenantId: this.tenant.id, channelId: this.tenant.channelId, customerId: this.customerId };
  }

  /** One customer turn: the messages are stored as the gateway would, then answered once. */
  async turn(...said: Said[]): Promise<TurnLog> {
    const recorded = [];
    for (const s of said) recorded.push(await recordInbound(db.pool, this.ref, toEvent(this.tenant, this.customerId, s)));
    const conversationId = recorded[0]!.conversationId;
    this.conversationId = conversationId;
    const messages = recorded.map((r) => r.turn);
    const select = createEngineSelector({ pool: db.pool, vault });
    const runner = createToolRunner({ pool: db.pool });
    const calls: ToolCall[] = [];
    const results: ToolResult[] = [];
    const llmBefore = llm.requests.length;
    let steps = 0;
    const outcome = await runTurn(messages, {
      step: async (r) => {
        steps++;
        const { engine } = await select(this.tenant.id);
        return engine.step({ tenantId: this.tenant.id, conversationId, ...r }, new AbortController().signal);
      },
      runTool: async (call) => {
        calls.push(call);
        const result = await runner.run({ ...this.ref, conversationId }, call);
        results.push(result);
        return result;
      },
    });
    if (outcome.text) {
      // Stored as sent, so the next turn's history contains it.
      const out = await createOutbound(db.pool, {
        ...this.ref,
        conversationId,
        author: 'bot',
        text: outcome.text,
        inReplyTo: recorded.at(-1)!.messageId,
        covers: recorded.map((r) => r.messageId),
      });
      await markOutboundSent(db.pool, this.ref.tenantId, out.id, `m_out_${randomUUID()}`, { messagingType: 'RESPONSE' });
    }
    return { text: outcome.text, handoff: outcome.handoff, steps, calls, results, llm: llm.requests.slice(llmBefore) };
  }

  async state(): Promise<string> {
    const { rows } = await db.ownerPool.query<{ state: string }>('SELECT state FROM conversations WHERE channel_id = $1 AND customer_id = $2', [this.tenant.channelId, this.customerId]);
    return rows[0]!.state;
  }
}

function toolsRan(log: TurnLog): Array<[ToolName, Record<string, unknown>]> {
  return log.calls.map((c) => [c.name, c.arguments]);
}

const query = (re: RegExp, extra: Record<string, unknown> = {}) => expect.objectContaining({ query: expect.stringMatching(re), ...extra });

function productNames(result: ToolResult | undefined): string[] {
  return ((result?.content as { products?: Array<{ name: string }> })?.products ?? []).map((p) => p.name);
}

beforeAll(async () => {
  db = await createTestDatabase();
  vault = new SecretVault(db.pool, new StaticKeyProvider(new Map([[1, randomBytes(32)]])));
  llm = await startChatCompletionsServer();
  tenants.en = await makeTenant('Alpine Outfitters EN', { assistant: { ...PROFILE, language: 'en' } });
  tenants.de = await makeTenant('Alpine Outfitters DE', { assistant: { ...PROFILE, language: 'de' } });
  const llmPatch: TenantSettingsPatch = { replyEngine: 'openai-compatible', llmBaseUrl: llm.url, llmModel: 'test-model', llmApiKey: LLM_KEY, historyMessages: 6 };
  tenants.llm = await makeTenant('Alpine Outfitters LLM', { ...llmPatch, assistant: { ...PROFILE, language: 'en' } });
  tenants.llmDe = await makeTenant('Alpine Outfitters LLM DE', { ...llmPatch, llmApiKey: null, assistant: { ...PROFILE, language: 'de' } });
});

afterAll(async () => {
  await llm?.close();
  await db?.drop();
});

// ---------------------------------------------------------------------------------------------
// The catalog engine

describe('dialogues with the catalog engine', () => {
  const en = () => new Dialogue(tenants.en);
  const de = () => new Dialogue(tenants.de);

  it('en: a product question finds the product with price, stock and link', async () => {
    const t = await en().turn(say('Do you have a rain jacket?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/rain jacket/)]]);
    expect(t.text).toContain('Trail Jacket: €89.90, in stock https://shop.example/trail-jacket');
  });

  it('en: a typo ("jakcet") still finds the jacket', async () => {
    const t = await en().turn(say('jakcet'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^jakcet$/)]]);
    expect(productNames(t.results[0])).toContain('Trail Jacket');
    expect(t.text).toContain('Trail Jacket');
  });

  it('en: a plural with a typo ("hikng boots") finds the boots', async () => {
    const t = await en().turn(say('hikng boots?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/hikng boots/)]]);
    expect(t.text).toContain('Alpine Hiking Boots: €129.00, in stock');
  });

  it('en: emoji around the words are ignored', async () => {
    const t = await en().turn(say('🧥 jacket pls 🙏😊'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^jacket$/)]]);
    expect(t.text).toContain('Trail Jacket');
  });

  it('en: "under 100" becomes max_price and the dearer jacket is left out', async () => {
    const t = await en().turn(say('Any jackets under 100?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/jackets/, { max_price: 100 })]]);
    expect(t.text).toContain('Trail Jacket: €89.90');
    expect(t.text).not.toContain('Summit Down Jacket');
  });

  it('en: an out-of-stock product is said to be out of stock', async () => {
    const t = await en().turn(say('Is the Summit Down Jacket available?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/summit down jacket/)]]);
    expect(t.text).toContain('Summit Down Jacket: €189.00, out of stock right now');
  });

  it('en: an unknown product gets a question for the product name', async () => {
    const t = await en().turn(say('Do you sell surfboards?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^surfboards$/)]]);
    expect(productNames(t.results[0])).toEqual([]);
    expect(t.text).toBe('Sorry, I couldn\'t find "surfboards" in our catalog. Could you tell me the product name?');
  });

  it('en: nothing under the budget says so with the budget', async () => {
    const t = await en().turn(say('boots under 50 euros'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^boots$/, { max_price: 50 })]]);
    expect(t.text).toMatch(/couldn't find "boots" for 50\.00 or less/);
  });

  it('en: "talk to a person" hands off and the conversation becomes human_active', async () => {
    const d = en();
    const t = await d.turn(say('I want to talk to a person please'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: expect.any(String) }]]);
    expect(t.results[0]).toMatchObject({ ok: true, content: { handed_off: true } });
    expect(t.handoff).toBe(true);
    expect(t.text).toContain("I've asked a member of our team");
    expect(await d.state()).toBe('human_active');
  });

  it('en: opening hours come from the tenant profile', async () => {
    const t = await en().turn(say('What are your opening hours?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(t.text).toBe('Our opening hours: Mon–Fri 9:00–18:00, Sat 10:00–14:00');
  });

  it('en: "are you open on Sunday" is an hours question, not a product search', async () => {
    const t = await en().turn(say('Are you open on Sunday?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(t.text).toContain('Sat 10:00–14:00');
  });

  it('en: the address', async () => {
    const t = await en().turn(say('Where are you located?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'address' }]]);
    expect(t.text).toBe('You can find us at Bergstraße 12, 80331 München');
  });

  it('en: the returns policy', async () => {
    const t = await en().turn(say("What's your return policy?"));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'policies' }]]);
    expect(t.text).toBe('Returns within 30 days with the receipt.');
  });

  it('en: shipping', async () => {
    const t = await en().turn(say('How long does shipping take?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'policies' }]]);
    expect(t.text).toContain('Free shipping from 50 EUR');
    expect(t.text).not.toContain('Returns within');
  });

  it('en: leftover words of a policy question that match no product are not reported as missing', async () => {
    const t = await en().turn(say('How do returns work for online orders?'));
    expect(toolsRan(t)).toEqual([
      ['get_business_info', { topic: 'policies' }],
      ['search_products', query(/online orders/)],
    ]);
    expect(t.text).toBe('Returns within 30 days with the receipt.');
  });

  it('en: hours and a product in one message run both tools in one round', async () => {
    const t = await en().turn(say('When do you open tomorrow, and do you have a merino beanie?'));
    expect(t.steps).toBe(2);
    expect(toolsRan(t)).toEqual([
      ['get_business_info', { topic: 'hours' }],
      ['search_products', query(/merino beanie/)],
    ]);
    expect(t.text).toContain('Our opening hours: Mon–Fri');
    expect(t.text).toContain('Merino Beanie: €24.50, in stock');
  });

  it('en: a burst of three messages is answered once with one search using the useful words', async () => {
    const t = await en().turn(say('hi'), say('do you have the jacket'), say('in blue?'));
    expect(t.steps).toBe(2);
    expect(toolsRan(t)).toEqual([['search_products', query(/^jacket blue$/)]]);
    expect(productNames(t.results[0])[0]).toBe('Summit Down Jacket');
    expect(t.text).toContain('Summit Down Jacket: €189.00, out of stock right now');
  });

  it('en: an image alone is thanked for, without tools', async () => {
    const t = await en().turn(image);
    expect(t.calls).toEqual([]);
    expect(t.text).toMatch(/^Thanks for the image! Tell me in a few words what you are looking for/);
  });

  it('en: a quick reply payload is the request (PRODUCT_SEARCH:jacket)', async () => {
    const t = await en().turn(quick('Jackets 🧥', 'PRODUCT_SEARCH:jacket'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^jacket$/)]]);
    expect(t.text).toContain('Trail Jacket');
  });

  it('en: a postback button asking for a human hands off', async () => {
    const d = en();
    const t = await d.turn(postback('Talk to us', 'TALK_TO_HUMAN'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: expect.any(String) }]]);
    expect(await d.state()).toBe('human_active');
  });

  it('en: Get Started greets with the business name, without tools', async () => {
    const t = await en().turn(postback('Get Started', 'GET_STARTED'));
    expect(t.calls).toEqual([]);
    expect(t.text).toBe('Hi, welcome to Alpine Outfitters! How can I help you today?');
  });

  it('en: a story mention is thanked for; a story reply is read', async () => {
    const d = en();
    const mention = await d.turn({ kind: 'story_mention' });
    expect(mention.calls).toEqual([]);
    expect(mention.text).toContain('Thanks for mentioning us in your story');
    const reply = await d.turn({ kind: 'story_reply', text: 'love this jacket! how much?' });
    expect(toolsRan(reply)).toEqual([['search_products', query(/^jacket$/)]]);
    expect(reply.text).toContain('Trail Jacket: €89.90');
  });

  it('en: multi-turn — boots, then hours, then thanks', async () => {
    const d = en();
    const first = await d.turn(say('Hello! Do you have hiking boots?'));
    expect(toolsRan(first)).toEqual([['search_products', query(/hiking boots/)]]);
    expect(first.text).toContain('Alpine Hiking Boots');
    const second = await d.turn(say('great, and what time do you close on saturday?'));
    expect(toolsRan(second)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(second.text).toContain('Sat 10:00–14:00');
    const third = await d.turn(say('thanks!'));
    expect(third.calls).toEqual([]);
    expect(third.text).toBe("You're welcome! Is there anything else I can help you with?");
  });

  it('en: a greeting alone is answered without tools', async () => {
    const t = await en().turn(say('Hello 👋'));
    expect(t.calls).toEqual([]);
    expect(t.text).toBe('Hi, welcome to Alpine Outfitters! How can I help you today?');
  });

  it('de: Wanderschuhe unter 150 € — German answer with German price format', async () => {
    const t = await en().turn(say('Habt ihr Wanderschuhe unter 150 €?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^wanderschuhe$/, { max_price: 150 })]]);
    expect(t.text).toContain('Das habe ich gefunden:');
    expect(t.text).toContain('Alpine Hiking Boots: 129,00 €, auf Lager');
  });

  it('de: out of stock in German', async () => {
    const t = await en().turn(say('Ist die Daunenjacke noch da?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/daunenjacke/)]]);
    expect(t.text).toContain('Summit Down Jacket: 189,00 €, derzeit nicht auf Lager');
  });

  it('de: "mit einem Menschen sprechen" hands off', async () => {
    const d = en();
    const t = await d.turn(say('Ich möchte bitte mit einem Menschen sprechen'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: expect.any(String) }]]);
    expect(t.text).toContain('Ich habe ein Teammitglied gebeten');
    expect(await d.state()).toBe('human_active');
  });

  it('de: opening hours in German', async () => {
    const t = await en().turn(say('Wann habt ihr geöffnet?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(t.text).toBe('Unsere Öffnungszeiten: Mon–Fri 9:00–18:00, Sat 10:00–14:00');
  });

  it('de: a typo in German ("Regenjake")', async () => {
    const t = await en().turn(say('Ich suche eine Regenjake'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^regenjake$/)]]);
    expect(t.text).toContain('Trail Jacket: 89,90 €, auf Lager');
  });

  it('de tenant: a bare product name is answered in the configured language', async () => {
    const t = await de().turn(say('Daypack?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^daypack$/)]]);
    expect(t.text).toContain('Das habe ich gefunden:');
    expect(t.text).toContain('Daypack 20L: 45,00 €, auf Lager');
  });

  it('de tenant: an English customer is answered in English', async () => {
    const t = await de().turn(say('Do you have trekking poles?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/trekking poles/)]]);
    expect(t.text).toContain("Here's what I found:");
    expect(t.text).toContain('Trekking Poles: €39.90, in stock');
  });

  it('es: mochilas por menos de 50 euros', async () => {
    const t = await en().turn(say('¿Tienen mochilas por menos de 50 euros?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^mochilas$/, { max_price: 50 })]]);
    expect(t.text).toContain('Esto es lo que encontré:');
    expect(t.text).toContain('Daypack 20L: 45,00 €, disponible');
  });

  it('es: agotado', async () => {
    const t = await en().turn(say('Hola, ¿tienen la chaqueta de plumas azul?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/chaqueta plumas azul/)]]);
    expect(productNames(t.results[0])[0]).toBe('Summit Down Jacket');
    expect(t.text).toContain('Summit Down Jacket: 189,00 €, agotado por ahora');
  });

  it('es: "hablar con una persona" hands off', async () => {
    const d = en();
    const t = await d.turn(say('¿Puedo hablar con una persona?'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: expect.any(String) }]]);
    expect(t.text).toContain('He pedido a una persona de nuestro equipo');
    expect(await d.state()).toBe('human_active');
  });

  it('es: the address in Spanish', async () => {
    const t = await en().turn(say('¿Cuál es su dirección?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'address' }]]);
    expect(t.text).toBe('Nos encuentras en Bergstraße 12, 80331 München');
  });

  it('es: devoluciones', async () => {
    const t = await en().turn(say('¿Cómo funcionan las devoluciones?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'policies' }]]);
    expect(t.text).toContain('Returns within 30 days');
  });

  it('fr: une veste imperméable', async () => {
    const t = await en().turn(say('Bonjour, je cherche une veste imperméable'));
    expect(toolsRan(t)).toEqual([['search_products', query(/veste imperméable/)]]);
    expect(t.text).toContain("Voici ce que j'ai trouvé :");
    expect(t.text).toContain('Trail Jacket: 89,90 €, en stock');
  });

  it('fr: rupture de stock', async () => {
    const t = await en().turn(say('Avez-vous la doudoune bleue ?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/doudoune bleue/)]]);
    expect(t.text).toContain('Summit Down Jacket: 189,00 €, en rupture de stock');
  });

  it('fr: "parler à un humain" hands off', async () => {
    const d = en();
    const t = await d.turn(say('Je voudrais parler à un humain'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: expect.any(String) }]]);
    expect(t.text).toContain("J'ai demandé à un membre de notre équipe");
    expect(await d.state()).toBe('human_active');
  });

  it('fr: les horaires', async () => {
    const t = await en().turn(say('Quels sont vos horaires ?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(t.text).toBe('Nos horaires : Mon–Fri 9:00–18:00, Sat 10:00–14:00');
  });

  it('pt: tendas', async () => {
    const t = await en().turn(say('Olá, vocês têm tendas?'));
    expect(toolsRan(t)).toEqual([['search_products', query(/^tendas$/)]]);
    expect(t.text).toContain('Eis o que encontrei:');
    expect(t.text).toContain('Camping Tent 2P');
    expect(t.text).toContain('em estoque');
  });
});

// ---------------------------------------------------------------------------------------------
// The Chat Completions engine against the scripted server

/** The last `tool` message of a request, parsed. */
function lastToolContent(body: ChatRequestBody): unknown {
  const tool = [...body.messages].reverse().find((m) => m.role === 'tool');
  return tool ? JSON.parse(tool.content ?? 'null') : undefined;
}

function firstProduct(body: ChatRequestBody): { name: string; price: string; currency: string; in_stock: boolean } | undefined {
  return (lastToolContent(body) as { products?: Array<{ name: string; price: string; currency: string; in_stock: boolean }> })?.products?.[0];
}

describe('dialogues with the Chat Completions engine (scripted server)', () => {
  beforeEach(() => llm.reset());
  const chat = () => new Dialogue(tenants.llm);

  it('product search: persona and language in the system prompt, tools offered, result sent back by call id', async () => {
    llm.queue({ toolCalls: [{ id: 'call_jacket', name: 'search_products', arguments: { query: 'rain jacket' } }] }, (body) => {
      const p = firstProduct(body)!;
      return { content: `The ${p.name} costs ${p.price} ${p.currency} and is ${p.in_stock ? 'in stock' : 'out of stock'}.` };
    });
    const t = await chat().turn(say('Do you have a rain jacket?'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'rain jacket' }]]);
    expect(t.text).toBe('The Trail Jacket costs 89.90 EUR and is in stock.');

    expect(t.llm).toHaveLength(2);
    const [first, second] = t.llm.map((r) => r.body);
    expect(t.llm[0]!.headers.authorization).toBe(`Bearer ${LLM_KEY}`);
    expect(first!.model).toBe('test-model');
    expect(first!.messages[0]!.role).toBe('system');
    expect(first!.messages[0]!.content).toContain('You are Heidi, the cheerful assistant of Alpine Outfitters');
    expect(first!.messages[0]!.content).toContain('Answer in English unless the customer writes in another language');
    expect(first!.messages[0]!.content).toContain('Free repairs for one year on all jackets.');
    expect(first!.tools!.map((x) => x.function.name)).toEqual(['search_products', 'get_business_info', 'handoff_to_human']);
    expect(first!.messages.at(-1)).toEqual({ role: 'user', content: 'Do you have a rain jacket?' });
    const toolMessage = second!.messages.find((m) => m.role === 'tool')!;
    expect(toolMessage.tool_call_id).toBe('call_jacket');
    expect(toolMessage.content).toContain('"name":"Trail Jacket"');
    expect(second!.messages.find((m) => m.role === 'assistant' && m.tool_calls)?.tool_calls?.[0]?.id).toBe('call_jacket');
  });

  it('typo: the tool finds "jakcet" for the model', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'jakcet' } }] }, (body) => ({ content: `We have the ${firstProduct(body)!.name}.` }));
    const t = await chat().turn(say('jakcet??'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'jakcet' }]]);
    expect(productNames(t.results[0])).toEqual(expect.arrayContaining(['Trail Jacket', 'Summit Down Jacket']));
    expect(t.text).toBe(`We have the ${productNames(t.results[0])[0]}.`);
  });

  it('out of stock: the model is told in_stock false', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'down jacket blue' } }] }, (body) => {
      const p = firstProduct(body)!;
      return { content: p.in_stock ? `${p.name} is available.` : `Sorry, the ${p.name} is out of stock right now.` };
    });
    const t = await chat().turn(say('is the blue down jacket in stock? 🥶'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'down jacket blue' }]]);
    expect((t.results[0]!.content as { products: unknown[] }).products[0]).toMatchObject({ sku: 'JKT-DOWN', stock: 0, in_stock: false });
    expect(t.text).toBe('Sorry, the Summit Down Jacket is out of stock right now.');
  });

  it('price limit and stock filter reach the database', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'jacket', max_price: 100, in_stock_only: true, limit: 5 } }] }, (body) => ({
      content: `Under 100 EUR: ${(lastToolContent(body) as { products: Array<{ name: string }> }).products.map((p) => p.name).join(', ')}.`,
    }));
    const t = await chat().turn(say('jackets under 100 euros that are in stock?'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'jacket', max_price: 100, in_stock_only: true, limit: 5 }]]);
    expect(productNames(t.results[0])).toEqual(['Trail Jacket']);
    expect(t.text).toBe('Under 100 EUR: Trail Jacket.');
  });

  it('unknown product: an empty result goes back to the model', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'surfboard' } }] }, (body) => ({
      content: (lastToolContent(body) as { products: unknown[] }).products.length === 0 ? "We don't carry surfboards. Which product are you looking for?" : 'found',
    }));
    const t = await chat().turn(say('surfboards?'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'surfboard' }]]);
    expect(t.text).toContain("We don't carry surfboards");
  });

  it('handoff: the tool switches the conversation to human_active', async () => {
    llm.queue({ toolCalls: [{ id: 'call_h', name: 'handoff_to_human', arguments: { reason: 'customer asked for a person' } }] }, { content: "I've asked a colleague to take over." });
    const d = chat();
    const t = await d.turn(say('can I talk to a real person?'));
    expect(toolsRan(t)).toEqual([['handoff_to_human', { reason: 'customer asked for a person' }]]);
    expect(t.handoff).toBe(true);
    expect(t.text).toBe("I've asked a colleague to take over.");
    expect(await d.state()).toBe('human_active');
    expect(JSON.parse(t.llm[1]!.body.messages.find((m) => m.tool_call_id === 'call_h')!.content!)).toEqual({ handed_off: true });
  });

  it('business hours from the profile', async () => {
    llm.queue({ toolCalls: [{ name: 'get_business_info', arguments: { topic: 'hours' } }] }, (body) => ({
      content: `We are open ${(lastToolContent(body) as { hours: string }).hours}.`,
    }));
    const t = await chat().turn(say('when are you open?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'hours' }]]);
    expect(t.results[0]!.content).toEqual({ topic: 'hours', business_name: 'Alpine Outfitters', hours: PROFILE.hours });
    expect(t.text).toBe(`We are open ${PROFILE.hours}.`);
  });

  it('returns policy with topic policies', async () => {
    llm.queue({ toolCalls: [{ name: 'get_business_info', arguments: { topic: 'policies' } }] }, (body) => ({
      content: (lastToolContent(body) as { policies: Record<string, string> }).policies.returns!,
    }));
    const t = await chat().turn(say('can I return stuff?'));
    expect(toolsRan(t)).toEqual([['get_business_info', { topic: 'policies' }]]);
    expect(t.text).toBe('Returns within 30 days with the receipt.');
  });

  it('bad arguments come back as an error the model corrects', async () => {
    llm.queue(
      { toolCalls: [{ id: 'bad', name: 'search_products', arguments: { max_price: -5 } }] },
      { toolCalls: [{ id: 'good', name: 'search_products', arguments: { query: 'beanie' } }] },
      (body) => ({ content: `${firstProduct(body)!.name} for ${firstProduct(body)!.price}.` }),
    );
    const t = await chat().turn(say('a beanie'));
    expect(toolsRan(t)).toEqual([
      ['search_products', { max_price: -5 }],
      ['search_products', { query: 'beanie' }],
    ]);
    expect(t.results[0]!.ok).toBe(false);
    const error = (t.results[0]!.content as { error: string }).error;
    expect(error).toMatch(/query/);
    expect(error).toMatch(/max_price: max_price must be a positive number/);
    const sentBack = t.llm[1]!.body.messages.find((m) => m.tool_call_id === 'bad')!;
    expect(JSON.parse(sentBack.content!)).toEqual({ error });
    expect(t.text).toBe('Merino Beanie for 24.50.');
  });

  it('malformed JSON arguments are echoed verbatim and reported', async () => {
    llm.queue(
      { toolCalls: [{ id: 'broken', name: 'search_products', arguments: '{"query": "poles"' }] },
      { toolCalls: [{ id: 'fixed', name: 'search_products', arguments: { query: 'poles' } }] },
      (body) => ({ content: `Yes: ${firstProduct(body)!.name}.` }),
    );
    const t = await chat().turn(say('poles'));
    expect(t.results[0]).toMatchObject({ ok: false, content: { error: expect.stringMatching(/not a valid JSON object/) } });
    const assistant = t.llm[1]!.body.messages.find((m) => m.role === 'assistant' && m.tool_calls)!;
    expect(assistant.tool_calls![0]!.function.arguments).toBe('{"query": "poles"');
    expect(t.text).toBe('Yes: Trekking Poles.');
  });

  it('an unknown tool is refused with the list of tools', async () => {
    llm.queue({ toolCalls: [{ id: 'w', name: 'get_weather', arguments: { city: 'Munich' } }] }, (body) => ({ content: `(${(lastToolContent(body) as { error: string }).error})` }));
    const t = await chat().turn(say("what's the weather?"));
    expect(t.results[0]).toMatchObject({ ok: false, content: { error: expect.stringContaining('unknown tool "get_weather"') } });
    expect(t.text).toContain('available tools: search_products, get_business_info, handoff_to_human');
  });

  it(`at most ${MAX_TOOL_ROUNDS} tool rounds, then a request without tools must answer`, async () => {
    llm.respondWith((body) => (body.tools ? { toolCalls: [{ name: 'search_products', arguments: { query: 'tent' } }] } : { content: 'The Camping Tent 2P costs 249 EUR.' }));
    const t = await chat().turn(say('tent'));
    expect(t.calls).toHaveLength(MAX_TOOL_ROUNDS);
    expect(t.llm).toHaveLength(MAX_TOOL_ROUNDS + 1);
    expect(t.llm.slice(0, MAX_TOOL_ROUNDS).every((r) => r.body.tools?.length === 3)).toBe(true);
    expect(t.llm[MAX_TOOL_ROUNDS]!.body.tools).toBeUndefined();
    expect(t.llm[MAX_TOOL_ROUNDS]!.body.messages.filter((m) => m.role === 'tool')).toHaveLength(MAX_TOOL_ROUNDS);
    expect(t.text).toBe('The Camping Tent 2P costs 249 EUR.');
  });

  it('a burst of three messages is one request with three user messages, answered once', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'blue jacket' } }] }, (body) => ({ content: `${firstProduct(body)!.name}` }));
    const t = await chat().turn(say('hi'), say('do you have the jacket'), say('in blue?'));
    expect(t.steps).toBe(2);
    expect(t.llm[0]!.body.messages.filter((m) => m.role === 'user').map((m) => m.content)).toEqual(['hi', 'do you have the jacket', 'in blue?']);
    expect(toolsRan(t)).toEqual([['search_products', { query: 'blue jacket' }]]);
    expect(t.text).toBe('Summit Down Jacket');
  });

  it('attachments and quick replies are described to the model', async () => {
    llm.queue({ content: 'Nice photo! Looking for jackets?' });
    const t = await chat().turn(image, quick('Jackets', 'PRODUCT_SEARCH:jacket'));
    expect(t.llm[0]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: '[the customer sent an image]' },
      { role: 'user', content: 'Jackets [button: PRODUCT_SEARCH:jacket]' },
    ]);
    expect(t.calls).toEqual([]);
    expect(t.text).toBe('Nice photo! Looking for jackets?');
  });

  it('history: earlier turns are context, deleted messages are not', async () => {
    const d = chat();
    llm.queue({ content: 'Hello! How can I help?' });
    await d.turn(say('hi there'));
    llm.queue({ content: 'Which size?' });
    await d.turn(say('my secret is 1234'), say('I need boots'));
    await db.ownerPool.query(`UPDATE messages SET deleted_at = now(), text = NULL WHERE conversation_id = $1 AND text = 'my secret is 1234'`, [d.conversationId]);
    llm.queue({ content: 'Great, size 42 it is.' });
    const t = await d.turn(say('size 42'));
    expect(t.llm[0]!.body.messages.slice(1).map((m) => [m.role, m.content])).toEqual([
      ['user', 'hi there'],
      ['assistant', 'Hello! How can I help?'],
      ['user', 'I need boots'],
      ['assistant', 'Which size?'],
      ['user', 'size 42'],
    ]);
  });

  it('a German tenant without a key: German in the prompt, German answer, no authorization header', async () => {
    llm.queue({ toolCalls: [{ name: 'search_products', arguments: { query: 'Rucksack' } }] }, (body) => ({ content: `Ja, den ${firstProduct(body)!.name} für ${firstProduct(body)!.price.replace('.', ',')} €.` }));
    const t = await new Dialogue(tenants.llmDe).turn(say('Habt ihr einen Rucksack?'));
    expect(toolsRan(t)).toEqual([['search_products', { query: 'Rucksack' }]]);
    expect(t.llm[0]!.headers.authorization).toBeUndefined();
    expect(t.llm[0]!.body.messages[0]!.content).toContain('Answer in German unless the customer writes in another language');
    expect(t.text).toBe('Ja, den Daypack 20L für 45,00 €.');
  });

  it('a provider that rejects the key fails the turn with a classified error', async () => {
    llm.queue({ status: 401, body: { error: { message: 'Incorrect API key', code: 'invalid_api_key' } } });
    const err = await chat().turn(say('hi')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmHttpError);
    expect((err as LlmHttpError).rejected).toBe(true);
  });
});

describe('the tool runner', () => {
  const conv = () => ({ tenantId: tenants.en.id, channelId: tenants.en.channelId, customerId: 'runner-customer', conversationId: randomUUID() });
  const runner = () => createToolRunner({ pool: db.pool });

  it('reports each bad argument by name instead of throwing', async () => {
    const r = await runner().run(conv(), { id: 'x', name: 'search_products', arguments: { query: '', limit: 50, colour: 'blue' } });
    expect(r.ok).toBe(false);
    const error = (r.content as { error: string }).error;
    expect(error).toMatch(/query: query must name what the customer is looking for/);
    expect(error).toMatch(/limit: limit must be between 1 and 10/);
    expect(error).toMatch(/unknown field\(s\) colour/);
    const topic = await runner().run(conv(), { id: 'y', name: 'get_business_info', arguments: { topic: 'weather' } });
    expect(topic).toMatchObject({ ok: false, content: { error: expect.stringMatching(/^invalid arguments: topic:/) } });
    const handoff = await runner().run(conv(), { id: 'z', name: 'handoff_to_human', arguments: {} });
    expect(handoff).toMatchObject({ ok: false, content: { error: expect.stringMatching(/reason/) } });
  });

  it('survives any characters a customer or model may type', async () => {
    for (const q of ["½ 20l ü-ß 日本語 🧥 & | ! ( ) :* ' \\", '!!!', 'a']) {
      const r = await runner().run(conv(), { id: 'x', name: 'search_products', arguments: { query: q } });
      expect(r.ok).toBe(true);
    }
    const daypack = await runner().run(conv(), { id: 'x', name: 'search_products', arguments: { query: 'Daypack 20L' } });
    expect(productNames(daypack)[0]).toBe('Daypack 20L');
  });

  it('keeps tenants apart: another tenant’s catalog is never searched', async () => {
    const other = await createTenant(db.pool, 'Other shop');
    await addProduct(db.pool, other.id, { name: 'Secret Jacket', price: 1, currency: 'EUR', stock: 1 });
    const r = await runner().run(conv(), { id: 'x', name: 'search_products', arguments: { query: 'secret jacket', limit: 10 } });
    expect(productNames(r)).not.toContain('Secret Jacket');
    expect(productNames(r)).toEqual(expect.arrayContaining(['Trail Jacket', 'Summit Down Jacket']));
  });

  it('reports unconfigured business info instead of inventing it', async () => {
    const bare = await createTenant(db.pool, 'Bare shop');
    const r = await runner().run({ ...conv(), tenantId: bare.id }, { id: 'x', name: 'get_business_info', arguments: {} });
    expect(r.ok).toBe(true);
    expect(r.content).toMatchObject({ topic: 'all', hours: null, address: null, note: expect.stringMatching(/not configured: hours, address, policies, facts/) });
  });
});
