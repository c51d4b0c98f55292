// Routing test fixtures: job messages, routing options for a test vhost, and a PostgreSQL outcome table whose
// commit is what a consumer acks after (dedup by job id, as the jobs module does).
import { randomUUID } from 'node:crypto';
import type { Config } from '../src/config/config.js';
import {
  routingOptionsFromConfig,
  type JobMessage,
  type RoutingOptions,
} from '../src/modules/routing/index.js';
import { withTransaction, type Pool } from '../src/stores/postgres/pool.js';
import { baseConfig } from './harness.js';

export function routingOptionsFor(
  amqpUrl: string,
  overrides: Partial<Config> = {},
  name = 'test',
): RoutingOptions {
  return routingOptionsFromConfig({ ...baseConfig, AMQP_URL: amqpUrl, ...overrides }, name);
}

export function makeJob(over: Partial<JobMessage> = {}): JobMessage {
  return {
    v: 1,
    jobId: randomUUID(),
    namespaceId: randomUUID(),
    model: 'llama-3-8b',
    environment: 'testnet',
    priority: 'bulk',
    subcloud: null,
    attempt: 0,
    excludedNodeIds: [],
    failures: [],
    enqueuedAt: new Date().toISOString(),
    ttlMs: 10 * 60_000,
    ...over,
  };
}

export async function createOutcomeTable(pool: Pool): Promise<void> {
  await pool.query(
    `create table if not exists test_outcomes (
       job_id uuid primary key, handled integer not null default 1, committed_at timestamptz not null default clock_timestamp())`,
  );
}

/**
 * Commits the outcome of a job once (dedup by job id); `between` runs inside the transaction, after the
 * write and before the commit. Returns true when this call was the first.
 */
export async function commitOutcome(
  pool: Pool,
  jobId: string,
  between?: () => Promise<void>,
): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    const r = await tx.query(
      'insert into test_outcomes (job_id) values ($1) on conflict (job_id) do nothing',
      [jobId],
    );
    if (between) await between();
    return (r.rowCount ?? 0) === 1;
  });
}

export async function countOutcomes(pool: Pool): Promise<number> {
  const r = await pool.query<{ n: number }>('select count(*)::int as n from test_outcomes');
  return r.rows[0]!.n;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; throws after `timeoutMs` with `what` (bounded waits only). */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** A promise with its resolve handle (a gate a test opens). */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
