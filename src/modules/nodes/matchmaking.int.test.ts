// Select-and-lease against the real Redis: every eligibility filter alone and combined (table-driven),
// capacity, idempotency, lease expiry, fencing, flags with cooldowns, penalties.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildNodes,
  useLiveStores,
  heartbeat,
  liveConfig,
  openSessions,
  randomAddress,
  registerNodes,
} from '../../../test/live-harness.js';
import type { Config } from '../../config/config.js';
import { isAppError } from '../../platform/errors.js';
import type { Heartbeat, JobRequirements, LiveEvent, NodesModule } from './index.js';
import { isProbationJob } from './reputation.js';

let n = 0;
const env = useLiveStores('match');

function fresh(over: Partial<Config> = {}): NodesModule {
  n += 1;
  return buildNodes(
    env.pg.pool,
    env.space.redis,
    liveConfig(`${env.space.prefix}${n}:`, { LIVE_CELLS: 3, ...over }),
  );
}

/**
 * Registers a node, opens its gateway session, ingests its heartbeat and gives it a measured reputation: `rep`,
 * or by default the heartbeat's quality × 10,000. The network ignores the heartbeat's quality; the tests below
 * use it only as their knob for "better scored", which goes through the reputation mirror as in production.
 */
async function join(
  nodes: NodesModule,
  hb: Heartbeat,
  rep = Math.round(hb.quality * 10_000),
): Promise<string> {
  await registerNodes(env.pg.pool, [{ address: hb.address, environment: hb.environment }]);
  await openSessions(nodes, [hb]);
  await nodes.presence.ingest(hb);
  await nodes.live.mirrorReputation([
    { environment: hb.environment, address: hb.address, score: rep, probation: false },
  ]);
  return hb.address;
}

const job = (over: Partial<JobRequirements> = {}): JobRequirements => ({
  jobId: randomUUID(),
  environment: 'mainnet',
  model: 'llama3-8b',
  ...over,
});
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type Setup = (nodes: NodesModule, address: string) => Promise<void>;
interface FilterCase {
  filter: string;
  /** The better-scored node that the job must not get. */
  bad: Partial<Heartbeat>;
  setup?: Setup;
  req?: Partial<JobRequirements>;
  config?: Partial<Config>;
  /** A preference, not a filter: once the eligible node is full, the other one is used. */
  fallsBack?: boolean;
}

const flag =
  (f: 'pause' | 'freeze' | 'shadow_ban'): Setup =>
  (nodes, address) =>
    nodes.admin.setFlag({ nodeAddress: address, flag: f, setBy: 'admin:test' });

const filterCases: FilterCase[] = [
  { filter: 'model', bad: { models: [{ name: 'mistral-7b', version: 'v1', active: true }] } },
  {
    filter: 'model installed but not active',
    bad: { models: [{ name: 'llama3-8b', version: 'v1', active: false }] },
  },
  {
    filter: 'version',
    bad: { models: [{ name: 'llama3-8b', version: 'v2', active: true }] },
    req: { version: 'v1' },
  },
  { filter: 'environment', bad: { environment: 'testnet' } },
  {
    filter: 'minimum GPU memory',
    bad: { gpu: { model: 'T4', memoryMb: 16_384, count: 1 } },
    req: { minGpuMemoryMb: 40_000 },
  },
  { filter: 'region preference', bad: { region: 'us' }, req: { region: 'eu' }, fallsBack: true },
  { filter: 'excluded by an earlier attempt', bad: {}, req: { excludeNodes: ['$bad'] } },
  { filter: 'unhealthy', bad: { health: 'unhealthy' } },
  { filter: 'paused', bad: {}, setup: flag('pause') },
  { filter: 'frozen', bad: {}, setup: flag('freeze') },
  { filter: 'shadow-banned', bad: {}, setup: flag('shadow_ban') },
  {
    filter: 'member of a Subcloud (public job)',
    bad: {},
    setup: async (nodes, address) => {
      const sc = await nodes.admin.createSubcloud({ name: `sc-${randomUUID()}`, environment: 'mainnet' });
      await nodes.admin.addSubcloudMember(sc.id, address);
    },
  },
  {
    filter: 'at capacity',
    bad: { capacity: 1 },
    setup: async (nodes) => {
      expect(await nodes.matchmaking.selectAndLease(job())).toBeDefined();
    },
  },
  {
    filter: 'offline (silent past the TTL, before any sweep)',
    bad: {},
    config: { HEARTBEAT_TTL_MS: 600 },
    setup: () => sleep(700),
  },
];

