import type { Pool } from 'pg';
import { searchProducts, type Product } from '../db/products';
import type { Reply, ReplyEngine, ReplyRequest } from './reply-engine';

const GREETING = /^\s*(hi|hello|hey|hallo|hola|bonjour|ciao|olá|ola|servus|moin|guten (tag|morgen|abend)|buenos d[ií]as|good (morning|afternoon|evening))\b/iu;

function describe(p: Product): string {
  const price = p.price !== null ? ` costs ${p.price}${p.currency ? ` ${p.currency}` : ''}` : '';
  const stock = p.stock === null ? '' : p.stock > 0 ? ' and is in stock' : ', but it is out of stock right now';
  return `${p.name}${price}${stock}.${p.url ? ` ${p.url}` : ''}`;
}

/**
 * The offline default engine: deterministic, no network. A greeting gets a greeting, a question
 * that names a catalog product gets its price and stock, anything else a polite prompt.
 */
export class CatalogReplyEngine implements ReplyEngine {
  constructor(private readonly pool: Pool) {}

  async reply({ tenantId, event }: ReplyRequest): Promise<Reply | null> {
    if (event.kind === 'postback') {
      return { text: 'Thanks for reaching out! How can I help you today? Ask me about any product.' };
    }
    const text = event.text?.trim() ?? '';
    if (!text) {
      return event.attachments.length > 0
        ? { text: 'Thanks for sending that! Tell me in a few words what you are looking for and I will check our catalog.' }
        : null;
    }
    const products = await searchProducts(this.pool, tenantId, text, 3);
    const greeting = GREETING.test(text);
    if (products.length > 0) {
      const [first, ...others] = products;
      const more = others.length > 0 ? ` We also have: ${others.map((p) => p.name).join(', ')}.` : '';
      return { text: `${greeting ? 'Hi! ' : ''}${describe(first!)}${more}` };
    }
    if (greeting) return { text: 'Hi! Thanks for your message. How can I help you today?' };
    return { text: "Thanks for your message! I couldn't find that in our catalog. Could you tell me the product name?" };
  }
}
