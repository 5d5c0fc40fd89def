/**
 * What the offline catalog engine knows about the languages it answers in: how to recognise them,
 * which words carry no product meaning, and its phrases. English, German, Spanish, French and
 * Portuguese; any other configured language is answered in English.
 */

export type Lang = 'en' | 'de' | 'es' | 'fr' | 'pt';
export const LANGS: readonly Lang[] = ['en', 'de', 'es', 'fr', 'pt'];

/** Lowercase, accents removed: the rules below match "dirección" and "direccion" alike. */
export function fold(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

export function words(text: string): string[] {
  return fold(text).match(/[\p{L}\p{N}]+/gu) ?? [];
}

const set = (s: string) => new Set(s.split(/\s+/).filter(Boolean).map(fold));

/** Words typical of one language and rare in the others (folded). */
const MARKERS: Record<Lang, Set<string>> = {
  en: set(`the do does you your have has is are what how much hello please thanks thank want looking for with any can need
    where when which who there this that these those my our and or of it its don doesn get got would could should will show tell`),
  de: set(`ich du ihr euch euer habt hast haben der die das dem den ein eine einen und ist sind nicht mit fur wie viel kostet kosten
    hallo danke bitte gibt suche wann wo unter moechte mochte gerne gern welche sprechen mensch menschen oeffnungszeiten offnungszeiten
    auch noch mal wir uns sie`),
  es: set(`hola tienen tienes tiene que cuanto cuesta cuestan favor gracias el los las una unos busco quiero donde cuando hay
    menos hablar persona buenos buenas dias estan esta horario direccion devolucion envio tienda algo tambien necesito precio`),
  fr: set(`bonjour salut vous avez je cherche combien coute coutent merci une des avec pour ou quand moins est les au aux et pas
    voudrais parler humain horaires adresse livraison retour votre vos bonsoir svp plait`),
  pt: set(`ola oi obrigado obrigada voces voce tem quanto custa custam com para nao onde quando quero procuro favor um uma
    falar pessoa atendente horario endereco entrega frete devolucao loja tenho preco bom dia boa`),
};

/** Characters that settle the question on their own. */
const SCRIPT_HINTS: Array<[RegExp, Lang]> = [
  [/[ßäöü]/i, 'de'],
  [/[ñ¿¡]/i, 'es'],
  [/[ãõ]/i, 'pt'],
  [/[èëîœù]/i, 'fr'],
];

/**
 * The language of a customer's words, or undefined when they give no clear signal (a bare
 * product name, an emoji). A tie involving `prefer` (the tenant's language) goes to it.
 */
export function detectLanguage(text: string, prefer?: string): Lang | undefined {
  const score: Record<Lang, number> = { en: 0, de: 0, es: 0, fr: 0, pt: 0 };
  for (const [re, lang] of SCRIPT_HINTS) if (re.test(text)) score[lang] += 2;
  for (const w of words(text)) for (const lang of LANGS) if (MARKERS[lang].has(w)) score[lang] += 1;
  const ranked = [...LANGS].sort((a, b) => score[b] - score[a]);
  const top = ranked[0]!;
  if (score[top] === 0) return undefined;
  const tied = ranked.filter((l) => score[l] === score[top]);
  if (tied.length === 1) return top;
  return prefer && (tied as string[]).includes(prefer) ? (prefer as Lang) : undefined;
}

/** The supported language for a BCP 47 tag (`de-AT` → `de`), English otherwise. */
export function supportedLang(tag: string | undefined): Lang {
  const primary = (tag ?? 'en').toLowerCase().split('-')[0] as Lang;
  return LANGS.includes(primary) ? primary : 'en';
}

/**
 * Words that never name a product, in every supported language: function words, politeness,
 * shopping verbs and price words. What remains of a message is what to search for.
 */
export const STOP_WORDS = set(`
  a an the i im me my we our us you your yours he she it its they them is are was were be been am do does did have has had
  can could would should will shall may might must please pls plz thanks thank thx ty hi hello hey hiya there any some this
  that these those what whats which who where when why how much many in on at to for of with about from by as and or but if so
  not no yes yeah yep ok okay also just really very too want wanted wanna need needs looking look searching search find show
  tell know get got give buy buying order sell sells selling sale available availability stock stocks instock price prices
  cost costs cheap cheaper cheapest expensive under below less than max maximum up over above around euro euros eur usd dollar
  dollars something anything one ones item items product products thing things stuff shop store still again like love good
  great nice more other another else here now don doesn isn aren ve ll re hmm um well sure maybe perhaps kind sort type got
  ich mich mir mein meine meinen du dich dir dein deine sie ihr ihnen euch euer eure wir uns unser unsere der die das den dem
  des ein eine einen einem einer eines und oder aber wenn dass ist sind war bin bist seid hat haben habt hast hatte gibt gib
  es was wer wie wo wann warum welche welcher welches welchen viel viele kostet kosten preis preise gunstig billig teuer unter
  bis maximal hochstens weniger als mit ohne fur von zu zum zur im in an auf aus bei nach noch auch nur mal bitte danke hallo
  servus moin guten tag morgen abend gerne gern mochte mochten will wollen wurde suche suchen brauche brauchen kaufen
  bestellen verfugbar lager vorratig artikel produkt produkte etwas schon sehr ja nein nicht kein keine keinen gibts denn
  yo mi mis tu tus te usted ustedes su sus nosotros el la los las lo un una unos unas y o pero si que es son esta estan estoy
  tiene tienen tienes tengo hay ser del al en con sin por para cuanto cuesta cuestan precio precios barato barata caro cara
  menos mas hasta bajo debajo quiero quisiera busco buscando necesito comprar disponible disponibles producto productos algo
  muy gracias hola buenas buenos dias tardes noches favor tambien vale si
  je moi mon ma mes toi ton ta tes vous votre vos il elle nous notre le les un une des du de au aux et ou mais qu est sont
  suis etes avez avoir ai as ya combien coute coutent prix pas cher chere moins plus jusqu dans avec sans pour par sur
  cherche recherche voudrais veux aimerais besoin acheter produit produits quelque chose tres merci bonjour salut bonsoir svp
  plait oui non ce ca cette ces quel quels quelle quelles peux pouvez puis comment
  puedo puede pueden podria podrian cual cuales como donde cuando kann kannst konnt konnen konnte wurdet welches
  posso pode podem poderia qual quais como onde quando work works working funciona funcionan funktioniert
  fonctionne fonctionnent funcionam da dort hier
  eu meu minha voce voces seu sua nos nosso os as um uma uns umas se tem tem tenho ha do da dos das no na nas em quanto custa
  custam preco precos abaixo ate quero queria procuro procurando preciso comprar disponivel disponiveis estoque muito
  obrigado obrigada ola oi bom boa dia reais
`);

export interface Phrases {
  greeting: string;
  welcomeBack: (business: string) => string;
  thanks: string;
  attachment: (type: string) => string;
  storyMention: string;
  askProduct: string;
  notFound: (query: string) => string;
  notFoundUnder: (query: string, max: string) => string;
  found: string;
  foundOne: string;
  inStock: string;
  outOfStock: string;
  hours: (hours: string) => string;
  address: (address: string) => string;
  policies: string;
  noInfo: string;
  handoff: string;
  handoffFailed: string;
}

const ATTACHMENT_NAMES: Record<Lang, Record<string, string>> = {
  en: { image: 'the image', video: 'the video', audio: 'the voice message', file: 'the file', other: 'that' },
  de: { image: 'das Bild', video: 'das Video', audio: 'die Sprachnachricht', file: 'die Datei', other: 'deine Nachricht' },
  es: { image: 'la imagen', video: 'el vídeo', audio: 'el audio', file: 'el archivo', other: 'tu mensaje' },
  fr: { image: "l'image", video: 'la vidéo', audio: 'le message vocal', file: 'le fichier', other: 'votre message' },
  pt: { image: 'a imagem', video: 'o vídeo', audio: 'o áudio', file: 'o arquivo', other: 'a sua mensagem' },
};

const attachmentName = (lang: Lang, type: string) => ATTACHMENT_NAMES[lang][type] ?? ATTACHMENT_NAMES[lang].other!;

export const PHRASES: Record<Lang, Phrases> = {
  en: {
    greeting: 'Hi! How can I help you today? Ask me about any of our products.',
    welcomeBack: (b) => `Hi, welcome to ${b}! How can I help you today?`,
    thanks: "You're welcome! Is there anything else I can help you with?",
    attachment: (t) => `Thanks for ${attachmentName('en', t)}! Tell me in a few words what you are looking for and I'll check our catalog.`,
    storyMention: 'Thanks for mentioning us in your story! 💛',
    askProduct: "Could you tell me which product you're looking for? I'll check price and availability for you.",
    notFound: (q) => `Sorry, I couldn't find "${q}" in our catalog. Could you tell me the product name?`,
    notFoundUnder: (q, m) => `Sorry, I couldn't find "${q}" for ${m} or less. Could you tell me the product name, or a different budget?`,
    found: "Here's what I found:",
    foundOne: "Here's what I found:",
    inStock: 'in stock',
    outOfStock: 'out of stock right now',
    hours: (h) => `Our opening hours: ${h}`,
    address: (a) => `You can find us at ${a}`,
    policies: 'Our policies:',
    noInfo: "I don't have that information at hand. Would you like me to ask a member of our team?",
    handoff: "I've asked a member of our team to take over. They'll reply here soon.",
    handoffFailed: "I couldn't reach our team just now. Please try again in a moment.",
  },
  de: {
    greeting: 'Hallo! Wie kann ich dir helfen? Frag mich gern nach unseren Produkten.',
    welcomeBack: (b) => `Hallo und willkommen bei ${b}! Wie kann ich dir helfen?`,
    thanks: 'Gern geschehen! Kann ich dir sonst noch helfen?',
    attachment: (t) => `Danke für ${attachmentName('de', t)}! Sag mir kurz, was du suchst, dann schaue ich in unserem Katalog nach.`,
    storyMention: 'Danke, dass du uns in deiner Story erwähnt hast! 💛',
    askProduct: 'Welches Produkt suchst du? Ich prüfe gern Preis und Verfügbarkeit für dich.',
    notFound: (q) => `Leider habe ich „${q}“ nicht in unserem Katalog gefunden. Wie heißt das Produkt genau?`,
    notFoundUnder: (q, m) => `Leider habe ich „${q}“ nicht für ${m} oder weniger gefunden. Wie heißt das Produkt genau, oder passt ein anderes Budget?`,
    found: 'Das habe ich gefunden:',
    foundOne: 'Das habe ich gefunden:',
    inStock: 'auf Lager',
    outOfStock: 'derzeit nicht auf Lager',
    hours: (h) => `Unsere Öffnungszeiten: ${h}`,
    address: (a) => `Du findest uns hier: ${a}`,
    policies: 'Unsere Richtlinien:',
    noInfo: 'Dazu habe ich gerade keine Information. Soll ich jemanden aus unserem Team fragen?',
    handoff: 'Ich habe ein Teammitglied gebeten, das Gespräch zu übernehmen. Du bekommst hier bald eine Antwort.',
    handoffFailed: 'Ich konnte unser Team gerade nicht erreichen. Bitte versuche es gleich noch einmal.',
  },
  es: {
    greeting: '¡Hola! ¿En qué puedo ayudarte? Pregúntame por cualquiera de nuestros productos.',
    welcomeBack: (b) => `¡Hola, bienvenido a ${b}! ¿En qué puedo ayudarte?`,
    thanks: '¡De nada! ¿Puedo ayudarte en algo más?',
    attachment: (t) => `¡Gracias por ${attachmentName('es', t)}! Dime en pocas palabras qué buscas y lo consulto en nuestro catálogo.`,
    storyMention: '¡Gracias por mencionarnos en tu historia! 💛',
    askProduct: '¿Qué producto buscas? Te consulto el precio y la disponibilidad.',
    notFound: (q) => `Lo siento, no encontré «${q}» en nuestro catálogo. ¿Me dices el nombre del producto?`,
    notFoundUnder: (q, m) => `Lo siento, no encontré «${q}» por ${m} o menos. ¿Me dices el nombre del producto u otro presupuesto?`,
    found: 'Esto es lo que encontré:',
    foundOne: 'Esto es lo que encontré:',
    inStock: 'disponible',
    outOfStock: 'agotado por ahora',
    hours: (h) => `Nuestro horario: ${h}`,
    address: (a) => `Nos encuentras en ${a}`,
    policies: 'Nuestras políticas:',
    noInfo: 'No tengo esa información a mano. ¿Quieres que se lo pregunte a alguien del equipo?',
    handoff: 'He pedido a una persona de nuestro equipo que continúe la conversación. Te responderá aquí pronto.',
    handoffFailed: 'No pude contactar con el equipo ahora mismo. Inténtalo de nuevo en un momento.',
  },
  fr: {
    greeting: 'Bonjour ! Comment puis-je vous aider ? Posez-moi vos questions sur nos produits.',
    welcomeBack: (b) => `Bonjour et bienvenue chez ${b} ! Comment puis-je vous aider ?`,
    thanks: 'Avec plaisir ! Puis-je vous aider pour autre chose ?',
    attachment: (t) => `Merci pour ${attachmentName('fr', t)} ! Dites-moi en quelques mots ce que vous cherchez et je regarde dans notre catalogue.`,
    storyMention: 'Merci de nous avoir mentionnés dans votre story ! 💛',
    askProduct: 'Quel produit cherchez-vous ? Je vérifie le prix et la disponibilité pour vous.',
    notFound: (q) => `Désolé, je n'ai pas trouvé « ${q} » dans notre catalogue. Pouvez-vous me donner le nom du produit ?`,
    notFoundUnder: (q, m) => `Désolé, je n'ai pas trouvé « ${q} » à ${m} ou moins. Pouvez-vous me donner le nom du produit ou un autre budget ?`,
    found: "Voici ce que j'ai trouvé :",
    foundOne: "Voici ce que j'ai trouvé :",
    inStock: 'en stock',
    outOfStock: 'en rupture de stock pour le moment',
    hours: (h) => `Nos horaires : ${h}`,
    address: (a) => `Vous nous trouverez à l'adresse : ${a}`,
    policies: 'Nos conditions :',
    noInfo: "Je n'ai pas cette information sous la main. Voulez-vous que je demande à un membre de l'équipe ?",
    handoff: "J'ai demandé à un membre de notre équipe de prendre le relais. Il vous répondra ici très bientôt.",
    handoffFailed: "Je n'ai pas pu joindre l'équipe pour le moment. Merci de réessayer dans un instant.",
  },
  pt: {
    greeting: 'Olá! Como posso ajudar? Pergunte-me sobre qualquer um dos nossos produtos.',
    welcomeBack: (b) => `Olá, bem-vindo à ${b}! Como posso ajudar?`,
    thanks: 'De nada! Posso ajudar em mais alguma coisa?',
    attachment: (t) => `Obrigado por ${attachmentName('pt', t)}! Diga-me em poucas palavras o que procura e eu verifico no nosso catálogo.`,
    storyMention: 'Obrigado por nos mencionar no seu story! 💛',
    askProduct: 'Que produto procura? Eu verifico o preço e a disponibilidade.',
    notFound: (q) => `Desculpe, não encontrei "${q}" no nosso catálogo. Pode dizer-me o nome do produto?`,
    notFoundUnder: (q, m) => `Desculpe, não encontrei "${q}" por ${m} ou menos. Pode dizer-me o nome do produto ou outro orçamento?`,
    found: 'Eis o que encontrei:',
    foundOne: 'Eis o que encontrei:',
    inStock: 'em estoque',
    outOfStock: 'esgotado no momento',
    hours: (h) => `O nosso horário: ${h}`,
    address: (a) => `Estamos em ${a}`,
    policies: 'As nossas políticas:',
    noInfo: 'Não tenho essa informação agora. Quer que eu pergunte a alguém da nossa equipa?',
    handoff: 'Pedi a um membro da nossa equipa para continuar a conversa. Vai responder aqui em breve.',
    handoffFailed: 'Não consegui contactar a equipa agora. Tente novamente daqui a pouco.',
  },
};

/** A price in the customer's language, e.g. `€89.90` or `89,90 €`; plain `89.90 XYZ` for unknown currencies. */
export function formatPrice(lang: Lang, price: string, currency: string | null): string {
  const amount = Number(price);
  if (!Number.isFinite(amount)) return currency ? `${price} ${currency}` : price;
  if (currency && /^[A-Z]{3}$/.test(currency.trim())) {
    try {
      return new Intl.NumberFormat(lang, { style: 'currency', currency: currency.trim() }).format(amount).replace(/[\u00a0\u202f]/g, ' ');
    } catch {
      // An ISO-shaped code Intl does not know: fall through to the plain form.
    }
  }
  const plain = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(amount);
  return currency ? `${plain} ${currency.trim()}` : plain;
}

/**
 * The words of a text that may name a product: stop words of every supported language removed
 * (compared without accents), the rest kept as typed, lowercased, so they match the catalog's
 * own spelling. Pure numbers are dropped: prices are parsed separately.
 */
export function productWords(text: string, alsoIgnore: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  for (const w of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const f = fold(w);
    if (f.length < 2 || /^\p{N}+$/u.test(w) || STOP_WORDS.has(f) || alsoIgnore.has(f)) continue;
    if (!out.includes(w)) out.push(w);
  }
  return out;
}
