import http from 'node:http';

/** A small keep-alive HTTP poster: cheaper per request than fetch, so the load generator takes less of the shared CPU. */

export type PostOutcome =
  | { kind: 'status'; status: number }
  | { kind: 'timeout' }
  | { kind: 'network'; message: string };

export class WebhookPoster {
  private readonly agent: http.Agent;
  private readonly url: URL;

  constructor(baseUrl: string, path: string, maxSockets: number, private readonly timeoutMs: number) {
    this.url = new URL(path, baseUrl);
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  post(body: Buffer, headers: Record<string, string>): Promise<PostOutcome> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (o: PostOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      const req = http.request(
        {
          hostname: this.url.hostname,
          port: this.url.port,
          path: this.url.pathname,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers },
        },
        (res) => {
          res.resume(); // the body ("EVENT_RECEIVED" or a JSON error) is not needed
          res.on('end', () => done({ kind: 'status', status: res.statusCode ?? 0 }));
          res.on('error', (err) => done({ kind: 'network', message: err.message }));
        },
      );
      // Whole-request deadline (not a socket idle timeout): counts from the moment we hand it over.
      const timer = setTimeout(() => {
        done({ kind: 'timeout' });
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err) => done({ kind: 'network', message: err.message }));
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** JSON GET/POST/DELETE against a local control endpoint (the sandbox), with a deadline. */
export async function controlRequest<T>(url: string, method: 'GET' | 'POST' | 'DELETE', timeoutMs = 30_000, body?: unknown): Promise<T | undefined> {
  const res = await fetch(url, {
    method,
    signal: AbortSignal.timeout(timeoutMs),
    ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status} ${await res.text()}`);
  if (res.status === 204) return undefined;
  return (await res.json()) as T;
}
