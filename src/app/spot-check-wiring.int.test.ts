// Spot checks as a serving backbone composes them (QC_* config → jobs module → record stream → MongoDB), on
// the real stores: a sampled job's blind copy runs on another node, the verdict is settled, and its QC result
// documents reach MongoDB through RabbitMQ and the recorder of the workers role.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../test/backbone-harness.js';
import { createNamespaces } from '../../test/factories.js';
import { heartbeat, openSessions, randomAddress, registerNodes } from '../../test/live-harness.js';
import { waitFor } from '../../test/routing-fixtures.js';
import { BuiltinRuntime } from '../agent/node-runtime.js';
import type { NodeExecutor } from '../modules/jobs/index.js';
import type { RunningServer } from './serve.js';

let stores: TestStores;
let server: RunningServer;
const nodes = Array.from({ length: 3 }, () => randomAddress());
const ran: Array<{ jobId: string; node: string }> = [];

beforeAll(async () => {
  stores = await createTestStores();
  const runtime = new BuiltinRuntime();
  const executor: NodeExecutor = {
    async run(lease, job) {
      ran.push({ jobId: job.jobId, node: lease.nodeAddress });
      return runtime.run(job.model, job.request!);
    },
  };
  server = await startTestServer(stores, {
    executor,
    overrides: { QC_SAMPLE_BASIS_POINTS: 10_000, QC_PROBATION_SAMPLE_BASIS_POINTS: 10_000 },
  });
});
afterAll(async () => {
  await server?.stop();
  await stores?.drop();
});

describe('spot checks in a serving backbone', () => {
  it('checks a sampled job on another node and records the QC result in MongoDB', async () => {
    const bb = server.backbone;
    const list = nodes.map((address) => ({ address, environment: 'testnet' as const }));
    await registerNodes(bb.pool, list);
    await openSessions(bb.nodes, list);
    for (const address of nodes)
      await bb.nodes.presence.ingest(
        heartbeat(address, {
          environment: 'testnet',
          models: [{ name: 'llama3-8b', version: 'v1', active: true }],
        }),
      );
    const [ns] = await createNamespaces(bb.pool, 1);
    await bb.ledger.topUp(ns!.id, 10_000_000n, 'seed');
    const job = await bb.jobs.submit({
      namespaceId: ns!.id,
      model: 'llama3-8b',
      environment: 'testnet',
      priority: 'bulk',
      maxTokens: 16,
      ttlMs: 60_000,
      request: {
        kind: 'chat',
        body: { messages: [{ role: 'user', content: 'one two three four' }], temperature: 0 },
        maxTokens: 16,
      },
    });
    await waitFor('verdict settled', async () => {
      const r = await bb.pool.query(`select verdict from qc_checks where job_id = $1`, [job.jobId]);
      return r.rows[0]?.verdict === 'agreed';
    });
    const row = await bb.pool.query<{ node_a: string; node_b: string; rule: string }>(
      `select node_a, node_b, rule from qc_checks where job_id = $1`,
      [job.jobId],
    );
    expect(row.rows[0]!.rule).toBe('exact'); // temperature 0
    expect(row.rows[0]!.node_a).not.toBe(row.rows[0]!.node_b);
    expect(ran.filter((r) => r.node === row.rows[0]!.node_b)).toHaveLength(1);
    await waitFor('QC results in MongoDB', async () => {
      const docs = await bb.records.repo.findQcResults(ns!.id, job.jobId, new Date(0));
      return docs.length === 2 && docs.every((d) => d.verdict === 'pass');
    });
    expect(await bb.ledger.verifyLedger()).toEqual([]);
  });
});
