// `rty migrate` (rabbitmq step) and `rty queue ...` against a vhost and schema of their own.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createAmqpTestVhost, type AmqpTestVhost } from '../../../test/amqp-harness.js';
import { makeJob, routingOptionsFor, waitFor } from '../../../test/routing-fixtures.js';
import { laneKeyOf, RoutingService } from '../../modules/routing/index.js';

import { laneQueueName } from '../../stores/rabbitmq/topology.js';
import { buildProgram } from '../program.js';

let db: PgTestSchema;
let vhost: AmqpTestVhost;

beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 2 });
  vhost = await createAmqpTestVhost();
});
afterAll(async () => {
  await vhost?.drop();
  await db?.drop();
});

async function rty(...args: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  let code = 0;
  const config = Object.freeze({ ...db.config, AMQP_URL: vhost.url });
  await buildProgram({ config, log: testLog, out: (l) => lines.push(l) }, (c) => (code = c)).parseAsync([
    'node',
    'rty',
    ...args,
  ]);
  return { code, lines };
}

it('migrate asserts the topology; queue health, quarantine list, replay and purge work end to end', async () => {
  const migrated = await rty('migrate');
  expect(migrated.lines).toContain('rabbitmq: topology asserted (9 exchanges, 8 queues)');
  expect((await rty('migrate')).code).toBe(0); // idempotent

  // Two jobs that always fail end in quarantine.
  const routing = new RoutingService({
    pool: db.pool,
    log: testLog,
    options: routingOptionsFor(vhost.url, { ROUTING_RETRY_DELAYS_MS: '50', ROUTING_MAX_ATTEMPTS: 1 }),
  });
  await routing.start();
  const jobs = [makeJob({ model: 'cli-model' }), makeJob({ model: 'cli-model' })];
  const consumer = await routing.startConsumer({
    serves: [{ environment: 'testnet', model: 'cli-model' }],
    handler: async () => ({ kind: 'failed', reason: 'node vanished' }),
  });
  await routing.submitMany(jobs);
  await waitFor('quarantined', async () => (await routing.health()).quarantineSize === 2);
  await consumer.stop();

  const health = await rty('queue', 'health');
  expect(health.code).toBe(0);
  expect(health.lines).toContain('quarantine: 2');
  expect(health.lines.some((l) => l.startsWith('rty.lane.testnet.cli-model.bulk._.'))).toBe(true);

  const list = await rty('queue', 'quarantine', 'list');
  expect(list.lines.filter((l) => l.includes('reason="node vanished"'))).toHaveLength(2);

  expect((await rty('queue', 'quarantine', 'purge')).code).toBe(2); // needs --job or --all
  const purge = await rty('queue', 'quarantine', 'purge', '--job', jobs[0]!.jobId);
  expect(purge.lines).toContain('purged 1 job(s)');
  const replay = await rty('queue', 'quarantine', 'replay', '--all');
  expect(replay.lines).toContain('replayed 1 job(s)');
  expect((await routing.health()).quarantineSize).toBe(0);
  const laneOfReplayed = laneQueueName(laneKeyOf(jobs[1]!));
  const lane = (await routing.health()).queues.find((q) => q.queue === laneOfReplayed);
  expect(lane?.messages).toBe(1); // the replayed job waits in its lane
  // Nothing is idle long enough (ROUTING_LANE_IDLE_MS default 10 min): nothing pruned.
  expect((await rty('queue', 'prune')).lines).toContain('pruned 0 idle lane(s)');
  await routing.stop();
});
