import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { AuditActorType } from './types';

/**
 * The audit chain's hash, format v1 (docs/security.md, "Audit trail"):
 *
 *   hash = SHA-256(prev_hash ‖ UTF-8(JCS(row)))
 *
 * where prev_hash is the previous event's hash in the same chain (32 zero bytes for the first
 * event, or the anchor's hash after a retention purge) and JCS is RFC 8785 canonical JSON (the
 * maintained `canonicalize` package: sorted keys, ECMAScript number formatting, no whitespace) of
 * exactly the fields of `HashedAuditRow`, absent values as `null`. Everything hashed is stored as
 * is in `audit_events` and reads back identically:
 *  - occurredAt: ISO-8601 UTC with milliseconds (`2025-01-02T03:04:05.678Z`); PostgreSQL keeps
 *    microseconds, so a millisecond value round-trips exactly;
 *  - tenantId: lower-case UUID text (what PostgreSQL's uuid type prints);
 *  - details: plain JSON made by src/audit/details.ts (no undefined, no NaN/Infinity, no lone
 *    surrogates or U+0000, integers beyond 2^53 turned into strings). jsonb reorders keys and
 *    rewrites number spellings, but JCS sorts keys itself and a finite JS number printed to jsonb
 *    and parsed back is the same double, so JCS gives the same text before and after storage.
 */

export const AUDIT_HASH_BYTES = 32;
export const ZERO_HASH: Buffer = Buffer.alloc(AUDIT_HASH_BYTES);

export interface HashedAuditRow {
  chainId: string;
  seq: number;
  tenantId: string | null;
  occurredAt: string;
  actorType: AuditActorType;
  actorId: string | null;
  action: string;
  resource: string | null;
  outcome: 'success' | 'failure';
  reason: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

/** The exact field list hashed, in a fixed object (extra properties of `row` are ignored). */
export function hashedFields(row: HashedAuditRow): HashedAuditRow {
  return {
    chainId: row.chainId,
    seq: row.seq,
    tenantId: row.tenantId,
    occurredAt: row.occurredAt,
    actorType: row.actorType,
    actorId: row.actorId,
    action: row.action,
    resource: row.resource,
    outcome: row.outcome,
    reason: row.reason,
    ip: row.ip,
    userAgent: row.userAgent,
    requestId: row.requestId,
    details: row.details,
  };
}

/** RFC 8785 canonical JSON of any JSON value (throws on NaN, Infinity, lone surrogates, cycles). */
export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return text;
}

export function canonicalAuditRow(row: HashedAuditRow): string {
  return jcs(hashedFields(row));
}

export function computeAuditHash(prevHash: Buffer, row: HashedAuditRow): Buffer {
  if (prevHash.length !== AUDIT_HASH_BYTES) throw new RangeError(`prev_hash must be ${AUDIT_HASH_BYTES} bytes`);
  return createHash('sha256').update(prevHash).update(canonicalAuditRow(row), 'utf8').digest();
}

/** A Date as hashed: ISO-8601 UTC, milliseconds (JS dates have no finer precision). */
export function isoMillis(date: Date): string {
  return date.toISOString();
}
