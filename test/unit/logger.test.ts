import { ApplicationFailure } from '@temporalio/common';
import { createLogger, REDACTED, type LoggerOptions } from '../../src/logger';
import { maskEmail, maskId, maskName, maskPhone, maskText } from '../../src/pii';

/** A logger whose lines land in an array (through the `destination` option). */
function capture(opts: Omit<LoggerOptions, 'destination'> = {}, level = 'debug') {
  const lines: string[] = [];
  const logger = createLogger('test-svc', level, { ...opts, destination: { write: (line: string) => void lines.push(line) } });
  return {
    logger,
    raw: () => lines.join(''),
    records: () => lines.map((l) => JSON.parse(l) as Record<string, any>),
    last: () => JSON.parse(lines[lines.length - 1]!) as Record<string, any>,
  };
}

// Distinctive values: if any of these shows up anywhere in the output, redaction failed.
const TOKEN = 'EAAGm0PX4ZCpsBAtok3nVALUE';
const APP_SECRET = 'app-secret-c0ffee1234';
const PASSWORD = 'hunter2-pa55word';
const BEARER = 'Bearer EAAGauthHEADERvalue99';
const SIGNATURE = 'sha256=5f1e0bd8c7a6b2deadbeefsignature';
const COOKIE = 'sid=s3ss10ncookievalue';
const EMAIL = 'johnny.walker@example.com';
const PHONE = '+49 170 1234567';
const TEXT = 'my order 4711 never arrived, please call me';
const NAME = 'Zoë Quartermaine';
const FIRST = 'Quintessa';
const USERNAME = 'zoe_q_1987';
const PSID = '7234567890123456';

const RAW_VALUES = [TOKEN, APP_SECRET, PASSWORD, 'EAAGauthHEADERvalue99', '5f1e0bd8c7a6b2deadbeefsignature', 's3ss10ncookievalue', EMAIL, 'johnny', PHONE, '1701234567', TEXT, 'never arrived', NAME, 'Quartermaine', FIRST, USERNAME, PSID];

function expectNoRawValues(output: string): void {
  const leaked = RAW_VALUES.filter((v) => output.includes(v));
  expect(leaked).toEqual([]);
}

/** Every sensitive value under the keys and paths the platform (and its libraries) use. */
function logEverything(logger: ReturnType<typeof capture>['logger']): void {
  // Tokens and secrets under several names and depths.
  logger.info({ token: TOKEN, accessToken: TOKEN, access_token: TOKEN, requestId: 'req-1' }, 'top-level tokens');
  logger.info({ channel: { id: 'ch-1', accessToken: TOKEN, access_token: TOKEN }, graph: { request: { access_token: TOKEN } } }, 'nested tokens');
  logger.info({ config: { META_APP_SECRET: APP_SECRET, META_VERIFY_TOKEN: TOKEN }, secret: APP_SECRET, db: { password: PASSWORD } }, 'secrets');
  logger.info({ url: `https://graph.facebook.com/v23.0/me/messages?access_token=${TOKEN}&fields=id` }, `GET https://graph.facebook.com/v23.0/me?access_token=${TOKEN}`);
  // Credentials in headers, wherever the headers object sits.
  logger.info({ headers: { authorization: BEARER, 'x-hub-signature-256': SIGNATURE, 'x-hub-signature': SIGNATURE, cookie: COOKIE } }, 'headers');
  logger.info({ req: { method: 'POST', headers: { authorization: BEARER, 'x-hub-signature-256': SIGNATURE, 'content-type': 'application/json' } } }, 'req.headers');
  logger.info({ request: { headers: { Authorization: BEARER, 'X-Hub-Signature-256': SIGNATURE } }, res: { headers: { 'set-cookie': [COOKIE] } } }, 'request.headers');
  logger.info({ ctx: { request: { headers: { authorization: BEARER, cookie: COOKIE } } } }, 'ctx.request.headers');
  // Customer PII.
  logger.info({ email: EMAIL, phone: PHONE, name: NAME, text: TEXT }, 'top-level pii');
  logger.info({ customer: { email: EMAIL, phoneNumber: PHONE, firstName: FIRST, lastName: 'Quartermaine', username: USERNAME }, customerName: NAME }, 'customer');
  logger.info({ message: { mid: 'm_1', text: TEXT }, event: { sender: { id: PSID }, message: { text: TEXT } }, customerId: PSID }, 'message');
  logger.info({ profile: { first_name: FIRST, last_name: 'Quartermaine' }, body: { text: TEXT, token: TOKEN } }, 'profile and body');
  logger.child({ customerId: PSID, requestId: 'req-child' }).info('child bindings');
  // Names that only look like credentials, IDs that embed the customer.
  logger.info({ workflowId: `conversation/t-1/ch-1/${PSID}`, channel: { pageToken: TOKEN, dbPassword: PASSWORD }, event: { mid: `postback:${PSID}:1`, dedupeKey: `read:${PSID}:9` } }, 'derived');
  logger.info({ activity: { workflowId: `conversation/t-1/ch-1/${PSID}`, workflowType: 'conversation' }, workflowId: 'keys-rotation/2' }, 'sdk meta');
}

