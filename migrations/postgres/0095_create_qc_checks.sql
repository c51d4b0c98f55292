-- Spot-check verification (issue 16): one row per checked job, and the ledger entry kinds that settle a check.
--
-- New entry kinds (all node- or namespace-scoped like the others, so the owner check stays):
--   refund            namespace: a settled job's charge given back after its node was found wrong (job_id, once)
--   earning_reversal  node: the earning (or network-paid QC earning) of a job its node was found wrong on
--   network_expense   node: what the network pays a node for a blind copy (the consumer never pays for it)
--   forfeit           node: held-back earnings lost when the node is shadow-banned for repeated failed checks
alter table ledger_entries drop constraint ledger_entries_kind_check;
alter table ledger_entries add constraint ledger_entries_kind_check check (kind in (
  'topup', 'bonus', 'bonus_expire', 'reserve', 'settle', 'release', 'void', 'hold_expire',
  'storage_charge', 'earning', 'payout', 'refund', 'earning_reversal', 'network_expense', 'forfeit'));
-- At most one refund per job, whatever its idempotency key.
create unique index ledger_entries_one_refund_per_job on ledger_entries (job_id) where kind = 'refund';

-- The verdict of one spot check, keyed by the original job: inserting it is the check's idempotency key (a
-- replayed or duplicated outcome finds the row and changes nothing). Nodes are the lease holders of the original
-- (a), its blind copy (b) and the tie-break (c, only after a disagreement). wrong_node: the node found wrong
-- (null when the copies agreed or the check was inconclusive).
create table qc_checks (
  job_id uuid primary key,
  namespace_id uuid not null references namespaces(id),
  model text not null,
  environment text not null check (environment in ('testnet', 'mainnet')),
  rule text not null check (rule in ('exact', 'similarity')),
  verdict text not null check (verdict in ('agreed', 'original_wrong', 'blind_wrong', 'inconclusive')),
  node_a text not null,
  node_b text not null,
  node_c text,
  blind_job_id uuid not null,
  tie_job_id uuid,
  wrong_node text,
  similarity double precision,
  decided_at timestamptz not null default now()
);
create index qc_checks_wrong_idx on qc_checks (wrong_node, decided_at) where wrong_node is not null;
create index qc_checks_decided_idx on qc_checks (decided_at);
