// 10,000 concurrent select-and-lease calls over 1,000 nodes (real Redis, 4 cells): capacity is never
// exceeded, flagged and offline nodes are never leased, and every lease ends released or expired.
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
import type { Lease, LiveEvent, NodeFlag } from './index.js';
import { scanKeys } from '../../stores/redis/client.js';

const env = useLiveStores('leases');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

it('10,000 concurrent selections over 1,000 nodes respect capacity, flags and liveness', async () => {
  const ttlMs = 4_000;
  const nodes = buildNodes(
    env.pg.pool,
    env.space.redis,
    liveConfig(env.space.prefix, { LIVE_CELLS: 4, HEARTBEAT_TTL_MS: ttlMs, LEASE_TTL_MS: 60_000 }),
  );
  const all = Array.from({ length: 1_000 }, (_, i) => ({
    address: randomAddress(),
    capacity: 1 + (i % 4),
    // 1 in 10 flagged (pause, freeze, shadow_ban in turn), 1 in 20 offline.
    flag: i % 10 === 0 ? (['pause', 'freeze', 'shadow_ban'] as NodeFlag[])[(i / 10) % 3]! : undefined,
    offline: i % 20 === 5,
  }));
  await registerNodes(
    env.pg.pool,
    all.map((n) => ({ address: n.address, environment: 'mainnet' as const })),
  );
  await openSessions(
    nodes,
    all.map((n) => ({ address: n.address, environment: 'mainnet' as const })),
  );
  const hb = (n: (typeof all)[number]) =>
    heartbeat(n.address, {
      capacity: n.capacity,
      quality: 0.5 + Math.random() / 2,
      region: n.capacity % 2 ? 'eu' : 'us',
    });

  // The offline group beats once, then falls silent past the TTL (no sweep runs: the scripts' own
  // liveness check must keep them out).
  const offline = all.filter((n) => n.offline);
  await nodes.presence.ingestMany(offline.map(hb));
  await sleep(ttlMs + 200);
  const online = all.filter((n) => !n.offline);
  const replies = await nodes.presence.ingestMany(online.map(hb));
  expect(replies.every((r) => r.kind === 'ok')).toBe(true);
  for (const n of online.filter((x) => x.flag))
    await nodes.admin.setFlag({ nodeAddress: n.address, flag: n.flag!, setBy: 'admin:test' });

  const eligibleCapacity = online.filter((n) => !n.flag).reduce((s, n) => s + n.capacity, 0);
  // The online nodes keep beating while the selections run (as they would), so the outcome does not
  // depend on how long 10,000 selections take on a loaded machine. Bounded: stops with the selections.
  let selecting = true;
  const keepAlive = (async () => {
    for (let i = 0; selecting && i < 120; i += 1) {
      await sleep(500);
      if (selecting) await nodes.presence.ingestMany(online.map(hb));
    }
  })();
  const results = await Promise.all(
    Array.from({ length: 10_000 }, (_, i) =>
      nodes.matchmaking.selectAndLease({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
        region: i % 2 ? 'eu' : undefined,
      }),
    ),
  );
  selecting = false;
  await keepAlive;
  const leases = results.filter((r): r is Lease => r !== undefined);

  const byAddress = new Map(all.map((n) => [n.address, n]));
  const held = new Map<string, number>();
  for (const l of leases) held.set(l.nodeAddress, (held.get(l.nodeAddress) ?? 0) + 1);
  for (const [address, count] of held) {
    const node = byAddress.get(address)!;
    expect(count).toBeLessThanOrEqual(node.capacity);
    expect(node.flag).toBeUndefined();
    expect(node.offline).toBe(false);
  }
  // Demand (10,000) exceeds supply: every unit of eligible capacity was leased, no more.
  expect(leases.length).toBe(eligibleCapacity);
  expect(new Set(leases.map((l) => l.fencingToken + l.nodeAddress)).size).toBe(leases.length);

  // Release half; the rest expire (the lease TTL is shortened by letting the nodes go silent:
  // the sweep expires the leases of offline nodes and reports them).
  const [release, keep] = [leases.filter((_, i) => i % 2 === 0), leases.filter((_, i) => i % 2 === 1)];
  await Promise.all(release.map((l) => nodes.matchmaking.complete(l, 'ok')));
  const expired: string[] = [];
  nodes.presence.onEvent((e: LiveEvent) => {
    if (e.type === 'lease.expired') expired.push(e.jobId);
  });
  await sleep(ttlMs + 200);
  const swept = await nodes.presence.sweep();
  expect(swept.offline).toBe(all.length); // the silent group was never swept before
  expect(expired.sort()).toEqual(keep.map((l) => l.jobId).sort());

  // Nothing is left: no lease, no expiry entry, no node lease set, no node record.
  for (const { base } of nodes.live.cellBases('mainnet')) {
    expect(await env.space.redis.zcard(`${base}leaseexp`)).toBe(0);
    expect(await env.space.redis.zcard(`${base}seen`)).toBe(0);
  }
  expect(await scanKeys(env.space.redis, `${env.space.prefix}*lease*`)).toEqual([]);
});
