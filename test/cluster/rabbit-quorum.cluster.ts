// Quorum lanes on a real 3-node RabbitMQ cluster (issue 17): a backbone given every node in AMQP_URL runs jobs
// while the node leading the busy lane is killed -9 mid-run. The lane's Raft group elects a new leader, the
// backbone's connections fail over to a live node, and every accepted job reaches one terminal state with one
// settlement; reserved returns to 0; no job is lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../backbone-harness.js';
import {
  fundedNamespace,
  gatewayOverrides,
  newAgent,
  startBoundAgents,
  submitChat,
} from '../gateway-harness.js';
import { waitForInvariants } from '../../src/cli/invariants.js';
import type { NodeAgent } from '../../src/agent/node-agent.js';
import type { RunningServer } from '../../src/app/serve.js';
import { startRabbitCluster, type RabbitCluster } from './rabbit-cluster.js';

const RUN_MS = Number(process.env.CLUSTER_RUN_MS ?? 12_000);
const KILL_AT_MS = 3_000;
const CONCURRENCY = 6;

let cluster: RabbitCluster;
let stores: TestStores;
let server: RunningServer;
let agents: NodeAgent[] = [];

beforeAll(async () => {
  cluster = await startRabbitCluster(3);
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: {
      ...gatewayOverrides,
      AMQP_URL: cluster.url,
      AMQP_QUEUE_TYPE: 'quorum',
      ROUTING_RETRY_DELAYS_MS: '200',
    },
  });
  agents = [0, 1, 2].map(() => newAgent(server));
  await startBoundAgents(server.backbone, agents);
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
  await stores?.drop();
  await cluster?.destroy();
});

describe('a 3-node RabbitMQ cluster with quorum lanes', () => {
  it('kill -9 of the leader of a busy lane: jobs go on, each terminal once, settled once, reserved 0', async () => {
    const b = server.backbone;
    const ns = await fundedNamespace(b);
    const accepted: string[] = [];
    const refused: string[] = [];
    const done = new Map<string, number>(); // job id → when it was answered
    const acceptedAt = new Map<string, number>();
    const t0 = Date.now();
    let killedAt = 0;
    let victim = '';
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, KILL_AT_MS));
      // The busy lane: the namespace's lane queue; its leader is the node to kill.
      const leaders = await cluster.leaders(cluster.nodes[0]!);
      const lane = [...leaders.keys()].find((q) => q.includes('.rty.lane.') || q.startsWith('rty.lane.'));
      expect(lane, `a lane among ${[...leaders.keys()].join(', ')}`).toBeDefined();
      victim = leaders.get(lane!)!;
      const node = cluster.nodes.find((n) => n.nodename === victim);
      expect(node, `leader ${victim}`).toBeDefined();
      killedAt = Date.now();
      await node!.kill();
    })();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, w) => {
        for (let i = 0; Date.now() - t0 < RUN_MS; i += 1) {
          try {
            const id = await submitChat(b, ns, `cluster job ${w} ${i}`);
            accepted.push(id);
            acceptedAt.set(id, Date.now());
            void waitAnswered(id);
          } catch (err) {
            // A submission during the failover may be refused as retryable (store_unavailable): the client retries.
            refused.push(err instanceof Error ? err.message : String(err));
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }),
    );
    await killer;
    async function waitAnswered(id: string) {
      for (let k = 0; k < 600; k += 1) {
        const row = (await b.jobs.getJob(ns, id).catch(() => undefined))?.row;
        if (row && ['succeeded', 'failed', 'expired', 'cancelled'].includes(row.status)) {
          done.set(id, Date.now());
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const scope = {
      pool: b.pool,
      ledger: b.ledger,
      redis: b.redis,
      redisPrefix: b.config.REDIS_KEY_PREFIX,
      namespaceIds: [ns],
    };
    const checks = await waitForInvariants(scope, { timeoutMs: 90_000, intervalMs: 500 });
    const statuses = await b.pool.query<{ status: string; n: string }>(
      'select status, count(*)::text as n from jobs where namespace_id = $1 group by status',
      [ns],
    );
    const after = [...done.values()].filter((t) => t > killedAt).sort((x, y) => x - y);
    // Jobs submitted after the kill and answered: the lane (new leader) and the backbone (failed over) serve.
    const fresh = [...done]
      .filter(([id]) => (acceptedAt.get(id) ?? 0) > killedAt)
      .map(([, t]) => t)
      .sort((x, y) => x - y);
    process.stdout.write(
      `cluster run: ${accepted.length} accepted, ${refused.length} refused during failover, killed ${victim} at ` +
        `${killedAt - t0} ms; first job submitted after the kill answered ${fresh.length ? fresh[0]! - killedAt : NaN} ms ` +
        `after it (${fresh.length} such jobs); ` +
        `statuses ${JSON.stringify(statuses.rows)}; refusals ${JSON.stringify([...new Set(refused)].slice(0, 5))}\n`,
    );
    expect(killedAt).toBeGreaterThan(0);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    // Every accepted job is in the database and terminal; the ones answered after the kill prove the lane lived on.
    const rows = await b.pool.query<{ id: string; status: string }>(
      'select id, status from jobs where namespace_id = $1',
      [ns],
    );
    expect(new Set(rows.rows.map((r) => r.id))).toEqual(new Set(accepted));
    expect(rows.rows.filter((r) => r.status === 'succeeded').length).toBeGreaterThan(accepted.length * 0.9);
    expect(after.length).toBeGreaterThan(10);
    expect(fresh.length).toBeGreaterThan(10);
  });
});
