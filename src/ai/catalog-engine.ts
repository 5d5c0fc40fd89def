import type { Pool } from 'pg';
import { loadTenantSettings } from '../db/tenant-settings';
import type { EngineStep, ToolCall, ToolExchange, ToolResult, TurnMessage, TurnRequest } from '../shared/types';
import { detectLanguage, fold, formatPrice, PHRASES, productWords, supportedLang, type Lang, type Phrases } from './languages';
import type { ReplyEngine } from './reply-engine';
import type { BusinessTopic } from './tool-specs';

/**
 * The offline default engine: deterministic, no network, the same step protocol and tools as the
 * LLM engine. The first step reads the whole burst with intent rules and asks for tools (handoff,
 * business info, product search) or answers directly (greeting, thanks, a bare attachment); the
 * second step writes the answer from the tool results. It answers in the customer's language when
 * it recognises it, else in the tenant's.
 */

export interface CatalogEngineOptions {
  /** The tenant's configured language (BCP 47); used when the customer's is not recognised. */
  language?: string;
  businessName?: string;
}

type PolicyTopic = 'returns' | 'shipping' | 'payment';

interface Analysis {
  lang: Lang;
  /** Everything the customer said in this turn, payloads turned into words. */
  text: string;
  greeting: boolean;
  getStarted: boolean;
  thanks: boolean;
  handoff: boolean;
  hours: boolean;
  address: boolean;
  policies: Set<PolicyTopic>;
  productQuery?: string;
  maxPrice?: number;
  /** Attachment type when the turn is only attachments. */
  attachmentOnly?: string;
  storyMentionOnly: boolean;
}

const HANDOFF = [
  /\b(talk|speak|chat|connect|transfer|contact)\b.{0,40}\b(person|human|agent|someone|somebody|representative|rep|staff|operator|manager|people|team)\b/,
  /\b(real|live|actual) (person|human|agent|people)\b/,
  /\b(human|representative|operator)\b/,
  /\b(mensch|menschen|mitarbeiter|mitarbeiterin|berater|beraterin|person|jemandem|jemand|kundenservice|kundendienst)\b.{0,40}\b(sprechen|reden|verbinden|schreiben|chatten)\b/,
  /\b(sprechen|reden|verbinden)\b.{0,40}\b(mensch|menschen|mitarbeiter|mitarbeiterin|berater|person|jemandem)\b/,
  /\b(echte[nm]?) (mensch|menschen|person)\b/,
  /\b(hablar|comunicar|contactar|pasar|hablo)\b.{0,40}\b(persona|humano|agente|alguien|asesor|representante|operador)\b/,
  /\b(persona real|un humano)\b/,
  /\b(parler|discuter|contacter|joindre)\b.{0,40}\b(humain|personne|quelqu ?un|conseiller|conseillere|agent|operateur)\b/,
  /\b(vraie? (personne|humain)|un humain)\b/,
  /\b(falar|conversar)\b.{0,40}\b(pessoa|humano|atendente|alguem|agente)\b/,
];

const HOURS = [
  /\b(hours|opening|open|opens|close|closing|closes)\b/,
  /\b(offnungszeiten|oeffnungszeiten|geoffnet|offen|schliesst|schliesst ihr|aufhabt|auf habt)\b/,
  /\b(horario|horarios|abierto|abiertos|abren|cierran|abre|cierra)\b/,
  /\b(horaire|horaires|ouvert|ouverte|ouvrez|ouvre|fermez|ferme|fermeture|ouverture)\b/,
  /\b(aberto|abertos|abrem|fecham|funcionamento)\b/,
];

const ADDRESS = [
  /\b(address|located|location|where are you|where is your (shop|store)|find you|directions)\b/,
  /\b(adresse|anschrift|wo seid ihr|wo ist euer|wo finde ich euch|standort|wo sind sie|wo ist der laden)\b/,
  /\b(direccion|ubicacion|donde estan|donde esta la tienda|donde se encuentran|ubicados)\b/,
  /\b(ou etes vous|ou se trouve|situes|localisation)\b/,
  /\b(endereco|localizacao|onde ficam|onde fica|onde estao)\b/,
];