describe('eligibility: each filter alone', () => {
  it.each(filterCases)('$filter: the eligible node wins over a better-scored ineligible one', async (c) => {
    const nodes = fresh(c.config);
    const bad = await join(nodes, heartbeat(randomAddress(), { quality: 1, latencyMs: 0, ...c.bad }));
    await c.setup?.(nodes, bad);
    const good = await join(nodes, heartbeat(randomAddress(), { quality: 0.5 }));
    const req = job({ ...c.req, excludeNodes: c.req?.excludeNodes?.map((a) => (a === '$bad' ? bad : a)) });
    const lease = await nodes.matchmaking.selectAndLease(req);
    expect(lease?.nodeAddress).toBe(good);
    // With the eligible node busy (capacity 2), the ineligible one is still never chosen.
    expect(await nodes.matchmaking.selectAndLease({ ...req, jobId: randomUUID() })).toMatchObject({
      nodeAddress: good,
    });
    const third = await nodes.matchmaking.selectAndLease({ ...req, jobId: randomUUID() });
    expect(third?.nodeAddress).toBe(c.fallsBack ? bad : undefined);
  });

  it("ranks by measured reputation: a heartbeat's claims (quality 1, latency 0) change nothing", async () => {
    const nodes = fresh({ LIVE_CELLS: 1 });
    await join(nodes, heartbeat(randomAddress(), { quality: 1, latencyMs: 0 }), 3_000);
    const measured = await join(nodes, heartbeat(randomAddress(), { quality: 0, latencyMs: 60_000 }), 8_000);
    expect((await nodes.matchmaking.selectAndLease(job()))?.nodeAddress).toBe(measured);
  });

  it('a probation job prefers a node on probation; other jobs an established one; each falls back to the other', async () => {
    const nodes = fresh({ LIVE_CELLS: 1, REPUTATION_PROBATION_SHARE_PERCENT: 50 });
    const established = await join(nodes, heartbeat(randomAddress(), { capacity: 16 }), 9_000);
    const newcomer = await join(nodes, heartbeat(randomAddress(), { capacity: 16 }), 5_000);
    await nodes.live.mirrorReputation([
      { environment: 'mainnet', address: newcomer, score: 5_000, probation: true },
    ]);
    // Random ids, topped up (bounded) until both kinds of job are among them.
    const ids = Array.from({ length: 16 }, () => randomUUID());
    for (let i = 0; i < 16 && new Set(ids.map((id) => isProbationJob(id, 50))).size < 2; i += 1)
      ids[i] = randomUUID();
    const picks: string[] = [];
    for (const jobId of ids)
      picks.push((await nodes.matchmaking.selectAndLease(job({ jobId })))!.nodeAddress);
    ids.forEach((id, i) => expect(picks[i]).toBe(isProbationJob(id, 50) ? newcomer : established));
    expect(new Set(picks)).toEqual(new Set([newcomer, established]));
    // Without an established node, every job goes to the newcomer (and the reverse).
    const only = fresh({ LIVE_CELLS: 1, REPUTATION_PROBATION_SHARE_PERCENT: 50 });
    const alone = await join(only, heartbeat(randomAddress(), { capacity: 16 }), 5_000);
    await only.live.mirrorReputation([
      { environment: 'mainnet', address: alone, score: 5_000, probation: true },
    ]);
    for (const jobId of ids)
      expect((await only.matchmaking.selectAndLease(job({ jobId })))?.nodeAddress).toBe(alone);
  });

  it('region preference falls back to other regions when the preferred one has no eligible node', async () => {
    const nodes = fresh();
    const us = await join(nodes, heartbeat(randomAddress(), { region: 'us', capacity: 1 }));
    expect((await nodes.matchmaking.selectAndLease(job({ region: 'eu' })))?.nodeAddress).toBe(us);
  });

  it('a Subcloud job goes only to members, preferring the region asked for', async () => {
    const nodes = fresh();
    const sc = await nodes.admin.createSubcloud({ name: `sc-${randomUUID()}`, environment: 'mainnet' });
    await join(nodes, heartbeat(randomAddress(), { quality: 1 }));
    const memberUs = await join(nodes, heartbeat(randomAddress(), { region: 'us', quality: 1, capacity: 1 }));
    const memberEu = await join(
      nodes,
      heartbeat(randomAddress(), { region: 'eu', quality: 0.2, capacity: 1 }),
    );
    await nodes.admin.addSubcloudMember(sc.id, memberUs);
    await nodes.admin.addSubcloudMember(sc.id, memberEu);
    const picks = [
      await nodes.matchmaking.selectAndLease(job({ subcloudId: sc.id, region: 'eu' })),
      await nodes.matchmaking.selectAndLease(job({ subcloudId: sc.id, region: 'eu' })),
      await nodes.matchmaking.selectAndLease(job({ subcloudId: sc.id })),
    ];
    expect(picks.map((p) => p?.nodeAddress)).toEqual([memberEu, memberUs, undefined]);
  });
});

