import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';

export interface TemporalClientOptions {
  address: string;
  namespace: string;
  /** Every client encrypts payloads (src/temporal/payload-codec.ts); only bare benchmarks omit it. */
  dataConverter: DataConverter | undefined;
}

/**
 * A lazy connection: the gateway starts (and answers /healthz) even while Temporal is down;
 * calls made meanwhile fail fast and the webhook answers 503 so Meta redelivers.
 */
export function createTemporalClient(opts: TemporalClientOptions): { client: Client; connection: Connection } {
  const connection = Connection.lazy({ address: opts.address });
  const client = new Client({ connection, namespace: opts.namespace, ...(opts.dataConverter && { dataConverter: opts.dataConverter }) });
  return { client, connection };
}

/** Runs a Temporal call with a deadline, so a hung server cannot hold a webhook past Meta's 5 s. */
export function withTemporalDeadline<T>(connection: Connection, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  return connection.withDeadline(Date.now() + timeoutMs, fn);
}