const POLICY_RULES: Array<[PolicyTopic, RegExp]> = [
  ['returns', /\b(return|returns|returning|refund|refunds|exchange|ruckgabe|umtausch|umtauschen|zuruckgeben|zurucksenden|rucksendung|erstattung|widerruf|devolucion|devoluciones|devolver|reembolso|retour|retours|retourner|rembourse|remboursement|echange|echanger|devolucao|troca|trocar)\b/],
  ['shipping', /\b(shipping|ship|ships|delivery|deliver|versand|versandkosten|lieferung|liefern|lieferzeit|envio|envios|entrega|livraison|livrez|expedition|frete)\b/],
  ['payment', /\b(payment|pay|paypal|zahlung|bezahlen|zahlen|zahlungsarten|pago|pagar|paiement|payer|pagamento)\b/],
];

/** Which of the tenant's named policies answer a question about this topic. */
const POLICY_KEYS: Record<PolicyTopic, RegExp> = {
  returns: /return|refund|exchange|ruckgabe|umtausch|devoluc|retour|devoluc/i,
  shipping: /ship|deliver|versand|liefer|envio|entrega|livraison|frete/i,
  payment: /pay|zahl|pago|paiement|pagamento/i,
};

/** Words that belong to a business-info question, not to a product name. */
const TOPIC_WORDS = new Set(
  fold(`hours opening open opens close closing closes address located location where directions find return returns returning
  refund refunds exchange shipping ship ships delivery deliver policy policies payment pay paypal today tomorrow monday tuesday
  wednesday thursday friday saturday sunday weekend weekends holiday holidays time times day days long take takes free fast
  öffnungszeiten geöffnet offen schließt aufhabt adresse anschrift seid standort laden rückgabe umtausch umtauschen zurückgeben
  rücksendung erstattung widerruf versand versandkosten lieferung liefern lieferzeit zahlung bezahlen zahlen zahlungsarten heute
  montag dienstag mittwoch donnerstag freitag samstag sonntag wochenende feiertag feiertagen lange dauert kostenlos richtlinien
  horario horarios abierto abiertos abren cierran abre cierra dirección ubicación dónde están tienda devolución devoluciones
  devolver reembolso cambio envío envíos entrega pago pagar hoy mañana lunes martes miércoles jueves viernes sábado domingo fin
  semana tarda gratis política políticas horaire horaires ouvert ouverte ouvrez ouvre fermez ferme fermeture ouverture adresse
  où êtes trouve situés retour retours retourner remboursé remboursement échange échanger livraison livrez expédition paiement
  payer aujourd hui demain lundi mardi mercredi jeudi vendredi samedi dimanche temps prend gratuit conditions aberto abertos
  abrem fecham funcionamento endereço localização ficam fica estão devolução troca trocar envio frete pagamento hoje amanhã
  segunda terça quarta quinta sexta sábado fim demora loja`)
    .split(/\s+/)
    .filter(Boolean),
);

const HANDOFF_WORDS = new Set(
  fold(`talk speak chat person human agent someone somebody representative staff operator manager people team real live mensch
  menschen mitarbeiter sprechen reden persona humano agente hablar alguien parler humain personne conseiller falar pessoa atendente`)
    .split(/\s+/)
    .filter(Boolean),
);

