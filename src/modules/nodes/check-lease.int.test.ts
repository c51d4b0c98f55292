// Leases for blind copies (live_select_check.lua) on the real Redis and PostgreSQL: never a node of the excluded
// operator, shadow-banned nodes included (they get no consumer traffic but keep being measured), a lease like any.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildNodes,
  heartbeat,
  liveConfig,
  openSessions,
  randomAddress,
  registerNodes,
  useLiveStores,
} from '../../../test/live-harness.js';

const env = useLiveStores('qclease');

describe('leases for blind copies', () => {
  it('skips excluded nodes, reaches a shadow-banned node that consumer jobs cannot, and releases like a lease', async () => {
    const nodes = buildNodes(
      env.pg.pool,
      env.space.redis,
      liveConfig(`${env.space.prefix}q:`, { LIVE_CELLS: 2 }),
    );
    const [mine, banned, other] = [randomAddress(), randomAddress(), randomAddress()];
    for (const address of [mine, banned, other]) {
      await registerNodes(env.pg.pool, [{ address, environment: 'mainnet' }]);
      const hb = heartbeat(address);
      await openSessions(nodes, [hb]);
      await nodes.presence.ingest(hb);
    }
    await nodes.admin.setFlag({ nodeAddress: banned, flag: 'shadow_ban', setBy: 'test' });
    // Consumer jobs never reach the shadow-banned node.
    for (let i = 0; i < 6; i += 1) {
      const l = await nodes.matchmaking.selectAndLease({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
      });
      expect(l?.nodeAddress).not.toBe(banned);
      await nodes.matchmaking.complete(l!, 'ok');
    }
    const seen = new Set<string>();
    for (let i = 0; i < 20; i += 1) {
      const l = await nodes.matchmaking.leaseForCheck({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
        excludeNodes: [mine],
        preferBanned: false,
      });
      expect(l).toBeDefined();
      expect(l!.nodeAddress).not.toBe(mine);
      seen.add(l!.nodeAddress);
      await nodes.matchmaking.complete(l!, 'ok');
    }
    expect(seen).toEqual(new Set([banned, other]));
    const pref = await nodes.matchmaking.leaseForCheck({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: 'llama3-8b',
      excludeNodes: [mine],
      preferBanned: true,
    });
    expect(pref!.nodeAddress).toBe(banned);
    await nodes.matchmaking.complete(pref!, 'ok');
    // Still out of the consumer pools after its blind lease ended.
    for (let i = 0; i < 6; i += 1) {
      const l = await nodes.matchmaking.selectAndLease({
        jobId: randomUUID(),
        environment: 'mainnet',
        model: 'llama3-8b',
      });
      expect(l?.nodeAddress).not.toBe(banned);
      await nodes.matchmaking.complete(l!, 'ok');
    }
    // Every node excluded: no lease.
    const none = await nodes.matchmaking.leaseForCheck({
      jobId: randomUUID(),
      environment: 'mainnet',
      model: 'llama3-8b',
      excludeNodes: [mine, banned, other],
      preferBanned: false,
    });
    expect(none).toBeUndefined();
  });
});
