-- Measured reputation (issue 16): per node, decayed sums of what the network observed of its attempts, as of
-- `as_of`. A flush adds its delta after decaying the stored sums to now (2^(-elapsed/half-life) per family:
-- outcomes 6 h, speed 1 h, validity 24 h; see src/modules/nodes/reputation.ts), so flushes of several
-- processes add up in any order. `attempts` is not decayed (probation counts attempts ever observed).
-- score/probation: the derived values last mirrored into the Redis matchmaking score.
create table node_reputation (
  node_address text primary key references nodes(address),
  as_of timestamptz not null,
  attempts bigint not null default 0 check (attempts >= 0),
  ok double precision not null default 0,
  fail_error double precision not null default 0,
  fail_timeout double precision not null default 0,
  fail_disconnect double precision not null default 0,
  latency_sum_ms double precision not null default 0,
  latency_n double precision not null default 0,
  tokens double precision not null default 0,
  token_seconds double precision not null default 0,
  valid_ok double precision not null default 0,
  valid_n double precision not null default 0,
  score integer not null check (score between 0 and 10000),
  probation boolean not null,
  updated_at timestamptz not null default now()
);
