-- Envelope encryption (src/crypto/vault.ts): each tenant's secrets are encrypted with a random
-- per-tenant data key, stored here wrapped by a versioned master key. Deleting a tenant's rows
-- here destroys its data (crypto-shredding): the ciphertexts elsewhere become noise.

CREATE TABLE tenant_data_keys (
  tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version             integer NOT NULL CHECK (version >= 1),
  master_key_version  integer NOT NULL CHECK (master_key_version >= 1),
  -- format 0x01 ‖ master key version (u32) ‖ nonce ‖ wrapped key ‖ tag; AAD binds tenant + versions.
  wrapped_key         bytea NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  rewrapped_at        timestamptz,
  -- Set when a newer data key takes over new writes; the old one still decrypts until re-encryption ends.
  superseded_at       timestamptz,
  encryptions         bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, version)
);
CREATE INDEX tenant_data_keys_master_version_idx ON tenant_data_keys (master_key_version);

-- Master key versions an operator retired (refused while any data key is still wrapped by one).
CREATE TABLE retired_master_keys (
  version     integer PRIMARY KEY,
  retired_at  timestamptz NOT NULL DEFAULT now()
);

-- Every decrypt of a secret, counted per tenant, purpose and day (consumed by the audit trail).
CREATE TABLE secret_decrypts (
  tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  purpose    text NOT NULL,
  day        date NOT NULL,
  count      bigint NOT NULL DEFAULT 0,
  last_at    timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, purpose, day)
);

-- Which data key version encrypted the token (mirrors the ciphertext header, for keys:status).
ALTER TABLE channels ADD COLUMN token_key_version integer;
