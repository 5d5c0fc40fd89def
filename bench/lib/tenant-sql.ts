import type { Pool, QueryResult, QueryResultRow } from 'pg';
import { withTenant } from '../../src/db/tenant-scope';

/** What the benchmark's read-back queries need: each runs alone in the bench tenant's scope (row-level security). */
export interface Sql {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

export function tenantSql(pool: Pool, tenantId: string): Sql {
  return { query: <R extends QueryResultRow>(text: string, values?: unknown[]) => withTenant(pool, tenantId, (tx) => tx.query<R>(text, values)) };
}