describe('logger: default mode (LOG_PII=off)', () => {
  it('never writes tokens, secrets, credentials headers or customer PII', () => {
    const cap = capture();
    logEverything(cap.logger);
    expectNoRawValues(cap.raw());
  });

  it('replaces the values in place and keeps the rest of the line', () => {
    const cap = capture();
    logEverything(cap.logger);
    const [tokens, nested, secrets, urls, headers, req, request, ctx, pii, customer, message, profile, child, derived, sdk] = cap.records();
    expect(derived).toMatchObject({ workflowId: `conversation/t-1/ch-1/${REDACTED}`, channel: { pageToken: REDACTED, dbPassword: REDACTED }, event: { mid: REDACTED, dedupeKey: REDACTED } });
    expect(sdk).toMatchObject({ activity: { workflowId: `conversation/t-1/ch-1/${REDACTED}`, workflowType: 'conversation' }, workflowId: 'keys-rotation/2' });
    expect(tokens).toMatchObject({ token: REDACTED, accessToken: REDACTED, access_token: REDACTED, requestId: 'req-1', service: 'test-svc', msg: 'top-level tokens' });
    expect(nested).toMatchObject({ channel: { id: 'ch-1', accessToken: REDACTED, access_token: REDACTED }, graph: { request: { access_token: REDACTED } } });
    expect(secrets).toMatchObject({ config: { META_APP_SECRET: REDACTED, META_VERIFY_TOKEN: REDACTED }, secret: REDACTED, db: { password: REDACTED } });
    expect(urls!.url).toBe(`https://graph.facebook.com/v23.0/me/messages?access_token=${REDACTED}&fields=id`);
    expect(urls!.msg).toBe(`GET https://graph.facebook.com/v23.0/me?access_token=${REDACTED}`);
    expect(headers!.headers).toEqual({ authorization: REDACTED, 'x-hub-signature-256': REDACTED, 'x-hub-signature': REDACTED, cookie: REDACTED });
    expect(req!.req).toEqual({ method: 'POST', headers: { authorization: REDACTED, 'x-hub-signature-256': REDACTED, 'content-type': 'application/json' } });
    expect(request).toMatchObject({ request: { headers: { Authorization: REDACTED, 'X-Hub-Signature-256': REDACTED } }, res: { headers: { 'set-cookie': REDACTED } } });
    expect(ctx!.ctx.request.headers).toEqual({ authorization: REDACTED, cookie: REDACTED });
    expect(pii).toMatchObject({ email: REDACTED, phone: REDACTED, name: REDACTED, text: REDACTED });
    expect(customer).toMatchObject({ customer: { email: REDACTED, phoneNumber: REDACTED, firstName: REDACTED, lastName: REDACTED, username: REDACTED }, customerName: REDACTED });
    expect(message).toMatchObject({ message: { mid: REDACTED, text: REDACTED }, event: { sender: { id: REDACTED }, message: { text: REDACTED } }, customerId: REDACTED });
    expect(profile).toMatchObject({ profile: { first_name: REDACTED, last_name: REDACTED }, body: REDACTED });
    expect(child).toMatchObject({ customerId: REDACTED, requestId: 'req-child' });
  });

  it('does not modify the objects it was given', () => {
    const cap = capture();
    const payload = { req: { headers: { authorization: BEARER } }, message: { text: TEXT }, data: { key: Buffer.from('k') } };
    cap.logger.info(payload, 'x');
    expect(payload.req.headers.authorization).toBe(BEARER);
    expect(payload.message.text).toBe(TEXT);
    expect(Buffer.isBuffer(payload.data.key)).toBe(true);
  });

  it('writes binary data as its size, at any depth the censor sees', () => {
    const cap = capture();
    cap.logger.info({ key: Buffer.alloc(32, 7), wrapped: { dataKey: { bytes: new Uint8Array(12) } }, a: { b: { c: Buffer.from('xyz') } } }, 'binary');
    expect(cap.last()).toMatchObject({ key: '[binary: 32 bytes]', wrapped: { dataKey: REDACTED }, a: { b: { c: '[binary: 3 bytes]' } } });
  });

  it('keeps non-sensitive keys and the service name (no top-level `name` field of its own)', () => {
    const cap = capture();
    cap.logger.info({ requestId: 'r', channelId: 'c', routed: 2, nested: { status: 'sent', count: 1 } }, 'ok');
    const rec = cap.last();
    expect(rec).toMatchObject({ service: 'test-svc', requestId: 'r', channelId: 'c', routed: 2, nested: { status: 'sent', count: 1 }, msg: 'ok' });
    expect(rec).not.toHaveProperty('name');
  });
});

