-- Account-scoped tokens of the Gate API. The token is never stored: only a public prefix (lookup) and a
-- peppered SHA-256 (HMAC with API_KEY_PEPPER) of its 256-bit secret.
create table account_tokens (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null references accounts(id),
  prefix text not null unique,
  secret_hash bytea not null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
create index account_tokens_account_idx on account_tokens (account_id);