const GREETING = /^\W*(hi|hii+|hello|hey|heya|hiya|yo|hallo|hola|bonjour|salut|bonsoir|ciao|ola|oi|servus|moin|gruss gott|guten (tag|morgen|abend)|buenos dias|buenas( tardes| noches)?|good (morning|afternoon|evening)|bom dia|boa (tarde|noite))\b/;
const GREETING_WORDS = new Set(fold('hi hii hello hey heya hiya yo hallo hola bonjour salut bonsoir ciao ola oi servus moin gruss gott guten tag morgen abend buenos buenas dias tardes noches good morning afternoon evening bom boa dia tarde noite there').split(/\s+/));
const THANKS = /\b(thanks|thank you|thank u|thx|ty|cheers|danke|dankeschon|vielen dank|gracias|merci|obrigad[oa]|perfect|perfekt|perfecto|parfait|great|genial)\b/;
const THANKS_WORDS = new Set(fold('thanks thank you u thx ty cheers danke dankeschön vielen dank gracias merci obrigado obrigada perfect perfekt perfecto parfait genial ok okay lot much muchas beaucoup muito bien bueno gut cool').split(/\s+/));

/** "under 50", "unter 50 €", "menos de 50", "moins de 50 €", "até 50", "< 50", "max. 49,90". */
const MAX_PRICE =
  /(?<!\p{L})(?:under|below|less than|cheaper than|max(?:imum)?\.?|up to|at most|no more than|unter|bis|weniger als|hochstens|maximal|gunstiger als|billiger als|menos de|por debajo de|debajo de|hasta|maximo|moins de|en dessous de|jusqu ?a|au plus|moins cher que|ate|abaixo de|no maximo|<)\s*(?:€|\$|£|eur|euro|usd)?\s*(\d{1,7}(?:[.,]\d{1,2})?)/u;

/** Structured payloads of the buttons a tenant may configure: `PRODUCT_SEARCH:jacket`, `HANDOFF`, … */
function payloadText(payload: string | undefined, title: string | undefined): string {
  if (!payload) return title ?? '';
  const keyed = /^([A-Z0-9_]+):(.+)$/i.exec(payload.trim());
  if (keyed) return keyed[2]!.replace(/[_-]+/g, ' ');
  const p = payload.trim().toUpperCase();
  if (/^(GET_STARTED|START|GET STARTED)$/.test(p)) return 'hi';
  if (/^(HANDOFF|HUMAN|TALK_TO_HUMAN|TALK_TO_A_HUMAN|AGENT|CONTACT_HUMAN|SPEAK_TO_HUMAN)$/.test(p)) return 'talk to a human';
  if (/^(HOURS|OPENING_HOURS)$/.test(p)) return 'opening hours';
  if (/^(ADDRESS|LOCATION)$/.test(p)) return 'address';
  if (/^(RETURNS|RETURN_POLICY|REFUNDS)$/.test(p)) return 'returns';
  if (/^(SHIPPING|DELIVERY)$/.test(p)) return 'shipping';
  return title ?? payload.replace(/[_-]+/g, ' ').toLowerCase();
}

function messageText(m: TurnMessage): string {
  if (m.kind === 'quick_reply' || m.kind === 'postback') return payloadText(m.payload, m.text);
  return m.text ?? '';
}

