import type { Connection } from '@temporalio/client';
import { SearchAttributeType } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { CUSTOM_SEARCH_ATTRIBUTES } from './search-attributes';

/**
 * Registers Switchboard's custom search attributes that a namespace lacks. The dev server's
 * `--search-attribute` flags apply only when its database is created, so a `.data/` from before a
 * new attribute existed would otherwise fail every workflow task that sets it. Idempotent.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set([...Object.keys(existing.customAttributes ?? {}), ...Object.keys(existing.systemAttributes ?? {})]);
  const missing = CUSTOM_SEARCH_ATTRIBUTES.filter((key) => !known.has(key.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(
      missing.map((key) => {
        if (key.type !== SearchAttributeType.KEYWORD) throw new Error(`search attribute ${key.name}: only Keyword attributes are registered here`);
        return [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD];
      }),
    ),
  });
  return missing.map((key) => key.name);
}
