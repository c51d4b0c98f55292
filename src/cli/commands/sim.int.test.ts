// The simulator against a running backbone: nodes bound through the real Gate/Admin HTTP API or pre-bound
// (--skip-bind with known keys); jobs run on the simulated nodes, including failing and disconnecting ones.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, startTestServer, type TestStores } from '../../../test/backbone-harness.js';
import {
  bindNodes,
  fundedNamespace,
  gatewayOverrides,
  settleCount,
  submitChat,
  waitTerminal,
} from '../../../test/gateway-harness.js';
import type { RunningServer } from '../../app/serve.js';
import { waitFor } from '../../../test/routing-fixtures.js';
import { projectRoot } from '../../platform/paths.js';
import {
  loadOrCreateKeys,
  parseSimOptions,
  simCounters,
  startSim,
  type RunningSim,
  type SimCliOptions,
} from './sim.js';

let stores: TestStores;
let server: RunningServer;
let gateUrl: string;
const sims: RunningSim[] = [];

const cli: SimCliOptions = {
  url: '',
  nodes: '3',
  models: 'llama3-8b',
  environment: 'testnet',
  capacity: '2',
  latencyMs: '5',
  jitterMs: '5',
  failureRate: '0',
  disconnectRate: '0',
  slowRate: '0',
  skipBind: false,
  reportMs: '1000',
};

beforeAll(async () => {
  stores = await createTestStores();
  server = await startTestServer(stores, { overrides: gatewayOverrides });
  cli.url = server.url;
  gateUrl = server.url; // the real Gate/Admin API of the same backbone
});
afterAll(async () => {
  await Promise.allSettled(sims.map((s) => s.stop()));
  await server?.stop();
  await stores?.drop();
});

describe('rty sim', () => {
  it('binds its nodes over the Gate/Admin contract, connects them all, and serves jobs', async () => {
    const b = server.backbone;
    const sim = await startSim(parseSimOptions({ ...cli, gateUrl }, b.config.ADMIN_TOKEN));
    sims.push(sim);
    expect(sim.agents.every((a) => a.connected && a.heartbeatsSent > 0)).toBe(true);
    const rows = await b.pool.query<{ account_id: string | null }>(
      'select account_id from nodes where address = any($1)',
      [sim.agents.map((a) => a.address)],
    );
    expect(rows.rows).toHaveLength(3);
    expect(rows.rows.every((r) => r.account_id !== null)).toBe(true);
    const ns = await fundedNamespace(b);
    const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => submitChat(b, ns, `sim job ${i}`)));
    for (const id of ids) expect(await waitTerminal(b, ns, id)).toBe('succeeded');
    expect(simCounters(sim.agents)).toMatch(/^SIM connected=3\/3 jobs=\d+ results=\d+/);
    await sim.stop();
  });

  it('pre-bound nodes (--skip-bind) with failing and disconnecting nodes: every job still settles once', async () => {
    const b = server.backbone;
    const keys = Array.from({ length: 3 }, () => generatePrivateKey());
    await bindNodes(
      b,
      keys.map((k) => privateKeyToAccount(k).address.toLowerCase()),
    );
    const opts = parseSimOptions(
      { ...cli, skipBind: true, failureRate: '0.2', disconnectRate: '0.1' },
      b.config.ADMIN_TOKEN,
    );
    const sim = await startSim({ ...opts, privateKeys: keys });
    sims.push(sim);
    const ns = await fundedNamespace(b);
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => submitChat(b, ns, `flaky ${i}`)));
    for (const id of ids) {
      const status = await waitTerminal(b, ns, id);
      // A job may exhaust its attempts on unlucky draws: then it failed and was refunded, never charged.
      expect(['succeeded', 'failed']).toContain(status);
      expect(await settleCount(b, id)).toBe(status === 'succeeded' ? 1 : 0);
    }
    await sim.stop();
  });

  it('`rty sim` as a process: READY once connected, counters, serves jobs, stops cleanly on SIGTERM', async () => {
    const b = server.backbone;
    const dir = mkdtempSync(join(tmpdir(), 'rty-sim-'));
    const keysFile = join(dir, 'keys');
    try {
      const keys = loadOrCreateKeys(keysFile, 2);
      expect(loadOrCreateKeys(keysFile, 2)).toEqual(keys); // reused, not regenerated
      await bindNodes(
        b,
        keys.map((k) => privateKeyToAccount(k).address.toLowerCase()),
      );
      const args = ['--import', 'tsx', 'src/main/cli.ts', 'sim', '--url', server.url, '--nodes', '2'];
      const child = spawn(
        process.execPath,
        [...args, '--skip-bind', '--keys-file', keysFile, '--report-ms', '200', '--latency-ms', '1'],
        { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        await waitFor(
          'SIM READY',
          () => out.includes('SIM READY nodes=2') || child.exitCode !== null,
          60_000,
        );
        expect(out).toContain('SIM READY nodes=2');
        const ns = await fundedNamespace(b);
        const id = await submitChat(b, ns, 'from a process');
        expect(await waitTerminal(b, ns, id)).toBe('succeeded');
        await waitFor('a counter line', () => /SIM connected=2\/2 jobs=1 results=1/.test(out));
      } finally {
        if (child.exitCode === null) child.kill('SIGTERM');
      }
      expect(await exited).toBe(0);
      expect(out).toContain('SIM stopped');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
