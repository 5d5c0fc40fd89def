import { createHash, createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { SANDBOX_APP_ID, numericId, parseOptions, tokenFingerprint } from './graph-common';
import { FACEBOOK_MESSAGING_SCOPES, INSTAGRAM_MESSAGING_SCOPES } from '../meta/messaging-scopes';

/**
 * The OAuth side of one sandbox instance (contract §5): the apps it knows, the persona whose
 * assets the next consent grants, pending consents, authorization codes, issued tokens and
 * webhook subscriptions. Codes and tokens are kept only as SHA-256 hashes (plus the `sha256:`
 * fingerprint shown in records and `oauthState()`); a clear token exists only in the answer that
 * minted it. Page tokens are derived (HMAC of the user token's hash and the Page id, keyed with a
 * per-instance secret), so `/me/accounts` gives the same Page token each time for one user token
 * without the sandbox holding any token in clear.
 */

export type OAuthFlow = 'facebook' | 'instagram';

export interface OAuthApp {
  /** Numeric app id (`client_id`). */
  appId: string;
  appSecret: string;
  /** Which dialog and token endpoints take it: Facebook Login, or Instagram API with Instagram Login. */
  platform: OAuthFlow;
  /** Shown on the consent page and in `subscribed_apps` / `debug_token`. */
  name?: string;
  /** Registered redirect URIs; absent = any absolute http(s) URI is accepted. */
  redirectUris?: string[];
  /** Meta's "Require App Secret" setting: calls with a user or Page token must carry `appsecret_proof`. */
  requireAppsecretProof?: boolean;
}

export interface PersonaInstagramAccount {
  /** Instagram professional account id (`17841…`): webhook `entry.id`. */
  id: string;
  username: string;
}

export interface PersonaPage {
  id: string;
  name: string;
  category?: string;
  /** The user's tasks on the Page (default: all, as for an admin). Subscribing needs MODERATE or MANAGE. */
  tasks?: string[];
  /** The Instagram professional account linked to the Page. */
  instagram?: PersonaInstagramAccount;
}

export interface PersonaInstagramLogin {
  /** The professional account id `GET /me?fields=user_id` returns (webhook `entry.id`). */
  userId: string;
  username: string;
  /** The app-scoped id (`/me`'s `id`, the code exchange's `user_id`); default derived from `userId`. */
  appScopedId?: string;
  name?: string;
  accountType?: 'BUSINESS' | 'MEDIA_CREATOR';
}

/** Who is signed in to "Meta" when the dialog opens: what the next consent grants. */
export interface OAuthPersona {
  /** The Facebook user (app-scoped id); default a fixed one. */
  user?: { id: string; name: string };
  pages: PersonaPage[];
  /** The account Instagram Login grants; absent = not a professional account (the dialog can only be cancelled). */
  instagram?: PersonaInstagramLogin;
}

export const SANDBOX_INSTAGRAM_APP_ID = '1298374650129384';

/** Known to every sandbox unless replaced (`oauthApps` option, `setOAuthApps`). */
export const DEFAULT_OAUTH_APPS: readonly OAuthApp[] = Object.freeze([
  { appId: String(SANDBOX_APP_ID), appSecret: 'sandbox-meta-app-secret', platform: 'facebook', name: 'Switchboard (sandbox)' },
  {
    appId: SANDBOX_INSTAGRAM_APP_ID,
    appSecret: 'sandbox-instagram-app-secret',
    platform: 'instagram',
    name: 'Switchboard for Instagram (sandbox)',
  },
] satisfies OAuthApp[]);

/**
 * Two Pages (the first, the fixtures' Page A, with a linked Instagram account) and one
 * Instagram-Login professional account (the fixtures' Instagram account, so `ig-*` webhooks route
 * to it once connected).
 */
export const DEFAULT_OAUTH_PERSONA: OAuthPersona = Object.freeze({
  user: { id: '10161938475620394', name: 'Lena Berger' },
  pages: [
    {
      id: '104829376511820',
      name: 'Bergsport Berger',
      category: 'Sporting goods store',
      instagram: { id: '17841452836401977', username: 'bergsport.berger' },
    },
    { id: '231907745812664', name: 'Clínica Sonrisa', category: 'Dentist & dental office' },
  ],
  instagram: { userId: '17841469920315587', username: 'atelier.lumen', appScopedId: '26490318275561048', name: 'Atelier Lumen' },
});

/**
 * The apps a deployment's configuration names, for the sandbox that stands in for Meta: the
 * Facebook app (META_APP_ID, default the sandbox's) with META_APP_SECRET, and the Instagram app
 * (INSTAGRAM_APP_ID, default the sandbox's) with INSTAGRAM_APP_SECRET, else META_APP_SECRET.
 */
export function oauthAppsFromConfig(c: {
  META_APP_ID?: string | undefined;
  META_APP_SECRET?: string | undefined;
  INSTAGRAM_APP_ID?: string | undefined;
  INSTAGRAM_APP_SECRET?: string | undefined;
}): OAuthApp[] {
  const [fb, ig] = DEFAULT_OAUTH_APPS as [OAuthApp, OAuthApp];
  const metaSecret = c.META_APP_SECRET || undefined;
  return [
    { ...fb, appId: c.META_APP_ID || fb.appId, appSecret: metaSecret ?? fb.appSecret },
    { ...ig, appId: c.INSTAGRAM_APP_ID || ig.appId, appSecret: c.INSTAGRAM_APP_SECRET || metaSecret || ig.appSecret },
  ];
}

// ---------------------------------------------------------------------------------------------
// Validation (strict: a typo is refused instead of silently granting the wrong assets)

const TASKS = ['ANALYZE', 'ADVERTISE', 'MESSAGING', 'MODERATE', 'CREATE_CONTENT', 'MANAGE'] as const;

const oauthAppSchema = z.strictObject({
  appId: numericId,
  appSecret: z.string().min(1),
  platform: z.enum(['facebook', 'instagram']),
  name: z.string().min(1).optional(),
  redirectUris: z.array(z.url({ protocol: /^https?$/ })).optional(),
  requireAppsecretProof: z.boolean().optional(),
});

const oauthAppsSchema = z
  .array(oauthAppSchema)
  .refine((apps) => new Set(apps.map((a) => a.appId)).size === apps.length, { message: 'app ids must be unique' });

const personaSchema = z.strictObject({
  user: z.strictObject({ id: numericId, name: z.string().min(1) }).optional(),
  pages: z
    .array(
      z.strictObject({
        id: numericId,
        name: z.string().min(1),
        category: z.string().min(1).optional(),
        tasks: z.array(z.enum(TASKS)).optional(),
        instagram: z.strictObject({ id: numericId, username: z.string().min(1) }).optional(),
      }),
    )
    .refine((pages) => new Set(pages.map((p) => p.id)).size === pages.length, { message: 'Page ids must be unique' }),
  instagram: z
    .strictObject({
      userId: numericId,
      username: z.string().min(1),
      appScopedId: numericId.optional(),
      name: z.string().min(1).optional(),
      accountType: z.enum(['BUSINESS', 'MEDIA_CREATOR']).optional(),
    })
    .optional(),
});

export function parseOAuthApps(input: unknown): OAuthApp[] {
  return parseOptions(oauthAppsSchema, input, 'OAuth apps');
}

// ---------------------------------------------------------------------------------------------
// Internal records

export interface GrantedPage {
  id: string;
  name: string;
  category: string;
  tasks: string[];
  instagram?: PersonaInstagramAccount;
}

export interface GrantedInstagram {
  userId: string;
  appScopedId: string;
  username: string;
  name: string;
  accountType: 'BUSINESS' | 'MEDIA_CREATOR';
}

/** The persona with its defaults applied, frozen into a consent when the dialog opens. */
export interface ResolvedPersona {
  user: { id: string; name: string };
  pages: GrantedPage[];
  instagram?: GrantedInstagram;
}

/** What one consent granted: the scopes and the assets the user left checked. */
export interface Grant {
  flow: OAuthFlow;
  appId: string;
  scopes: string[];
  user: { id: string; name: string };
  pages: GrantedPage[];
  instagram?: GrantedInstagram;
}

export interface PkceChallenge {
  challenge: string;
  method: 'S256' | 'plain';
}

export interface PendingConsent {
  id: string;
  flow: OAuthFlow;
  appId: string;
  redirectUri: string;
  state?: string;
  scopes: string[];
  pkce?: PkceChallenge;
  persona: ResolvedPersona;
  expiresAt: number;
  answered: boolean;
}

export interface CodeRecord {
  flow: OAuthFlow;
  appId: string;
  redirectUri: string;
  grant: Grant;
  pkce?: PkceChallenge;
  issuedAt: number;
  expiresAt: number;
  used: boolean;
}

export type TokenKind = 'user' | 'page' | 'instagram';

export interface TokenRecord {
  fingerprint: string;
  kind: TokenKind;
  /** Long-lived user / Instagram token; Page tokens from a long-lived user token never expire. */
  long: boolean;
  appId: string;
  grant: Grant;
  /** The Page of a Page token. */
  pageId?: string;
  issuedAt: number;
  /** Epoch ms; 0 = never. */
  expiresAt: number;
  /** OAuth-clock ms at which `invalidateTokens` killed it (as a password change does); absent = alive. */
  invalidatedAt?: number;
}

/** `seedTokens`: one account whose token the sandbox mints directly, without a consent dialog. */
export interface SeedAccount {
  /** `page`: a never-expiring Page token (Facebook Login); `instagram`: a long-lived Instagram-Login token. */
  kind: 'page' | 'instagram';
  /** The Page id, or the Instagram professional account id (`user_id`). */
  id: string;
  /** Page name or Instagram username; default derived from the id. */
  name?: string;
  /** The Page's linked Instagram professional account. */
  instagram?: PersonaInstagramAccount;
  /** Epoch ms on the OAuth clock; default now. Refreshes need it ≥ 24 h in the past. */
  issuedAt?: number;
  /** Instagram only: epoch ms on the OAuth clock; default `issuedAt` + 60 days. */
  expiresAt?: number;
  /** Subscribe the token's app to the account with these fields (default: not subscribed). */
  subscribedFields?: string[];
  /** Default: what onboarding asks for (Facebook Login's messaging scopes, or Instagram Login's). */
  scopes?: string[];
}

export interface SeededToken {
  kind: 'page' | 'instagram';
  id: string;
  /** In clear: the caller stores it like a token from onboarding. */
  accessToken: string;
  /** Epoch ms on the OAuth clock; null = never. */
  expiresAt: number | null;
}

export interface Subscription {
  appId: string;
  object: 'page' | 'instagram';
  subscribedFields: string[];
  /** Epoch ms of the last POST. */
  at: number;
}

/** `oauthState()` / `GET /_sandbox/oauth`: what a test checks; tokens only as fingerprints. */
export interface OAuthStateView {
  apps: Array<{ appId: string; platform: OAuthFlow; name: string }>;
  persona: OAuthPersona;
  /** Per account id (Page id or Instagram professional account id), one entry per subscribed app. */
  subscriptions: Record<string, Subscription[]>;
  tokens: Array<{
    fingerprint: string;
    kind: TokenKind;
    lifetime: 'short' | 'long' | 'never';
    appId: string;
    /** Page id for Page tokens, Instagram `user_id` for Instagram tokens, the app-scoped user id for user tokens. */
    accountId: string;
    scopes: string[];
    issuedAt: number;
    /** Epoch ms; null = never. */
    expiresAt: number | null;
    /** OAuth-clock ms of `invalidateTokens`; null = valid. */
    invalidatedAt: number | null;
  }>;
  codes: { issued: number; redeemed: number };
  /** Milliseconds the OAuth clock runs ahead of the wall clock (`advanceOAuthClock`). */
  clockOffsetMs: number;
}

export const CODE_TTL_MS = 3_600_000;
export const CONSENT_TTL_MS = 3_600_000;
export const FB_SHORT_TOKEN_S = 5400;
export const LONG_TOKEN_S = 5_183_944;
export const IG_SHORT_TOKEN_S = 3600;
const MAX_PENDING_CONSENTS = 10_000;
/** Hand-typed Send API tokens remembered per account so `invalidateTokens` can kill them too; past this the oldest account is forgotten. */
const MAX_HAND_TOKEN_ACCOUNTS = 10_000;
const MAX_HAND_TOKENS_PER_ACCOUNT = 100;

const seedAccountSchema = z.strictObject({
  kind: z.enum(['page', 'instagram']),
  id: numericId,
  name: z.string().min(1).optional(),
  instagram: z.strictObject({ id: numericId, username: z.string().min(1) }).optional(),
  issuedAt: z.number().int().min(0).optional(),
  expiresAt: z.number().int().min(1).optional(),
  subscribedFields: z.array(z.string().min(1)).min(1).optional(),
  scopes: z.array(z.string().min(1)).optional(),
});

export const seedAccountsSchema = z.array(seedAccountSchema).max(100_000);

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function base62(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) out += BASE62[b % 62];
  return out;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** A stable 17-digit id, so a persona without an explicit app-scoped id still gets the same one each time. */
function derivedId(seed: string): string {
  const digits = BigInt('0x' + sha256Hex(seed).slice(0, 15)).toString().padStart(16, '0').slice(0, 16);
  return '2' + digits;
}

function resolvePersona(p: OAuthPersona): ResolvedPersona {
  const user = p.user ?? DEFAULT_OAUTH_PERSONA.user!;
  return {
    user: { ...user },
    pages: p.pages.map((page) => ({
      id: page.id,
      name: page.name,
      category: page.category ?? 'Local business',
      tasks: [...(page.tasks ?? TASKS)],
      ...(page.instagram && { instagram: { ...page.instagram } }),
    })),
    ...(p.instagram && {
      instagram: {
        userId: p.instagram.userId,
        appScopedId: p.instagram.appScopedId ?? derivedId(`ig-app-scoped:${p.instagram.userId}`),
        username: p.instagram.username,
        name: p.instagram.name ?? p.instagram.username,
        accountType: p.instagram.accountType ?? 'BUSINESS',
      },
    }),
  };
}

function clonePersona(p: OAuthPersona): OAuthPersona {
  return JSON.parse(JSON.stringify(p)) as OAuthPersona;
}

export class OAuthStore {
  private apps: OAuthApp[];
  private personaInput: OAuthPersona = clonePersona(DEFAULT_OAUTH_PERSONA);
  private clockOffset = 0;
  private readonly consents = new Map<string, PendingConsent>();
  private readonly codes = new Map<string, CodeRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly subscriptions = new Map<string, Map<string, Subscription>>();
  private redeemed = 0;
  /**
   * Fingerprints of tokens the sandbox did not issue (the CLI's hand-typed ones) seen sending as
   * an account, so that invalidating the account kills them as well; `deadHandTokens` holds the
   * killed ones.
   */
  private readonly handTokens = new Map<string, Set<string>>();
  private readonly deadHandTokens = new Set<string>();
  /** Accounts `invalidateAccount` was called for: hand-typed tokens sending as them are refused from then on. */
  private readonly invalidatedAccounts = new Set<string>();
  /** Keys the Page-token derivation; never leaves the process. */
  private readonly secret = randomBytes(32);

  constructor(apps: readonly OAuthApp[] = DEFAULT_OAUTH_APPS) {
    this.apps = parseOAuthApps(apps);
  }

  now(): number {
    return Date.now() + this.clockOffset;
  }

  advanceClock(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new Error('advanceOAuthClock: ms must be a non-negative number');
    this.clockOffset += ms;
  }

  // Apps -------------------------------------------------------------------------------------

  setApps(input: unknown): void {
    this.apps = parseOAuthApps(input);
  }

  findApp(appId: string | undefined): OAuthApp | undefined {
    return appId === undefined ? undefined : this.apps.find((a) => a.appId === appId);
  }

  appName(appId: string): string {
    const app = this.findApp(appId);
    return app?.name ?? `App ${appId}`;
  }

  /** Without secrets: the dev sandbox may listen beyond localhost. */
  appsView(): OAuthStateView['apps'] {
    return this.apps.map((a) => ({ appId: a.appId, platform: a.platform, name: this.appName(a.appId) }));
  }

  // Persona ----------------------------------------------------------------------------------

  setPersona(input: unknown): void {
    this.personaInput = clonePersona(parseOptions(personaSchema, input, 'OAuth persona') as OAuthPersona);
  }

  persona(): OAuthPersona {
    return clonePersona(this.personaInput);
  }

  resolvedPersona(): ResolvedPersona {
    return resolvePersona(this.personaInput);
  }

  // Consents and codes -----------------------------------------------------------------------

  openConsent(c: Omit<PendingConsent, 'id' | 'expiresAt' | 'answered' | 'persona'>): PendingConsent {
    const now = this.now();
    if (this.consents.size >= MAX_PENDING_CONSENTS) {
      for (const [id, old] of this.consents) if (old.answered || old.expiresAt <= now) this.consents.delete(id);
      // Still full: the oldest pending consent goes; a dialog left open that long is abandoned anyway.
      if (this.consents.size >= MAX_PENDING_CONSENTS) this.consents.delete(this.consents.keys().next().value!);
    }
    const consent: PendingConsent = {
      ...c,
      id: randomBytes(18).toString('base64url'),
      persona: this.resolvedPersona(),
      expiresAt: now + CONSENT_TTL_MS,
      answered: false,
    };
    this.consents.set(consent.id, consent);
    return consent;
  }

  consent(id: string): PendingConsent | undefined {
    return this.consents.get(id);
  }

  /** Issues the code for an allowed consent; `pageIds` = the Pages left checked (undefined = all shown). */
  issueCode(consent: PendingConsent, pageIds?: readonly string[]): string {
    consent.answered = true;
    const persona = consent.persona;
    const pages = pageIds === undefined ? persona.pages : persona.pages.filter((p) => pageIds.includes(p.id));
    const grant: Grant = {
      flow: consent.flow,
      appId: consent.appId,
      scopes: [...consent.scopes],
      user: { ...persona.user },
      pages: consent.flow === 'facebook' ? pages : [],
      ...(consent.flow === 'instagram' && persona.instagram && { instagram: { ...persona.instagram } }),
    };
    const code = 'AQ' + randomBytes(48).toString('base64url');
    const now = this.now();
    this.codes.set(sha256Hex(code), {
      flow: consent.flow,
      appId: consent.appId,
      redirectUri: consent.redirectUri,
      grant,
      ...(consent.pkce && { pkce: consent.pkce }),
      issuedAt: now,
      expiresAt: now + CODE_TTL_MS,
      used: false,
    });
    return code;
  }

  findCode(code: string): CodeRecord | undefined {
    return this.codes.get(sha256Hex(code));
  }

  redeem(code: CodeRecord): void {
    code.used = true;
    this.redeemed++;
  }

  // Tokens -----------------------------------------------------------------------------------

  /** Mints a random token (`EAAB…` for Facebook, `IGAA…` for Instagram) and remembers its hash. */
  mintToken(kind: 'user' | 'instagram', long: boolean, grant: Grant, lifetimeS: number): { token: string; record: TokenRecord } {
    const token = (kind === 'instagram' ? 'IGAA' : 'EAAB') + base62(randomBytes(120));
    const now = this.now();
    const record: TokenRecord = {
      fingerprint: tokenFingerprint(token),
      kind,
      long,
      appId: grant.appId,
      grant,
      issuedAt: now,
      expiresAt: now + lifetimeS * 1000,
    };
    this.tokens.set(sha256Hex(token), record);
    return { token, record };
  }

  /**
   * The Page token a user token yields for one of its Pages: the same token on every call (Meta
   * answers `/me/accounts` repeatedly with the same Page tokens), distinct per Page and user token.
   */
  pageToken(userToken: string, user: TokenRecord, page: GrantedPage): string {
    const mac = createHmac('sha512', this.secret).update(`${sha256Hex(userToken)}:${page.id}`).digest();
    const token = 'EAAB' + base62(Buffer.concat([mac, createHmac('sha512', this.secret).update(mac).digest()]));
    const key = sha256Hex(token);
    if (!this.tokens.has(key)) {
      this.tokens.set(key, {
        fingerprint: tokenFingerprint(token),
        kind: 'page',
        long: user.long,
        appId: user.appId,
        grant: user.grant,
        pageId: page.id,
        issuedAt: this.now(),
        // A Page token from a long-lived user token has no expiry (contract §5.1); from a short-lived one it dies with it.
        expiresAt: user.long ? 0 : user.expiresAt,
      });
    }
    return token;
  }

  lookupToken(token: string | undefined): TokenRecord | undefined {
    return token === undefined ? undefined : this.tokens.get(sha256Hex(token));
  }

  /**
   * Mints tokens for accounts without a consent dialog (benchmarks seeding thousands of channels):
   * a Page token that never expires, as from a long-lived user token, or a long-lived Instagram
   * token with the given issue and expiry times. Each gets its own grant (one Page, or one
   * Instagram account) and the default app of its platform.
   */
  seedTokens(input: unknown): SeededToken[] {
    const accounts = parseOptions(seedAccountsSchema, input, 'seed accounts');
    const fbApp = this.apps.find((a) => a.platform === 'facebook');
    const igApp = this.apps.find((a) => a.platform === 'instagram');
    const now = this.now();
    return accounts.map((a) => {
      const app = a.kind === 'page' ? fbApp : igApp;
      if (!app) throw new Error(`seed accounts: no ${a.kind === 'page' ? 'facebook' : 'instagram'} app is configured`);
      const user = { id: derivedId(`seed-user:${a.kind}:${a.id}`), name: `Seeded owner of ${a.id}` };
      const issuedAt = a.issuedAt ?? now;
      let grant: Grant;
      if (a.kind === 'page') {
        grant = {
          flow: 'facebook',
          appId: app.appId,
          scopes: [...(a.scopes ?? FACEBOOK_MESSAGING_SCOPES)],
          user,
          pages: [{ id: a.id, name: a.name ?? `Page ${a.id}`, category: 'Local business', tasks: [...TASKS], ...(a.instagram && { instagram: { ...a.instagram } }) }],
        };
      } else {
        const username = a.name ?? `account.${a.id}`;
        grant = {
          flow: 'instagram',
          appId: app.appId,
          scopes: [...(a.scopes ?? INSTAGRAM_MESSAGING_SCOPES)],
          user,
          pages: [],
          instagram: { userId: a.id, appScopedId: derivedId(`ig-app-scoped:${a.id}`), username, name: username, accountType: 'BUSINESS' },
        };
      }
      const token = (a.kind === 'instagram' ? 'IGAA' : 'EAAB') + base62(randomBytes(120));
      const expiresAt = a.kind === 'page' ? 0 : (a.expiresAt ?? issuedAt + LONG_TOKEN_S * 1000);
      this.tokens.set(sha256Hex(token), {
        fingerprint: tokenFingerprint(token),
        kind: a.kind,
        long: true,
        appId: app.appId,
        grant,
        ...(a.kind === 'page' && { pageId: a.id }),
        issuedAt,
        expiresAt,
      });
      if (a.subscribedFields) this.subscribe(a.id, app.appId, a.kind, a.subscribedFields);
      return { kind: a.kind, id: a.id, accessToken: token, expiresAt: expiresAt === 0 ? null : expiresAt };
    });
  }

  // Invalidation (a password change, a lost role) ---------------------------------------------

  /** Whether a token issued here belongs to the account: its Page (or the Page's Instagram account), its Instagram account, or its Facebook user. */
  private tokenOfAccount(record: TokenRecord, accountId: string): boolean {
    const grant = record.grant;
    if (grant.flow === 'facebook' && grant.user.id === accountId) return true;
    if (record.kind === 'page') {
      const page = grant.pages.find((p) => p.id === record.pageId);
      return record.pageId === accountId || page?.instagram?.id === accountId;
    }
    if (record.kind === 'instagram') return grant.instagram?.userId === accountId || grant.instagram?.appScopedId === accountId;
    // A user token is the session the account's Page tokens come from: it dies with them.
    return grant.pages.some((p) => p.id === accountId || p.instagram?.id === accountId);
  }

  /**
   * Kills every token of the account issued so far, as Meta does on a password change: Page
   * tokens of the Page (or of the Page linked to the Instagram account), user tokens that granted
   * it, Instagram-Login tokens of the account, every token of a Facebook user when `accountId` is
   * the user, and hand-typed tokens seen sending as the account (`extraFingerprints`: the echo
   * configuration's) — and any hand-typed token that sends as it later (`accountInvalidated`).
   * Tokens the sandbox issues later (a reconnect) are valid. Returns how many were killed.
   */
  invalidateAccount(accountId: string, extraFingerprints: readonly string[] = []): number {
    const now = this.now();
    let killed = 0;
    for (const record of this.tokens.values()) {
      if (record.invalidatedAt === undefined && this.tokenOfAccount(record, accountId)) {
        record.invalidatedAt = now;
        killed++;
      }
    }
    for (const fp of [...(this.handTokens.get(accountId) ?? []), ...extraFingerprints]) {
      if (!this.deadHandTokens.has(fp)) {
        this.deadHandTokens.add(fp);
        killed++;
      }
    }
    this.handTokens.delete(accountId);
    this.invalidatedAccounts.add(accountId);
    return killed;
  }

  /**
   * Whether `invalidateAccount` was called for the account. A token the sandbox did not issue
   * cannot be told old from new, so every such token sending as the account is refused from then
   * on (a channel connected by hand has to be reconnected through OAuth, or the sandbox reset).
   */
  accountInvalidated(accountId: string): boolean {
    return this.invalidatedAccounts.has(accountId);
  }

  /** Remembers a token the sandbox did not issue sending as `accountId` (see `invalidateAccount`). */
  noteHandToken(accountId: string, token: string): void {
    const fp = tokenFingerprint(token);
    if (this.deadHandTokens.has(fp)) return;
    let set = this.handTokens.get(accountId);
    if (!set) {
      if (this.handTokens.size >= MAX_HAND_TOKEN_ACCOUNTS) this.handTokens.delete(this.handTokens.keys().next().value!);
      this.handTokens.set(accountId, (set = new Set()));
    }
    if (set.size < MAX_HAND_TOKENS_PER_ACCOUNT) set.add(fp);
  }

  /** Killed by `invalidateAccount`: an issued token, or a hand-typed one. */
  isInvalidated(token: string | undefined): boolean {
    if (token === undefined) return false;
    const record = this.lookupToken(token);
    if (record) return record.invalidatedAt !== undefined;
    return this.deadHandTokens.has(tokenFingerprint(token));
  }

  isExpired(record: TokenRecord): boolean {
    return record.expiresAt !== 0 && record.expiresAt <= this.now();
  }

  /** The account a token speaks for: a Page, an Instagram professional account, or the Facebook user. */
  accountOf(record: TokenRecord): string {
    if (record.kind === 'page') return record.pageId!;
    if (record.kind === 'instagram') return record.grant.instagram?.userId ?? record.grant.user.id;
    return record.grant.user.id;
  }

  /** The app's secret a token's `appsecret_proof` must be keyed with. */
  secretFor(record: TokenRecord): string | undefined {
    return this.findApp(record.appId)?.appSecret;
  }

  // Accounts, for Send API checks and echoes -------------------------------------------------

  /**
   * Which webhook object an account's messages belong to, for accounts the sandbox knows from the
   * persona or an earlier grant: an Instagram account (linked to a Page or from Instagram Login)
   * is `instagram`, a Page is `page`.
   */
  objectOf(accountId: string): 'page' | 'instagram' | undefined {
    const personas: Array<Pick<Grant, 'pages' | 'instagram'>> = [this.resolvedPersona()];
    for (const t of this.tokens.values()) personas.push(t.grant);
    for (const p of personas) {
      if (p.instagram?.userId === accountId) return 'instagram';
      for (const page of p.pages) {
        if (page.id === accountId) return 'page';
        if (page.instagram?.id === accountId) return 'instagram';
      }
    }
    return undefined;
  }

  /** Accounts a token may send as (Send API node other than `me`); undefined for tokens the sandbox did not issue. */
  sendersFor(record: TokenRecord): string[] {
    if (record.kind === 'page') {
      const page = record.grant.pages.find((p) => p.id === record.pageId);
      return [record.pageId!, ...(page?.instagram ? [page.instagram.id] : [])];
    }
    if (record.kind === 'instagram') return record.grant.instagram ? [record.grant.instagram.userId] : [];
    return [];
  }

  /** The echo's entry id and object for a send on `node` with this token, when the sandbox issued the token or knows the account. */
  senderFor(node: string, token: string | undefined): { id: string; object: 'page' | 'instagram' } | undefined {
    if (node !== 'me') {
      const object = this.objectOf(node);
      return object && { id: node, object };
    }
    const record = this.lookupToken(token);
    if (!record || record.kind === 'user') return undefined;
    return { id: this.accountOf(record), object: record.kind === 'page' ? 'page' : 'instagram' };
  }

  // Subscriptions ----------------------------------------------------------------------------

  subscribe(accountId: string, appId: string, object: 'page' | 'instagram', fields: string[]): void {
    let byApp = this.subscriptions.get(accountId);
    if (!byApp) this.subscriptions.set(accountId, (byApp = new Map()));
    byApp.set(appId, { appId, object, subscribedFields: [...fields], at: this.now() });
  }

  unsubscribe(accountId: string, appId: string): void {
    const byApp = this.subscriptions.get(accountId);
    byApp?.delete(appId);
    if (byApp?.size === 0) this.subscriptions.delete(accountId);
  }

  subscriptionsOf(accountId: string): Subscription[] {
    return [...(this.subscriptions.get(accountId)?.values() ?? [])].map((s) => ({ ...s, subscribedFields: [...s.subscribedFields] }));
  }

  // State ------------------------------------------------------------------------------------

  view(): OAuthStateView {
    const subscriptions: OAuthStateView['subscriptions'] = {};
    for (const accountId of this.subscriptions.keys()) subscriptions[accountId] = this.subscriptionsOf(accountId);
    return {
      apps: this.appsView(),
      persona: this.persona(),
      subscriptions,
      tokens: [...this.tokens.values()].map((t) => ({
        fingerprint: t.fingerprint,
        kind: t.kind,
        lifetime: t.expiresAt === 0 ? 'never' : t.long ? 'long' : 'short',
        appId: t.appId,
        accountId: this.accountOf(t),
        scopes: [...t.grant.scopes],
        issuedAt: t.issuedAt,
        expiresAt: t.expiresAt === 0 ? null : t.expiresAt,
        invalidatedAt: t.invalidatedAt ?? null,
      })),
      codes: { issued: this.codes.size, redeemed: this.redeemed },
      clockOffsetMs: this.clockOffset,
    };
  }

  /** Back to a fresh sandbox's OAuth state; the apps stay (they are configuration, like the port). */
  reset(): void {
    this.personaInput = clonePersona(DEFAULT_OAUTH_PERSONA);
    this.clockOffset = 0;
    this.consents.clear();
    this.codes.clear();
    this.tokens.clear();
    this.subscriptions.clear();
    this.handTokens.clear();
    this.deadHandTokens.clear();
    this.invalidatedAccounts.clear();
    this.redeemed = 0;
  }
}
