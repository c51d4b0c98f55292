// Recovery: the live store loses everything mid-run (FLUSHDB on a logical database this test owns
// alone, standing in for FLUSHALL or a Redis restart); the next heartbeats rebuild matchmaking from
// PostgreSQL with the same flags and Subclouds.
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
import type { Lease } from './index.js';

const env = useLiveStores('recovery', { exclusiveRedis: true });

it('after a flush of the whole store (FLUSHDB on an owned database), heartbeats restore matchmaking with the same flags', async () => {
  const nodes = buildNodes(env.pg.pool, env.space.redis, liveConfig(env.space.prefix, { LIVE_CELLS: 2 }));
  const addrs = Array.from({ length: 12 }, () => randomAddress());
  await registerNodes(
    env.pg.pool,
    addrs.map((address) => ({ address, environment: 'mainnet' as const })),
  );
  const [paused, frozen, banned, member, ...plain] = addrs as [string, string, string, string, ...string[]];
  const sc = await nodes.admin.createSubcloud({ name: `sc-${randomUUID()}`, environment: 'mainnet' });
  const sessions = () =>
    openSessions(
      nodes,
      addrs.map((address) => ({ address, environment: 'mainnet' as const })),
    );
  await sessions();
  const beat = () => nodes.presence.ingestMany(addrs.map((a) => heartbeat(a, { capacity: 1 })));
  await beat();
  await nodes.admin.setFlag({
    nodeAddress: paused,
    flag: 'pause',
    setBy: 'admin',
    expiresAt: new Date(Date.now() + 3_600_000),
  });
  await nodes.admin.setFlag({ nodeAddress: frozen, flag: 'freeze', setBy: 'admin' });
  await nodes.admin.setFlag({ nodeAddress: banned, flag: 'shadow_ban', setBy: 'admin' });
  await nodes.admin.addSubcloudMember(sc.id, member);

  const drain = async (subcloudId?: string): Promise<Lease[]> => {
    const out: Lease[] = [];
    for (let i = 0; i < addrs.length + 1; i += 1) {
      const l = await nodes.matchmaking.selectAndLease({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
        subcloudId,
      });
      if (!l) break;
      out.push(l);
    }
    return out;
  };
  const routable = (ls: Lease[]) => ls.map((l) => l.nodeAddress).sort();
  const before = await drain();
  expect(routable(before)).toEqual([...plain].sort());
  expect(routable(await drain(sc.id))).toEqual([member]);

  // Mid-run loss of all live state.
  await env.space.redis.flushdb();
  expect(
    await nodes.matchmaking.selectAndLease({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: 'llama3-8b',
    }),
  ).toBeUndefined();
  // Leases taken before the flush are gone; their completion is refused, so the jobs retry elsewhere.
  await expect(nodes.matchmaking.complete(before[0]!, 'ok')).rejects.toMatchObject({
    code: 'lease_not_found',
  });

  // The gateway re-claims its sessions on a loss (its RedisLossWatcher); this test stands in for it.
  await sessions();
  const replies = await beat();
  expect(replies.every((r) => r.kind === 'ok' && r.joined)).toBe(true);
  const after = await drain();
  expect(routable(after)).toEqual([...plain].sort());
  expect(routable(await drain(sc.id))).toEqual([member]);
  // Fencing tokens never repeat across the loss of state.
  const maxBefore = Math.max(...before.map((l) => Number(l.fencingToken)));
  expect(Math.min(...after.map((l) => Number(l.fencingToken)))).toBeGreaterThan(maxBefore);
  expect(await nodes.presence.viewNode('mainnet', paused, 'admin')).toMatchObject({ flags: ['pause'] });
  expect(await nodes.presence.viewNode('mainnet', banned, 'admin')).toMatchObject({ flags: ['shadow_ban'] });
  expect(await nodes.presence.viewNode('mainnet', banned, 'operator')).toMatchObject({ flags: [] });
});