describe('eligibility: filters combined', () => {
  it('only the node meeting every requirement is chosen; without it, none', async () => {
    const nodes = fresh();
    const sc = await nodes.admin.createSubcloud({ name: `sc-${randomUUID()}`, environment: 'mainnet' });
    const req = job({ version: 'v1', minGpuMemoryMb: 40_000, region: 'eu', subcloudId: sc.id });
    const good = await join(nodes, heartbeat(randomAddress(), { quality: 0.1, capacity: 1 }));
    await nodes.admin.addSubcloudMember(sc.id, good);
    // Each of these members fails exactly one requirement and scores higher than `good`.
    const misses: Array<[Partial<Heartbeat>, Setup | undefined]> = [
      [{ models: [{ name: 'llama3-8b', version: 'v2', active: true }] }, undefined],
      [{ gpu: { model: 'T4', memoryMb: 16_384, count: 1 } }, undefined],
      [{ health: 'unhealthy' }, undefined],
      [{}, flag('pause')],
      [{}, flag('freeze')],
      [{}, flag('shadow_ban')],
    ];
    for (const [over, setup] of misses) {
      const a = await join(nodes, heartbeat(randomAddress(), { quality: 1, ...over }));
      await nodes.admin.addSubcloudMember(sc.id, a);
      await setup?.(nodes, a);
    }
    await join(nodes, heartbeat(randomAddress(), { quality: 1 })); // public, not a member
    const excluded = await join(nodes, heartbeat(randomAddress(), { quality: 1 }));
    await nodes.admin.addSubcloudMember(sc.id, excluded);

    expect((await nodes.matchmaking.selectAndLease({ ...req, excludeNodes: [excluded] }))?.nodeAddress).toBe(
      good,
    );
    expect(
      await nodes.matchmaking.selectAndLease({ ...req, jobId: randomUUID(), excludeNodes: [excluded] }),
    ).toBeUndefined();
  });
});

