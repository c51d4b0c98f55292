-- Lane registry of the routing layer: one row per RabbitMQ lane queue (routing class x namespace), so that a
-- consumer starting later finds every lane that may hold jobs (the broker cannot list queues without the
-- management plugin). Rows of lanes the broker has removed (x-expires) are pruned by the routing layer.
create table routing_lanes (
  queue_name text primary key,
  environment text not null,
  model text not null,
  priority text not null check (priority in ('urgent', 'bulk', 'test')),
  subcloud text not null,
  namespace_id uuid not null,
  created_at timestamptz not null default now(),
  last_published_at timestamptz not null default now()
);
create index routing_lanes_class_idx on routing_lanes (environment, model, subcloud);