describe('logger: masked mode (LOG_PII=masked)', () => {
  it('shows PII masked, never raw', () => {
    const cap = capture({ pii: 'masked' });
    logEverything(cap.logger);
    expectNoRawValues(cap.raw());
    const [, , , , , , , , pii, customer, message, profile, child, derived, sdk] = cap.records();
    expect(derived).toMatchObject({ workflowId: 'conversation/t-1/ch-1/***3456', channel: { pageToken: REDACTED, dbPassword: REDACTED }, event: { mid: '***56:1', dedupeKey: REDACTED } });
    expect(sdk).toMatchObject({ activity: { workflowId: 'conversation/t-1/ch-1/***3456' }, workflowId: 'keys-rotation/2' });
    expect(pii).toMatchObject({ email: 'jo***@example.com', phone: '+49***4567', name: 'Z***', text: `[text: ${TEXT.length} chars]` });
    expect(customer).toMatchObject({ customer: { email: 'jo***@example.com', phoneNumber: '+49***4567', firstName: 'Q***', lastName: 'Q***', username: 'z***' }, customerName: 'Z***' });
    // Exactly one mask per value: a text masked twice would read "[text: 16 chars]".
    expect(message).toMatchObject({ message: { mid: '***', text: `[text: ${TEXT.length} chars]` }, event: { sender: { id: '***3456' }, message: { text: `[text: ${TEXT.length} chars]` } }, customerId: '***3456' });
    expect(profile).toMatchObject({ profile: { first_name: 'Q***', last_name: 'Q***' } });
    expect(child).toMatchObject({ customerId: '***3456' });
  });

  it('still removes tokens, secrets, signatures, cookies and bodies completely', () => {
    const cap = capture({ pii: 'masked' });
    logEverything(cap.logger);
    const [tokens, nested, secrets, urls, headers, req, request, ctx, , , , profile] = cap.records();
    expect(tokens).toMatchObject({ token: REDACTED, accessToken: REDACTED, access_token: REDACTED });
    expect(nested).toMatchObject({ channel: { accessToken: REDACTED, access_token: REDACTED }, graph: { request: { access_token: REDACTED } } });
    expect(secrets).toMatchObject({ config: { META_APP_SECRET: REDACTED, META_VERIFY_TOKEN: REDACTED }, secret: REDACTED, db: { password: REDACTED } });
    expect(urls!.msg).toContain(`access_token=${REDACTED}`);
    expect(headers!.headers).toEqual({ authorization: REDACTED, 'x-hub-signature-256': REDACTED, 'x-hub-signature': REDACTED, cookie: REDACTED });
    expect(req!.req.headers).toMatchObject({ authorization: REDACTED, 'x-hub-signature-256': REDACTED });
    expect(request).toMatchObject({ request: { headers: { Authorization: REDACTED, 'X-Hub-Signature-256': REDACTED } }, res: { headers: { 'set-cookie': REDACTED } } });
    expect(ctx!.ctx.request.headers).toEqual({ authorization: REDACTED, cookie: REDACTED });
    expect(profile!.body).toBe(REDACTED);
  });

  it('does not mask values of other types into something misleading', () => {
    const cap = capture({ pii: 'masked' });
    cap.logger.info({ text: { nested: TEXT }, name: ['a', 'b'], phone: 4917012345678, email: null }, 'odd types');
    expect(cap.last()).toMatchObject({ text: REDACTED, name: REDACTED, phone: '***5678', email: REDACTED });
    expectNoRawValues(cap.raw());
  });
});