describe('leases', () => {
  it('a node with capacity k holds at most k leases; a repeated call returns the same lease', async () => {
    const nodes = fresh();
    const a = await join(nodes, heartbeat(randomAddress(), { capacity: 2 }));
    const first = job();
    const l1 = await nodes.matchmaking.selectAndLease(first);
    // The same lease, marked as held (taken by an earlier call: not the repeated caller's to release).
    expect(await nodes.matchmaking.selectAndLease(first)).toEqual({ ...l1, held: true });
    expect(l1?.held).toBeUndefined();
    const l2 = await nodes.matchmaking.selectAndLease(job());
    expect([l1?.nodeAddress, l2?.nodeAddress]).toEqual([a, a]);
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
    await nodes.matchmaking.complete(l1!, 'ok');
    expect((await nodes.matchmaking.selectAndLease(job()))?.nodeAddress).toBe(a);
  });

  it('a repeated selection of a job returns its lease, whichever cell holds it', async () => {
    const nodes = fresh({ LIVE_CELLS: 4 });
    for (let i = 0; i < 12; i += 1) await join(nodes, heartbeat(randomAddress(), { capacity: 3 }));
    const req = job();
    const first = (await nodes.matchmaking.selectAndLease(req))!;
    for (let i = 0; i < 5; i += 1)
      expect(await nodes.matchmaking.selectAndLease(req)).toEqual({ ...first, held: true });
    const held = await Promise.all(
      nodes.live.cellBases('mainnet').map(({ base }) => env.space.redis.zcard(`${base}leaseexp`)),
    );
    expect(held.reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('an expired lease is reported by the sweep; completing it afterwards is refused', async () => {
    const nodes = fresh({ LEASE_TTL_MS: 300 });
    await join(nodes, heartbeat(randomAddress(), { capacity: 1 }));
    const events: LiveEvent[] = [];
    nodes.presence.onEvent((e) => events.push(e));
    const lease = (await nodes.matchmaking.selectAndLease(job()))!;
    await sleep(400);
    expect((await nodes.presence.sweep()).expiredLeases).toBe(1);
    expect(events).toEqual([
      {
        type: 'lease.expired',
        environment: 'mainnet',
        jobId: lease.jobId,
        nodeAddress: lease.nodeAddress,
        fencingToken: lease.fencingToken,
      },
    ]);
    await expect(nodes.matchmaking.complete(lease, 'ok')).rejects.toSatisfy((e) =>
      isAppError(e, 'lease_not_found'),
    );
    // The capacity came back.
    expect(await nodes.matchmaking.selectAndLease(job())).toBeDefined();
  });

  it('the sweep task stops at its abort signal (its lock lost): nothing expired, the next sweep does it', async () => {
    const nodes = fresh({ LEASE_TTL_MS: 300 });
    await join(nodes, heartbeat(randomAddress(), { capacity: 1 }));
    const events: LiveEvent[] = [];
    nodes.presence.onEvent((e) => events.push(e));
    await nodes.matchmaking.selectAndLease(job());
    await sleep(400);
    const lost = new AbortController();
    lost.abort();
    expect(await nodes.sweepTask.run(lost.signal)).toEqual({ offline: 0, expiredLeases: 0, liftedFlags: 0 });
    expect(events).toEqual([]);
    expect(await nodes.sweepTask.run(new AbortController().signal)).toMatchObject({ expiredLeases: 1 });
    expect(events.map((e) => e.type)).toEqual(['lease.expired']);
  });

  it('a completion with a stale fencing token is refused', async () => {
    const nodes = fresh({ LEASE_TTL_MS: 300 });
    await join(nodes, heartbeat(randomAddress(), { capacity: 1 }));
    const req = job();
    const old = (await nodes.matchmaking.selectAndLease(req))!;
    await sleep(400);
    await nodes.presence.sweep();
    const retried = (await nodes.matchmaking.selectAndLease(req))!;
    expect(retried.fencingToken).not.toBe(old.fencingToken);
    await expect(nodes.matchmaking.complete(old, 'ok')).rejects.toSatisfy((e) =>
      isAppError(e, 'lease_stale'),
    );
    await expect(nodes.matchmaking.complete(retried, 'ok')).resolves.toEqual({ penalty: 0 });
  });
});

describe('flags and penalties', () => {
  it('a cooldown flag lifts itself at its expiry; the node is routable again', async () => {
    const nodes = fresh();
    const a = await join(nodes, heartbeat(randomAddress()));
    await nodes.admin.setFlag({
      nodeAddress: a,
      flag: 'pause',
      setBy: 'admin:test',
      expiresAt: new Date(Date.now() + 400),
    });
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
    await sleep(500);
    expect((await nodes.presence.sweep()).liftedFlags).toBe(1);
    expect((await nodes.matchmaking.selectAndLease(job()))?.nodeAddress).toBe(a);
  });

  it('clearing a flag makes the node routable; a shadow ban is invisible in the operator view', async () => {
    const nodes = fresh();
    const a = await join(nodes, heartbeat(randomAddress()));
    await nodes.admin.setFlag({ nodeAddress: a, flag: 'shadow_ban', setBy: 'admin:test', reason: 'abuse' });
    expect(await nodes.presence.viewNode('mainnet', a, 'operator')).toMatchObject({
      online: true,
      flags: [],
    });
    expect(await nodes.presence.viewNode('mainnet', a, 'admin')).toMatchObject({ flags: ['shadow_ban'] });
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
    expect(await nodes.admin.clearFlag(a, 'shadow_ban', 'admin:test')).toBe(true);
    expect((await nodes.matchmaking.selectAndLease(job()))?.nodeAddress).toBe(a);
  });

  it('a flag written to PostgreSQL whose mirror was lost is healed by the reconcile task', async () => {
    const nodes = fresh();
    const a = await join(nodes, heartbeat(randomAddress()));
    // As if the process died after the PostgreSQL write and before the Redis write.
    await env.pg.pool.query(
      `insert into node_flags (node_address, flag, set_by) values ($1, 'freeze', 'admin')`,
      [a],
    );
    const probe = job();
    expect((await nodes.matchmaking.selectAndLease(probe))?.nodeAddress).toBe(a);
    await nodes.matchmaking.complete((await nodes.matchmaking.selectAndLease(probe))!, 'ok');
    expect((await nodes.flagReconcileTask.run(new AbortController().signal)) as object).toMatchObject({
      mirrored: expect.any(Number),
    });
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
    // And the other way: deleted in PostgreSQL, still mirrored (a clear lost to a crash or a race).
    await env.pg.pool.query(`delete from node_flags where node_address = $1`, [a]);
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
    expect(await nodes.flagReconcileTask.run(new AbortController().signal)).toMatchObject({ cleared: 1 });
    expect((await nodes.matchmaking.selectAndLease(job()))?.nodeAddress).toBe(a);
  });

  it('failures lower the score below a healthy peer, and enough of them impose a persisted cooldown', async () => {
    const nodes = fresh({ NODE_FAILURE_PENALTY: 500, NODE_COOLDOWN_PENALTY: 1_500 });
    const flaky = await join(nodes, heartbeat(randomAddress(), { quality: 1, capacity: 1 }));
    const steady = await join(nodes, heartbeat(randomAddress(), { quality: 0.97, capacity: 1 }));
    const fail = async () => {
      const l = (await nodes.matchmaking.selectAndLease(job()))!;
      expect(l.nodeAddress).toBe(flaky);
      return nodes.matchmaking.complete(l, 'failed');
    };
    expect(await fail()).toEqual({ penalty: 500 });
    // 10,000 × 0.97 = 9,700 beats 10,000 − 500.
    const l = (await nodes.matchmaking.selectAndLease(job()))!;
    expect(l.nodeAddress).toBe(steady);
    await nodes.matchmaking.complete(l, 'ok');
    await nodes.admin.clearFlag(flaky, 'pause', 'test'); // no-op: not paused yet
    // Two more failures reach the cooldown threshold (steady is kept busy so flaky gets the jobs).
    const busy = (await nodes.matchmaking.selectAndLease(job()))!;
    expect(busy.nodeAddress).toBe(steady);
    await fail();
    await fail();
    const flags = await nodes.admin.listFlags(flaky);
    expect(flags).toMatchObject([{ flag: 'pause', setBy: 'system:penalty' }]);
    expect(flags[0]!.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    expect(await nodes.matchmaking.selectAndLease(job())).toBeUndefined();
  });
});
