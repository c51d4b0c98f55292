// Quorum queues end to end on the real broker (a one-node quorum queue is still a Raft queue, with the same
// arguments and dead-lettering as in a cluster): jobs run through quorum lanes, a failed attempt comes back
// through a quorum retry tier and an unserved job through the quorum expiry path (both dead-lettered
// at-least-once); and an AMQP_URL list whose first broker is down connects to the next.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import {
  fundedNamespace,
  gatewayOverrides,
  newAgent,
  settleCount,
  startBoundAgents,
  submitChat,
  waitTerminal,
} from '../../../test/gateway-harness.js';
import type { NodeAgent } from '../../agent/node-agent.js';
import type { RunningServer } from '../../app/serve.js';

let stores: TestStores;
let server: RunningServer;
let agents: NodeAgent[] = [];
/** Jobs whose first delivery the node fails (prompt starting with `retry`). */
const failedOnce = new Set<string>();

beforeAll(async () => {
  stores = await createTestStores();
  const url = stores.vhost.url;
  const down = url.replace(/:(\d+)\//, ':1/'); // nothing listens on port 1: refused at once
  expect(down).not.toBe(url);
  server = await startTestServer(stores, {
    overrides: {
      ...gatewayOverrides,
      AMQP_URL: `${down},${url}`,
      AMQP_QUEUE_TYPE: 'quorum',
      ROUTING_RETRY_DELAYS_MS: '200',
    },
  });
  const failFirst = async (job: { jobId: string; request: { body: Record<string, unknown> } }) => {
    const messages = job.request.body.messages as Array<{ content?: string }> | undefined;
    if (messages?.[0]?.content?.startsWith('retry') && !failedOnce.has(job.jobId)) {
      failedOnce.add(job.jobId);
      throw new Error('first delivery refused by the test node');
    }
  };
  agents = [newAgent(server, { beforeRun: failFirst }), newAgent(server, { beforeRun: failFirst })];
  await startBoundAgents(server.backbone, agents);
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
  await stores?.drop();
});

describe('quorum lanes, retry tiers and expiry (AMQP_QUEUE_TYPE=quorum)', () => {
  it('jobs complete through quorum lanes; the lanes are quorum queues', async () => {
    const b = server.backbone;
    const ns = await fundedNamespace(b);
    const ids = await Promise.all([0, 1, 2, 3].map((i) => submitChat(b, ns, `plain job ${i}`)));
    for (const id of ids) {
      expect(await waitTerminal(b, ns, id)).toBe('succeeded');
      expect(await settleCount(b, id)).toBe(1);
    }
    const lanes = await b.pool.query<{ queue_name: string }>('select queue_name from routing_lanes');
    expect(lanes.rows.length).toBeGreaterThan(0);
    // Every queue of the deployment (lanes, retry tiers, expiry, quarantine, records) is a quorum queue.
    const types = await stores.vhost.queueTypes();
    for (const { queue_name } of lanes.rows) expect(types.get(queue_name), queue_name).toBe('quorum');
    const durable = [...types].filter(([name]) => !name.startsWith('amq.gen-')); // exclusive marker queues
    expect(durable.length).toBeGreaterThan(5);
    for (const [name, type] of durable) expect(type, name).toBe('quorum');
  });

  it('a failed attempt comes back through the quorum retry tier and succeeds on the next node', async () => {
    const b = server.backbone;
    const ns = await fundedNamespace(b);
    const ids = await Promise.all([0, 1, 2].map((i) => submitChat(b, ns, `retry job ${i}`)));
    for (const id of ids) {
      expect(await waitTerminal(b, ns, id)).toBe('succeeded');
      expect(failedOnce.has(id)).toBe(true);
      expect((await b.jobs.getJob(ns, id))?.row.attempts).toBe(2);
      expect(await settleCount(b, id)).toBe(1);
    }
  });

  it('a job no node serves expires through the quorum expiry path and is refunded', async () => {
    const b = server.backbone;
    const ns = await fundedNamespace(b);
    const before = await b.ledger.getBalance(ns);
    const { jobId } = await b.jobs.submit({
      namespaceId: ns,
      model: 'a-model-nobody-serves',
      environment: 'testnet',
      priority: 'urgent',
      maxTokens: 16,
      ttlMs: 1_500,
      request: { kind: 'chat', body: { messages: [{ role: 'user', content: 'x' }] }, maxTokens: 16 },
    });
    expect(await waitTerminal(b, ns, jobId, 30_000)).toBe('expired');
    expect(await settleCount(b, jobId)).toBe(0);
    await expect.poll(async () => (await b.ledger.getBalance(ns))?.reserved, { timeout: 10_000 }).toBe(0n);
    expect((await b.ledger.getBalance(ns))?.available).toBe(before?.available);
  });
});
