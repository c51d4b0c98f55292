// Measured reputation end to end (issue 16 item 1) on a real backbone (PostgreSQL, Redis, RabbitMQ, Mongo) with
// simulated nodes over real sockets: a node that lies in its heartbeat (quality 1, latency 0) but is slow gets
// less traffic than an honest fast node once both are measured (stated: within the first 20 jobs; asserted on
// the 60 after them), its score and parts are visible to admins, and scores are stored in PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  newAgent,
  submitChat,
  waitTerminal,
} from '../../../test/gateway-harness.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import type { RunningServer } from '../../app/serve.js';
import type { NodeAgent } from '../../agent/node-agent.js';
import { PRIOR_SCORE, type ReputationView } from './index.js';

/** Jobs after which the measured scores decide (stated bound), and the jobs the traffic shares are taken over. */
const WARMUP_JOBS = 20;
const MEASURED_JOBS = 60;
/** Clients in the closed loop: more than one, so that the load term lets both nodes be tried and measured. */
const CONCURRENCY = 3;

let stores: TestStores;
let server: RunningServer;
const agents: NodeAgent[] = [];

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, {
    overrides: { ...gatewayOverrides, REPUTATION_FLUSH_INTERVAL_MS: 100 },
  });
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
  await stores?.drop();
});

const prompt = 'the quick brown fox jumps over the lazy dog and runs away';

/** A closed loop of CONCURRENCY clients; returns the node of each job in completion order. */
async function closedLoop(ns: string, jobs: number): Promise<string[]> {
  const b = server.backbone;
  const nodes: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < jobs) {
        next += 1;
        const id = await submitChat(b, ns, prompt);
        expect(await waitTerminal(b, ns, id)).toBe('succeeded');
        nodes.push((await b.jobs.getJob(ns, id))!.row.nodeAddress!);
      }
    }),
  );
  return nodes;
}

describe('measured reputation', () => {
  it('a slow node lying in its heartbeat gets less traffic than an honest fast node; admins see score and parts', async () => {
    const b = server.backbone;
    // The honest node reports its true 20 ms; the liar claims 0 ms (and quality 1, as every agent does).
    const honest = newAgent(server, { behaviour: { latencyMs: 20 } });
    const liar = newAgent(server, { behaviour: { latencyMs: 250, claimedLatencyMs: 0 } });
    agents.push(honest, liar);
    await bindNodes(b, [honest.address, liar.address]);
    await Promise.all(agents.map((a) => a.start()));
    const ns = await fundedNamespace(b);

    const warm = await closedLoop(ns, WARMUP_JOBS);
    // Both were tried (the prior is optimistic and the load term spreads concurrent jobs).
    expect(new Set(warm)).toEqual(new Set([honest.address, liar.address]));
    await b.nodes.reputation.flush();
    const measured = await closedLoop(ns, MEASURED_JOBS);
    const share = (a: NodeAgent) => measured.filter((n) => n === a.address).length;
    process.stdout.write(
      `reputation: after ${WARMUP_JOBS} jobs, of the next ${MEASURED_JOBS}: honest ${share(honest)}, liar ${share(liar)}\n`,
    );
    expect(share(honest)).toBeGreaterThan(share(liar) * 2);

    await b.nodes.reputation.flush();
    const view = async (a: NodeAgent): Promise<ReputationView> => {
      const res = await fetch(`${server.url}/admin/v1/nodes/${a.address}`, {
        headers: { authorization: `Bearer ${server.backbone.config.ADMIN_TOKEN}` },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { reputation: ReputationView; live: { connected: boolean } };
      expect(body.live.connected).toBe(true);
      return body.reputation;
    };
    const [h, l] = [await view(honest), await view(liar)];
    expect(h.score).toBeGreaterThan(l.score);
    expect(h.parts.latencyMs).toBeLessThan(l.parts.latencyMs);
    expect(h.parts.tokensPerS).toBeGreaterThan(l.parts.tokensPerS);
    expect([h.prior, l.prior]).toEqual([false, false]);
    expect(h.attempts + l.attempts).toBe(WARMUP_JOBS + MEASURED_JOBS);
    expect(h.probation).toBe(false);
    // The score in PostgreSQL is the one mirrored into the live record.
    const stored = await b.pool.query<{ node_address: string; score: number }>(
      'select node_address, score from node_reputation where node_address = any($1::text[])',
      [[honest.address, liar.address]],
    );
    for (const row of stored.rows)
      expect((await b.nodes.live.readNode('testnet', row.node_address)).rep).toBe(String(row.score));
  });

  it('a node never observed shows the prior, on probation', async () => {
    const b = server.backbone;
    const fresh = newAgent(server);
    agents.push(fresh);
    await bindNodes(b, [fresh.address]);
    await fresh.start();
    await waitFor('fresh node live', () => b.nodes.live.sessionLive('testnet', fresh.address), 5_000);
    expect(await b.nodes.reputation.view(fresh.address)).toMatchObject({
      score: PRIOR_SCORE,
      probation: true,
      attempts: 0,
      prior: true,
    });
    expect((await b.nodes.live.readNode('testnet', fresh.address)).rep).toBe(String(PRIOR_SCORE));
  });
});