export function analyse(messages: TurnMessage[], defaultLanguage: string | undefined): Analysis {
  const parts = messages.map(messageText).map((t) => t.trim()).filter(Boolean);
  const text = parts.join('\n');
  const folded = fold(text).replace(/[’']/g, ' ');
  const lang = detectLanguage(text, supportedLang(defaultLanguage)) ?? supportedLang(defaultLanguage);
  const policies = new Set<PolicyTopic>(POLICY_RULES.filter(([, re]) => re.test(folded)).map(([t]) => t));
  const hours = HOURS.some((re) => re.test(folded));
  const address = ADDRESS.some((re) => re.test(folded));
  const handoff = HANDOFF.some((re) => re.test(folded));
  const priceMatch = MAX_PRICE.exec(folded);
  const maxPrice = priceMatch ? Number(priceMatch[1]!.replace(',', '.')) : undefined;
  const withoutPrice = priceMatch ? text.replace(new RegExp(escapeRegExp(priceMatch[1]!), 'g'), ' ') : text;
  const ignore = new Set<string>([...GREETING_WORDS, ...THANKS_WORDS]);
  if (hours || address || policies.size > 0) for (const w of TOPIC_WORDS) ignore.add(w);
  if (handoff) for (const w of HANDOFF_WORDS) ignore.add(w);
  const productTerms = productWords(withoutPrice, ignore);
  const greeting = parts.some((p) => GREETING.test(fold(p)));
  const attachmentOnly = parts.length === 0 ? messages.flatMap((m) => m.attachments).find(Boolean)?.type : undefined;
  return {
    lang,
    text,
    greeting,
    getStarted: messages.some((m) => /^(GET_STARTED|START)$/i.test(m.payload ?? '')),
    thanks: THANKS.test(folded),
    handoff,
    hours,
    address,
    policies,
    ...(productTerms.length > 0 ? { productQuery: productTerms.join(' ') } : {}),
    ...(maxPrice !== undefined && maxPrice > 0 ? { maxPrice } : {}),
    ...(attachmentOnly ? { attachmentOnly } : {}),
    storyMentionOnly: parts.length === 0 && messages.some((m) => m.kind === 'story_mention'),
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The tools the first step asks for; empty when the engine can answer straight away. */
function plan(a: Analysis): ToolCall[] {
  if (a.handoff) return [{ id: 'catalog_1', name: 'handoff_to_human', arguments: { reason: 'customer asked for a person' } }];
  const calls: ToolCall[] = [];
  const topics = [a.hours, a.address, a.policies.size > 0].filter(Boolean).length;
  if (topics > 0) {
    const topic: BusinessTopic = topics > 1 ? 'all' : a.hours ? 'hours' : a.address ? 'address' : 'policies';
    calls.push({ id: `catalog_${calls.length + 1}`, name: 'get_business_info', arguments: { topic } });
  }
  if (a.productQuery) {
    calls.push({
      id: `catalog_${calls.length + 1}`,
      name: 'search_products',
      arguments: { query: a.productQuery, ...(a.maxPrice !== undefined ? { max_price: a.maxPrice } : {}), limit: 3 },
    });
  }
  return calls;
}

/** What to say without tools: greetings, thanks, a bare attachment, or a question back. */
function directReply(a: Analysis, businessName: string | undefined): string {
  const p = PHRASES[a.lang];
  if (a.storyMentionOnly) return p.storyMention;
  if (a.attachmentOnly) return p.attachment(a.attachmentOnly);
  if (a.thanks && !a.greeting) return p.thanks;
  if (a.greeting || a.getStarted) return businessName ? p.welcomeBack(businessName) : p.greeting;
  return p.askProduct;
}

interface SearchContent {
  products: Array<{ name: string; price: string | null; currency: string | null; stock: number | null; in_stock: boolean | null; url: string | null }>;
}

function describeProducts(lang: Lang, p: Phrases, content: SearchContent): string {
  const lines = content.products.map((prod) => {
    const price = prod.price !== null ? `: ${formatPrice(lang, prod.price, prod.currency)}` : '';
    const stock = prod.in_stock === null ? '' : `, ${prod.in_stock ? p.inStock : p.outOfStock}`;
    return `• ${prod.name}${price}${stock}${prod.url ? ` ${prod.url}` : ''}`;
  });
  return [content.products.length === 1 ? p.foundOne : p.found, ...lines].join('\n');
}

function describeBusiness(a: Analysis, p: Phrases, content: Record<string, unknown>): string {
  const out: string[] = [];
  const hours = typeof content.hours === 'string' ? content.hours : undefined;
  const address = typeof content.address === 'string' ? content.address : undefined;
  const policies = (content.policies && typeof content.policies === 'object' ? content.policies : {}) as Record<string, string>;
  const wantsAll = !a.hours && !a.address && a.policies.size === 0;
  if (a.hours || wantsAll) out.push(hours ? p.hours(hours) : p.noInfo);
  if (a.address || wantsAll) out.push(address ? p.address(address) : p.noInfo);
  if (a.policies.size > 0 || wantsAll) {
    const names = Object.keys(policies);
    const wanted = names.filter((n) => [...a.policies].some((t) => POLICY_KEYS[t].test(fold(n))));
    const chosen = wanted.length > 0 ? wanted : a.policies.size > 0 && names.length > 0 ? names : [];
    if (chosen.length === 1) out.push(policies[chosen[0]!]!);
    else if (chosen.length > 1) out.push([p.policies, ...chosen.map((n) => `• ${capitalise(n)}: ${policies[n]}`)].join('\n'));
    else if (a.policies.size > 0) out.push(p.noInfo);
  }
  return [...new Set(out)].join('\n');
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function compose(a: Analysis, exchanges: ToolExchange[], businessName: string | undefined): string {
  const p = PHRASES[a.lang];
  const results: ToolResult[] = exchanges.flatMap((e) => e.results);
  if (results.length === 0) return a.productQuery || a.hours || a.address || a.policies.size > 0 ? p.askProduct : directReply(a, businessName);
  const out: string[] = [];
  const handoff = results.find((r) => r.name === 'handoff_to_human');
  if (handoff) return handoff.ok ? p.handoff : p.handoffFailed;
  const answeredInfo = results.some((r) => r.name === 'get_business_info' && r.ok);
  for (const r of results) {
    if (r.name === 'get_business_info') out.push(r.ok ? describeBusiness(a, p, r.content as Record<string, unknown>) : p.noInfo);
    if (r.name === 'search_products') {
      const content = r.content as SearchContent;
      if (!r.ok || !Array.isArray(content?.products)) out.push(p.askProduct);
      else if (content.products.length > 0) out.push(describeProducts(a.lang, p, content));
      // Leftover words of a business question ("how do returns work") are no product: stay quiet.
      else if (answeredInfo) continue;
      else {
        const query = a.productQuery ?? '';
        const max = a.maxPrice !== undefined ? formatPrice(a.lang, a.maxPrice.toFixed(2), currencyOf(results)) : undefined;
        out.push(max ? p.notFoundUnder(query, max) : p.notFound(query));
      }
    }
  }
  return out.filter(Boolean).join('\n\n') || p.askProduct;
}

/** The currency the customer most likely meant: that of any product seen, else none. */
function currencyOf(results: ToolResult[]): string | null {
  for (const r of results) {
    const products = (r.content as Partial<SearchContent>)?.products;
    const c = Array.isArray(products) ? products.find((x) => x.currency)?.currency : undefined;
    if (c) return c;
  }
  return null;
}

function isPool(x: unknown): x is Pool {
  return typeof x === 'object' && x !== null && typeof (x as Pool).query === 'function' && typeof (x as Pool).connect === 'function';
}

export class CatalogReplyEngine implements ReplyEngine {
  private readonly pool?: Pool;
  private readonly options: CatalogEngineOptions;

  /** With a pool, the tenant's language and business name are read per step; otherwise from `options`. */
  constructor(source: Pool | CatalogEngineOptions = {}) {
    if (isPool(source)) {
      this.pool = source;
      this.options = {};
    } else {
      this.options = source;
    }
  }

  async step(request: TurnRequest, signal: AbortSignal): Promise<EngineStep> {
    signal.throwIfAborted();
    const { language, businessName } = await this.tenantOptions(request.tenantId);
    const a = analyse(request.messages, language);
    if (request.exchanges.length > 0 || request.final) return { kind: 'reply', text: compose(a, request.exchanges, businessName) };
    const calls = plan(a);
    if (calls.length > 0) return { kind: 'tool_calls', calls };
    return { kind: 'reply', text: directReply(a, businessName) };
  }

  private async tenantOptions(tenantId: string): Promise<CatalogEngineOptions> {
    if (!this.pool) return this.options;
    const settings = await loadTenantSettings(this.pool, tenantId);
    return { language: settings.agent.language, ...(settings.assistant.businessName ? { businessName: settings.assistant.businessName } : {}) };
  }
}
