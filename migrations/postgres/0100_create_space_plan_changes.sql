-- Space plans as a product (issue 18): every plan choice, change or cancellation by its caller's idempotency key.
-- A retried request finds its row and changes nothing; the first day on a paid plan is charged with the change
-- (ledger idem key `space-plan:<idem_key>`), in the same transaction as this row and its audit entry.
create table space_plan_changes (
  id uuid primary key,
  namespace_id uuid not null references namespaces(id),
  idem_key text not null,
  action text not null check (action in ('set', 'cancel')),
  from_plan text not null,
  to_plan text not null,
  retention_days integer not null check (retention_days between 1 and 3650),
  day date not null,
  charged_micro bigint not null check (charged_micro >= 0),
  actor text not null,
  created_at timestamptz not null default now(),
  unique (namespace_id, idem_key)
);
