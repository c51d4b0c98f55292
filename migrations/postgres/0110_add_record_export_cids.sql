-- Record exports are content-addressed (issue 18): the file DAG CID of each export file is in `files`, the manifest's
-- here; `snapshot_seq` is the chain position of the first recorded snapshot whose `record_exports` section lists the
-- run (null until one does: the next snapshot lists every exported run that no earlier one listed).
alter table retention_runs add column manifest_cid text;
alter table retention_runs add column snapshot_seq int;
create index retention_runs_unreferenced_idx on retention_runs (id) where snapshot_seq is null and manifest_cid is not null;
