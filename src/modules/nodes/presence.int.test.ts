// Presence against the real Redis and PostgreSQL: heartbeats, late heartbeats, hydration, offline
// detection (measured, within TTL + 1 s) by the live sweep on the task runner, rejoin.
import { describe, expect, it } from 'vitest';
import { testLog } from '../../../test/harness.js';
import {
  buildNodes,
  useLiveStores,
  heartbeat,
  liveConfig,
  openSessions,
  randomAddress,
  registerNodes,
} from '../../../test/live-harness.js';
import { TaskRunner } from '../../background/task-runner.js';
import { isAppError } from '../../platform/errors.js';
import type { LiveEvent } from './index.js';

const env = useLiveStores('presence');

describe('heartbeats', () => {
  it('a first heartbeat hydrates from PostgreSQL and joins the indexes; later ones update the record', async () => {
    const nodes = buildNodes(env.pg.pool, env.space.redis, liveConfig(`${env.space.prefix}a:`));
    const addr = randomAddress();
    await registerNodes(env.pg.pool, [{ address: addr, environment: 'mainnet' }]);
    await openSessions(nodes, [{ address: addr, environment: 'mainnet' }]);
    const events: LiveEvent[] = [];
    nodes.presence.onEvent((e) => events.push(e));

    expect(await nodes.presence.ingest(heartbeat(addr))).toEqual({
      kind: 'ok',
      joined: true,
      eligible: true,
    });
    expect(events).toEqual([{ type: 'node.online', environment: 'mainnet', address: addr }]);
    const base = nodes.live.keys.liveCellBase('mainnet', 0);
    expect(await nodes.live.readPool(base, 'ready:llama3-8b')).toEqual([addr]);
    expect(await nodes.live.readPool(base, 'ready:llama3-8b|r:eu')).toEqual([addr]);

    const next = await nodes.presence.ingest(heartbeat(addr, { region: 'us', capacity: 5 }));
    expect(next).toEqual({ kind: 'ok', joined: false, eligible: true });
    expect(await nodes.live.readPool(base, 'ready:llama3-8b|r:eu')).toEqual([]);
    expect(await nodes.live.readPool(base, 'ready:llama3-8b|r:us')).toEqual([addr]);
    const view = await nodes.presence.viewNode('mainnet', addr, 'operator');
    expect(view).toMatchObject({ online: true, capacity: 5, leases: 0, flags: [] });
    expect(view.status?.region).toBe('us');
  });

  it('a late or replayed heartbeat never overwrites a newer one', async () => {
    const nodes = buildNodes(env.pg.pool, env.space.redis, liveConfig(`${env.space.prefix}b:`));
    const addr = randomAddress();
    await registerNodes(env.pg.pool, [{ address: addr, environment: 'mainnet' }]);
    const older = heartbeat(addr, { capacity: 1 });
    const newer = heartbeat(addr, { capacity: 7 });
    await nodes.presence.ingest(newer);
    expect(await nodes.presence.ingest(older)).toEqual({
      kind: 'stale',
      storedTimestampMs: newer.timestampMs,
    });
    expect(await nodes.presence.ingest(newer)).toMatchObject({ kind: 'stale' });
    expect((await nodes.live.readNode('mainnet', addr)).cap).toBe('7');
  });

  it('the stored static status follows the latest heartbeat even when processes alternate', async () => {
    const config = liveConfig(`${env.space.prefix}s:`);
    const a = buildNodes(env.pg.pool, env.space.redis, config);
    const b = buildNodes(env.pg.pool, env.space.connect(), config);
    const addr = randomAddress();
    await registerNodes(env.pg.pool, [{ address: addr, environment: 'mainnet' }]);
    await a.presence.ingest(heartbeat(addr, { configDigest: 'd1' }));
    await b.presence.ingest(heartbeat(addr, { configDigest: 'd2' }));
    // Process a last sent d1 and sends only its digest; the script sees d2 stored and asks for the JSON.
    await a.presence.ingest(heartbeat(addr, { configDigest: 'd1' }));
    expect((await b.presence.viewNode('mainnet', addr, 'admin')).status?.configDigest).toBe('d1');
    await a.presence.ingest(heartbeat(addr, { configDigest: 'd1', load: 1 }));
    expect(await a.presence.viewNode('mainnet', addr, 'admin')).toMatchObject({
      status: { configDigest: 'd1', load: 1, software: { agent: '1.0.0' } },
    });
  });

  it('refuses heartbeats of unregistered nodes, of the wrong environment, and malformed ones', async () => {
    const nodes = buildNodes(env.pg.pool, env.space.redis, liveConfig(`${env.space.prefix}c:`));
    const stranger = randomAddress();
    await expect(nodes.presence.ingest(heartbeat(stranger))).rejects.toSatisfy((e) =>
      isAppError(e, 'node_not_registered'),
    );
    const testnetNode = randomAddress();
    await registerNodes(env.pg.pool, [{ address: testnetNode, environment: 'testnet' }]);
    await expect(nodes.presence.ingest(heartbeat(testnetNode))).rejects.toSatisfy((e) =>
      isAppError(e, 'invalid_request'),
    );
    await expect(nodes.presence.ingest({ ...heartbeat(testnetNode), capacity: 0 })).rejects.toSatisfy((e) =>
      isAppError(e, 'invalid_request'),
    );
    expect(await nodes.live.readNode('mainnet', stranger)).toEqual({});
  });
});

