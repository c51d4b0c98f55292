// Lease releases against the real Redis: releases arriving together share one pipeline round trip, and each
// still gets its own reply (ok, stale fencing token, no lease) and returns its node to the pools.
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import {
  buildNodes,
  useLiveStores,
  heartbeat,
  liveConfig,
  openSessions,
  randomAddress,
  registerNodes,
} from '../../../test/live-harness.js';

const env = useLiveStores('release');

it('releases that arrive together go in few round trips, each with its own outcome', async () => {
  const nodes = buildNodes(env.pg.pool, env.space.redis, liveConfig(env.space.prefix, { LIVE_CELLS: 2 }));
  const addresses = Array.from({ length: 10 }, () => randomAddress());
  await registerNodes(
    env.pg.pool,
    addresses.map((address) => ({ address, environment: 'mainnet' as const })),
  );
  await openSessions(
    nodes,
    addresses.map((address) => ({ address, environment: 'mainnet' as const })),
  );
  await nodes.presence.ingestMany(addresses.map((a) => heartbeat(a, { capacity: 4 })));
  const leases = [];
  for (let i = 0; i < 40; i += 1) {
    const l = await nodes.matchmaking.selectAndLease({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: 'llama3-8b',
    });
    expect(l).toBeDefined();
    leases.push(l!);
  }
  // The nodes are full now.
  expect(
    await nodes.matchmaking.selectAndLease({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: 'llama3-8b',
    }),
  ).toBeUndefined();
  const before = nodes.live.releaseBatches;
  const stale = { ...leases[0]!, fencingToken: `${leases[0]!.fencingToken}9` };
  const missing = { ...leases[1]!, jobId: randomUUID() };
  const replies = await Promise.all([
    nodes.live.release(stale, 'ok'),
    nodes.live.release(missing, 'ok'),
    ...leases.map((l) => nodes.live.release(l, 'ok')),
  ]);
  expect(replies[0]).toMatchObject({ kind: 'stale', currentToken: leases[0]!.fencingToken });
  expect(replies[1]).toEqual({ kind: 'no_lease' });
  expect(replies.slice(2).every((r) => r.kind === 'ok')).toBe(true);
  expect(nodes.live.releaseBatches - before).toBeLessThanOrEqual(3);
  // Every node is back in the pools: 40 new jobs get leases again.
  for (let i = 0; i < 40; i += 1)
    expect(
      await nodes.matchmaking.selectAndLease({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
      }),
    ).toBeDefined();
});