describe('logger: errors', () => {
  const savedEnv = process.env.NODE_ENV;
  afterEach(() => {
    process.env.NODE_ENV = savedEnv;
  });

  function failing(): Error {
    const err = new Error('insert failed', { cause: new TypeError('socket closed') }) as Error & { code?: string; detail?: string; table?: string };
    err.code = '23505';
    err.detail = `Key (customer_id)=(${PSID}) already exists.`;
    err.table = 'conversations';
    return err;
  }

  it('keeps type, name, message and code, drops every other field', () => {
    const cap = capture({}, 'info');
    cap.logger.error({ err: failing() }, 'write failed');
    const { err } = cap.last();
    expect(err).toEqual({ type: 'Error', name: 'Error', message: 'insert failed', code: '23505', cause: { type: 'TypeError', name: 'TypeError', message: 'socket closed' } });
    expect(cap.raw()).not.toContain(PSID);
  });

  it('keeps a Temporal-style failure type and an error logged on its own', () => {
    const cap = capture({}, 'info');
    class ApplicationFailure extends Error {
      override name = 'ApplicationFailure';
      constructor(readonly type: string) {
        super('send failed');
      }
    }
    cap.logger.warn(new ApplicationFailure('GraphAuthExpired'));
    expect(cap.last()).toMatchObject({ err: { type: 'GraphAuthExpired', name: 'ApplicationFailure', message: 'send failed' }, msg: 'send failed' });
  });

  it('includes the stack only at debug level outside production', () => {
    process.env.NODE_ENV = 'test';
    const info = capture({}, 'info');
    info.logger.error({ err: failing() }, 'x');
    expect(info.last().err).not.toHaveProperty('stack');

    const debug = capture({}, 'debug');
    debug.logger.error({ err: failing() }, 'x');
    expect(debug.last().err.stack).toContain('insert failed');

    process.env.NODE_ENV = 'production';
    const prod = capture({}, 'trace');
    prod.logger.error({ err: failing() }, 'x');
    expect(prod.last().err).not.toHaveProperty('stack');
    expect(prod.last().err.cause).not.toHaveProperty('stack');
    expect(prod.raw()).not.toContain('    at ');
  });

  it('reduces a plain object under err to the same fields', () => {
    const cap = capture();
    cap.logger.error({ err: { name: 'GraphApiError', message: 'HTTP 400', code: 100, accessToken: TOKEN, config: { headers: { authorization: BEARER } } } }, 'x');
    expect(cap.last().err).toEqual({ type: 'GraphApiError', name: 'GraphApiError', message: 'HTTP 400', code: 100 });
    expectNoRawValues(cap.raw());
  });
});

describe('createLogger signature', () => {
  it('still works with (name) and (name, level)', () => {
    expect(createLogger('a').level).toBe(process.env.LOG_LEVEL ?? 'info');
    expect(createLogger('b', 'warn').level).toBe('warn');
    expect(createLogger('c', undefined, { pii: 'masked', destination: { write: () => undefined } }).level).toBe(process.env.LOG_LEVEL ?? 'info');
  });
});