describe('offline detection', () => {
  it('a silent node leaves every index within TTL + 1 s (measured), with an event; it rejoins on return', async () => {
    const ttlMs = 1_500;
    const config = liveConfig(`${env.space.prefix}d:`, {
      HEARTBEAT_TTL_MS: ttlMs,
      LIVE_SWEEP_INTERVAL_MS: 100,
      LIVE_CELLS: 2,
    });
    const nodes = buildNodes(env.pg.pool, env.space.redis, config);
    const silent = randomAddress();
    const alive = randomAddress();
    await registerNodes(env.pg.pool, [
      { address: silent, environment: 'mainnet' },
      { address: alive, environment: 'mainnet' },
    ]);
    await openSessions(nodes, [
      { address: silent, environment: 'mainnet' },
      { address: alive, environment: 'mainnet' },
    ]);
    const offline: Array<LiveEvent & { type: 'node.offline' }> = [];
    let detectedAt = 0;
    nodes.presence.onEvent((e) => {
      if (e.type === 'node.offline') {
        offline.push(e);
        detectedAt = Date.now();
      }
    });
    const runner = new TaskRunner({ pool: env.pg.pool, log: testLog, tasks: [nodes.sweepTask] });
    runner.start();
    try {
      // Taken before the call: the server stamps the heartbeat during it, so this never overstates the TTL.
      const lastHeartbeatAt = Date.now();
      await nodes.presence.ingestMany([heartbeat(silent), heartbeat(alive)]);
      // Keep `alive` beating every 300 ms until the silent node is reported (bounded: 20 × 300 ms).
      for (let i = 0; i < 20 && offline.length === 0; i += 1) {
        await new Promise((r) => setTimeout(r, 300));
        await nodes.presence.ingest(heartbeat(alive));
      }
      const detectionMs = detectedAt - lastHeartbeatAt;
      testLog.info({ detectionMs, ttlMs }, 'offline detection');
      process.stdout.write(
        `offline detection: ${detectionMs} ms after the last heartbeat (TTL ${ttlMs} ms)\n`,
      );
      expect(offline.map((e) => e.address)).toEqual([silent]);
      expect(detectionMs).toBeGreaterThanOrEqual(ttlMs);
      expect(detectionMs).toBeLessThanOrEqual(ttlMs + 1_000);

      expect(await nodes.live.readNode('mainnet', silent)).toEqual({});
      const cells = nodes.live.cellBases('mainnet');
      for (const { base } of cells) {
        expect(await nodes.live.readPool(base, 'ready:llama3-8b')).not.toContain(silent);
        expect(await nodes.live.readPool(base, 'seen')).not.toContain(silent);
      }
      expect((await nodes.live.readNode('mainnet', alive)).ts).toBeDefined();

      expect(await nodes.presence.ingest(heartbeat(silent))).toMatchObject({ kind: 'ok', joined: true });
      const pools = await Promise.all(cells.map(({ base }) => nodes.live.readPool(base, 'ready:llama3-8b')));
      expect(pools.flat().sort()).toEqual([silent, alive].sort());
    } finally {
      await runner.stop();
    }
  });
});
