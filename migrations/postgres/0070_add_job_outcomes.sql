-- The job path's durable outcome and crash-recovery markers.
-- jobs.published: false from the submit transaction until the broker confirmed the job message (marked in
-- batches); a queued job still unpublished seconds later was lost between commit and publish and is refunded.
-- Existing rows were published by the code that wrote them.
alter table jobs add column published boolean not null default true;
-- request_hash: SHA-256 (hex) of the request body of a job submitted with an Idempotency-Key; a replay of the
-- key with another body is refused (409 idempotency_conflict). Null for jobs without a key.
alter table jobs add column request_hash text;
create index jobs_unpublished_idx on jobs (created_at) where not published and status = 'queued';

-- One compact result per finished job, written in the finish transaction (with the settle or void and the
-- terminal row): what a sync waiter, a poller or an Idempotency-Key replay needs when Redis has lost it.
-- recorded: false until the job's record events were confirmed on the record stream (the outbox flag).
create table job_results (
  job_id uuid primary key,
  namespace_id uuid not null,
  created_at timestamptz not null,
  finished_at timestamptz not null default now(),
  status text not null check (status in ('succeeded', 'failed', 'expired', 'cancelled')),
  result jsonb not null,
  recorded boolean not null default false
);
create index job_results_unrecorded_idx on job_results (finished_at) where not recorded;
create index job_results_namespace_idx on job_results (namespace_id, finished_at);
