import { analyse, CatalogReplyEngine } from '../../src/ai/catalog-engine';
import { detectLanguage, formatPrice, productWords } from '../../src/ai/languages';
import { editDistance } from '../../src/db/products';
import type { ToolExchange, TurnMessage, TurnRequest } from '../../src/shared/types';

const text = (t: string): TurnMessage => ({ messageId: 'm', kind: 'text', text: t, attachments: [], timestamp: 0 });
const req = (messages: TurnMessage[], exchanges: ToolExchange[] = [], final = false): TurnRequest => ({ tenantId: 't', conversationId: 'c', messages, exchanges, final });
const signal = new AbortController().signal;

describe('catalog engine intent rules', () => {
  it.each([
    ['Do you have anything under 50?', 50],
    ['unter 49,90 € bitte', 49.9],
    ['algo por menos de 30 euros', 30],
    ['moins de 80 € svp', 80],
    ['até 25 reais', 25],
    ['max. 120', 120],
    ['jackets < 200', 200],
  ])('parses the budget in %j', (said, max) => {
    expect(analyse([text(said)], 'en').maxPrice).toBe(max);
  });

  it.each([
    ['I want to talk to a person', true],
    ['can I speak with a human?', true],
    ['Kann ich mit einem Mitarbeiter sprechen?', true],
    ['quiero hablar con un agente', true],
    ['je veux parler à un conseiller', true],
    ['posso falar com um atendente?', true],
    ['do you have a personal organiser?', false],
    ['jacket for a tall person', false],
  ])('handoff intent in %j → %s', (said, expected) => {
    expect(analyse([text(said)], 'en').handoff).toBe(expected);
  });

  it.each([
    ['Do you have the jacket in blue?', 'en'],
    ['Habt ihr die Jacke auch in Blau?', 'de'],
    ['¿Tienen la chaqueta en azul?', 'es'],
    ['Avez-vous la veste en bleu ?', 'fr'],
    ['Vocês têm o casaco em azul?', 'pt'],
  ])('recognises the language of %j', (said, lang) => {
    expect(detectLanguage(said)).toBe(lang);
  });

  it('falls back to the tenant language when the words say nothing', () => {
    expect(detectLanguage('Daypack 20L 🎒')).toBeUndefined();
    expect(analyse([text('Daypack 20L 🎒')], 'fr-CA').lang).toBe('fr');
    expect(analyse([text('Daypack')], 'ja').lang).toBe('en');
  });

  it('keeps product words as typed and drops filler in every language', () => {
    expect(productWords('Do you have the Wanderschuhe in größe 42?')).toEqual(['wanderschuhe', 'größe']);
    expect(productWords('¿Tienen una chaqueta impermeable?')).toEqual(['chaqueta', 'impermeable']);
  });

  it('formats prices for the customer’s language', () => {
    expect(formatPrice('en', '89.90', 'EUR')).toBe('€89.90');
    expect(formatPrice('de', '89.90', 'EUR')).toBe('89,90 €');
    expect(formatPrice('en', '12.00', null)).toBe('12.00');
  });

  it('counts a transposition as one edit', () => {
    expect(editDistance('jakcet', 'jacket')).toBe(1);
    expect(editDistance('regenjake', 'regenjacke')).toBe(1);
    expect(editDistance('boots', 'tent', 1)).toBe(2);
  });
});

describe('CatalogReplyEngine steps', () => {
  const engine = new CatalogReplyEngine({ language: 'en', businessName: 'Alpine Outfitters' });

  it('asks for a search first, then writes the answer from the result', async () => {
    const first = await engine.step(req([text('got any beanies?')]), signal);
    expect(first).toEqual({ kind: 'tool_calls', calls: [{ id: 'catalog_1', name: 'search_products', arguments: { query: 'beanies', limit: 3 } }] });
    if (first.kind !== 'tool_calls') throw new Error('expected tool calls');
    const exchange: ToolExchange = {
      calls: first.calls,
      results: [
        {
          callId: 'catalog_1',
          name: 'search_products',
          ok: true,
          content: { products: [{ sku: 'B', name: 'Merino Beanie', description: '', price: '24.50', currency: 'EUR', stock: 0, in_stock: false, url: null }] },
        },
      ],
    };
    const second = await engine.step(req([text('got any beanies?')], [exchange]), signal);
    expect(second).toEqual({ kind: 'reply', text: "Here's what I found:\n• Merino Beanie: €24.50, out of stock right now" });
  });

  it('on the final round it answers without tools', async () => {
    expect(await engine.step(req([text('got any beanies?')], [], true), signal)).toEqual({ kind: 'reply', text: expect.stringContaining('which product') });
  });

  it('a failed search (bad arguments) gets a question back, never an error text', async () => {
    const exchange: ToolExchange = {
      calls: [{ id: 'catalog_1', name: 'search_products', arguments: {} }],
      results: [{ callId: 'catalog_1', name: 'search_products', ok: false, content: { error: 'invalid arguments: query: Required' } }],
    };
    const step = await engine.step(req([text('beanies')], [exchange]), signal);
    expect(step).toEqual({ kind: 'reply', text: expect.not.stringContaining('invalid') });
  });

  it('an aborted step does nothing', async () => {
    const c = new AbortController();
    c.abort(new Error('superseded'));
    await expect(engine.step(req([text('hi')]), c.signal)).rejects.toThrow('superseded');
  });
});
