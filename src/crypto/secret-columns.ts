/**
 * Every column that holds a vault-encrypted secret. Rotation re-encrypts these, `keys:status`
 * counts them, and the data classification test expects them to be `bytea`. Each table has `id`
 * and `tenant_id` columns; `aadColumn` is the logical name bound into the ciphertext's AAD.
 */
export interface SecretColumn {
  table: string;
  column: string;
  aadColumn: string;
  keyVersionColumn: string;
}

export const SECRET_COLUMNS: readonly SecretColumn[] = [
  { table: 'channels', column: 'access_token_ciphertext', aadColumn: 'access_token', keyVersionColumn: 'token_key_version' },
  { table: 'tenant_settings', column: 'llm_api_key_ciphertext', aadColumn: 'llm_api_key', keyVersionColumn: 'llm_api_key_version' },
  { table: 'tenant_settings', column: 'notify_webhook_secret_ciphertext', aadColumn: 'notify_webhook_secret', keyVersionColumn: 'notify_webhook_secret_version' },
];
