-- Database-level guards for the ledger: at most one closing entry per hold, no TRUNCATE of entries,
-- and holds are never deleted.

create unique index ledger_entries_one_close_per_job on ledger_entries (job_id)
  where kind in ('settle', 'void', 'hold_expire');

create trigger ledger_entries_no_truncate before truncate on ledger_entries
  for each statement execute function ledger_entries_append_only();

create or replace function credit_holds_no_delete() returns trigger language plpgsql as $$
begin
  raise exception 'credit_holds rows are never deleted (% refused)', tg_op using errcode = 'P0001';
end $$;
create trigger credit_holds_no_delete before delete on credit_holds
  for each row execute function credit_holds_no_delete();
create trigger credit_holds_no_truncate before truncate on credit_holds
  for each statement execute function credit_holds_no_delete();
