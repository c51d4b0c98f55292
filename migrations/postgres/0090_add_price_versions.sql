-- Per-model prices (issue 13): each job records the network config version whose price table priced it (its
-- reservation and its charge; null: a job from before prices, at the flat PRICE_PER_TOKEN_MICRO), and a day's
-- job rollups are kept apart per price version, so that a rollup row's credits are one table's prices applied
-- to its tokens (0: jobs from before prices, or priced while no config was published).
alter table jobs add column price_version integer check (price_version >= 0);

alter table job_rollups add column price_version integer not null default 0 check (price_version >= 0);
alter table job_rollups drop constraint job_rollups_pkey;
alter table job_rollups add primary key (day, namespace_id, model, node_address, status, price_version);