describe('pii masks', () => {
  it('maskEmail keeps two characters of the local part and the domain', () => {
    expect(maskEmail('john.doe@example.com')).toBe('jo***@example.com');
    expect(maskEmail('  Mary@Example.org ')).toBe('Ma***@Example.org');
    // Short local parts never show completely.
    expect(maskEmail('jo@example.com')).toBe('j***@example.com');
    expect(maskEmail('a@example.com')).toBe('***@example.com');
    expect(maskEmail('@example.com')).toBe('***@example.com');
    // Unicode local parts count characters, not UTF-16 units.
    expect(maskEmail('𝒥ürgen@example.de')).toBe('𝒥ü***@example.de');
    // The last @ separates the domain.
    expect(maskEmail('"a@b"@example.com')).toBe('"a***@example.com');
    expect(maskEmail('not-an-email')).toBe('***');
    expect(maskEmail('')).toBe('***');
  });

  it('maskPhone keeps the + prefix as typed and the last 4 digits', () => {
    expect(maskPhone('+49 170 1234567')).toBe('+49***4567');
    expect(maskPhone('+4917012341234')).toBe('+49***1234');
    expect(maskPhone('+1 (415) 555-0100')).toBe('+1***0100');
    // Without + there is no prefix.
    expect(maskPhone('0170 1234567')).toBe('***4567');
    expect(maskPhone('004917012341234')).toBe('***1234');
    // Too short to show a tail without showing most of the number.
    expect(maskPhone('+49 12345')).toBe('+49***');
    expect(maskPhone('112')).toBe('***');
    expect(maskPhone('')).toBe('***');
    expect(maskPhone('call me')).toBe('***');
  });

  it('maskName keeps the first character, whatever the script', () => {
    expect(maskName('Alice Smith')).toBe('A***');
    expect(maskName('Łukasz')).toBe('Ł***');
    expect(maskName('Zoë')).toBe('Z***');
    expect(maskName('张伟')).toBe('张***');
    expect(maskName('Ölçü')).toBe('Ö***');
    // A decomposed accent and an emoji sequence stay whole.
    expect(maskName('E\u0301mile')).toBe('E\u0301***');
    expect(maskName('👩‍👩‍👧 Family')).toBe('👩‍👩‍👧***');
    expect(maskName('  bob')).toBe('b***');
    expect(maskName('')).toBe('***');
  });

  it('maskText gives the length in characters only', () => {
    expect(maskText('hello')).toBe('[text: 5 chars]');
    expect(maskText('')).toBe('[text: 0 chars]');
    expect(maskText('héllo 👋')).toBe('[text: 7 chars]');
  });

  it('maskId keeps the last 4 characters of long IDs only', () => {
    expect(maskId('7234567890123456')).toBe('***3456');
    expect(maskId('123456')).toBe('***');
    // Masking a masked ID changes nothing (the logger may apply it twice to `sender.id`).
    expect(maskId(maskId('7234567890123456'))).toBe('***3456');
  });
});

describe('logging never touches what it is given', () => {
  it('logs a Temporal failure (read-only name) without throwing or changing it', () => {
    // The worker logs failed activities with the error under `error`; a throw there turned a
    // non-retryable failure into a retried TypeError.
    const failure = ApplicationFailure.create({ message: 'boom', type: 'GraphAuthExpired', nonRetryable: true, details: [{ code: 190 }] });
    const lines: string[] = [];
    const logger = createLogger('t', 'debug', { destination: { write: (l: string) => void lines.push(l) } });
    expect(() => logger.warn({ error: failure, nested: { err: new TypeError('inner') } }, 'Activity failed')).not.toThrow();
    expect(failure.nonRetryable).toBe(true);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(Object.keys(failure)).toEqual(expect.arrayContaining(['type', 'nonRetryable', 'details']));
    const line = JSON.parse(lines[0]!) as { error: { type: string; name: string; message: string } };
    expect(line.error).toMatchObject({ type: 'GraphAuthExpired', name: 'ApplicationFailure', message: 'boom' });
  });
});
