import pino, { type Logger } from 'pino';

/**
 * Redaction is on by default: an access token, a secret, a signature or a customer's words in a
 * log line is an incident. Code logs IDs and outcomes; these paths catch the accidents.
 */
export const REDACT_PATHS = [
  'accessToken',
  'access_token',
  '*.accessToken',
  '*.access_token',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'password',
  '*.password',
  'text',
  '*.text',
  'body',
  '*.body',
  'headers.authorization',
  'headers["x-hub-signature"]',
  'headers["x-hub-signature-256"]',
  'req.headers.authorization',
  'req.headers["x-hub-signature"]',
  'req.headers["x-hub-signature-256"]',
];

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
  });
}

export type { Logger };
