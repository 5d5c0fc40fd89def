import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { simpleParser, type AddressObject } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/**
 * A local SMTP server that accepts every message (no AUTH, no TLS) and keeps the parsed mail in
 * memory: the embedded default's and the tests' stand-in for a real mail provider, so the
 * notification path runs over real SMTP end to end. Bind it to 127.0.0.1 only: it is an open relay
 * into a bucket. An optional HTTP view (`GET /messages`, JSON) lets a developer read what was sent.
 */

export interface CapturedMail {
  /** Envelope sender and recipients, as the SMTP client gave them. */
  envelope: { from: string | null; to: string[] };
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  messageId: string | null;
  receivedAt: Date;
}

export interface SmtpCapture {
  /** `smtp://127.0.0.1:PORT`: what `SMTP_URL` is set to. */
  url: string;
  port: number;
  /** `http://127.0.0.1:PORT/messages`, when the HTTP view was asked for. */
  httpUrl: string | null;
  /** Captured messages, oldest first (a copy). */
  messages(): CapturedMail[];
  /** The first captured message (already there or arriving) that matches; rejects after `timeoutMs`. */
  waitFor(predicate: (mail: CapturedMail) => boolean, timeoutMs?: number): Promise<CapturedMail>;
  clear(): void;
  close(): Promise<void>;
}

export interface SmtpCaptureOptions {
  host?: string;
  /** 0 (default): any free port. */
  port?: number;
  /** Messages kept; the oldest go first (default 500). */
  max?: number;
  /** Largest message accepted, bytes (default 5 MiB). */
  maxBytes?: number;
  /** Start the JSON view on this port (0: any free one); omitted: no HTTP view. */
  httpPort?: number;
}

const addresses = (value: AddressObject | AddressObject[] | undefined): string[] =>
  (Array.isArray(value) ? value : value ? [value] : []).flatMap((a) => a.value.map((v) => v.address ?? '').filter(Boolean));

export async function startSmtpCapture(opts: SmtpCaptureOptions = {}): Promise<SmtpCapture> {
  const host = opts.host ?? '127.0.0.1';
  const max = opts.max ?? 500;
  const maxBytes = opts.maxBytes ?? 5 * 1024 * 1024;
  const store: CapturedMail[] = [];
  const waiters = new Set<{ predicate: (m: CapturedMail) => boolean; resolve: (m: CapturedMail) => void }>();

  const keep = (mail: CapturedMail) => {
    store.push(mail);
    while (store.length > max) store.shift();
    for (const w of [...waiters]) {
      if (w.predicate(mail)) {
        waiters.delete(w);
        w.resolve(mail);
      }
    }
  };

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    size: maxBytes,
    logger: false,
    banner: 'Switchboard mail capture',
    // A client that never says QUIT must not hold close() for the default 30 s.
    closeTimeout: 1000,
    onData(stream, session, callback) {
      simpleParser(stream, { skipImageLinks: true, skipTextLinks: true }).then(
        (parsed) => {
          keep({
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
              to: session.envelope.rcptTo.map((r) => r.address),
            },
            from: addresses(parsed.from)[0] ?? '',
            to: addresses(parsed.to),
            subject: parsed.subject ?? '',
            text: parsed.text ?? '',
            html: typeof parsed.html === 'string' ? parsed.html : '',
            messageId: parsed.messageId ?? null,
            receivedAt: new Date(),
          });
          callback();
        },
        (err: Error) => callback(err),
      );
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;

  let http: HttpServer | null = null;
  let httpUrl: string | null = null;
  if (opts.httpPort !== undefined) {
    http = createHttpServer((req, res) => {
      if (req.method === 'GET' && (req.url === '/messages' || req.url === '/')) {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ messages: [...store].reverse() }, null, 2));
        return;
      }
      if (req.method === 'DELETE' && req.url === '/messages') {
        store.length = 0;
        res.writeHead(204).end();
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"GET /messages"}');
    });
    await new Promise<void>((resolve, reject) => {
      http!.once('error', reject);
      http!.listen(opts.httpPort, host, () => resolve());
    });
    httpUrl = `http://${host}:${(http.address() as AddressInfo).port}/messages`;
  }

  return {
    url: `smtp://${host}:${port}`,
    port,
    httpUrl,
    messages: () => [...store],
    waitFor(predicate, timeoutMs = 20_000) {
      const found = store.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise<CapturedMail>((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (m: CapturedMail) => {
            clearTimeout(timer);
            resolve(m);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching mail within ${timeoutMs} ms (${store.length} captured)`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    clear() {
      store.length = 0;
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (http) {
        http.closeAllConnections();
        await new Promise<void>((resolve) => http!.close(() => resolve()));
      }
    },
  };
}
