// Freeze against the real PostgreSQL and Redis: active jobs, pending holds and online nodes in one consistent view.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseConfig,
  createPgTestSchema,
  testLog,
  uniqueName,
  type PgTestSchema,
} from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs } from '../../../test/archive-factories.js';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { createRedis, type Redis } from '../../stores/redis/client.js';
import { LedgerService } from '../credits/index.js';
import { freezeNetwork, sortedSetOnlineNodes, verifySnapshot } from './index.js';
import { SnapshotReader } from './snapshot-reader.js';
import { DirectoryStore } from '../../stores/cold/index.js';

let db: PgTestSchema;
let redis: Redis;
let archive: { dir: string; remove(): Promise<void> };
const key = `${uniqueName('test')}:nodes:online`;
let namespaceIds: string[];

beforeAll(async () => {
  db = await createPgTestSchema();
  redis = createRedis(baseConfig.REDIS_URL);
  archive = await tempArchiveDir();
  namespaceIds = (await createNamespaces(db.pool, 2)).map((n) => n.id);
  const now = Date.now();
  // 70 jobs this hour; every 7th is still dispatched (10 active).
  await insertJobs(db.pool, {
    count: 70,
    from: new Date(now - 3_600_000),
    to: new Date(now),
    namespaceIds,
    withUnfinished: true,
  });
  const ledger = new LedgerService({
    pool: db.pool,
    log: testLog,
    options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
  });
  await ledger.topUp(namespaceIds[0]!, 1000n, 't');
  await ledger.reserve(namespaceIds[0]!, '00000000-0000-4000-8000-0000000000f1', 100n);
  await ledger.stop();
  await redis.zadd(
    key,
    now,
    '0x' + 'a'.repeat(40),
    now - 1000,
    '0x' + 'b'.repeat(40),
    now - 60_000,
    '0x' + 'c'.repeat(40),
  );
});
afterAll(async () => {
  await redis.del(key);
  redis.disconnect();
  await db.drop();
  await archive.remove();
});

describe('freeze', () => {
  it('exports active jobs, pending holds and online nodes from one moment, and verifies like a snapshot', async () => {
    const source = sortedSetOnlineNodes(redis, key);
    const result = await freezeNetwork({
      pool: db.pool,
      target: new DirectoryStore(archive.dir),
      limits: { rows: 100, bytes: 64 * 1024 },
      clock: { now: () => new Date() },
      online: {
        // Work that lands while the freeze runs (after its view was fixed) must not appear in it.
        async onlineNodes() {
          await insertJobs(db.pool, {
            count: 7,
            from: new Date(Date.now() - 1000),
            to: new Date(),
            namespaceIds,
            withUnfinished: true,
          });
          return source.onlineNodes();
        },
      },
    });
    const counts = Object.fromEntries(result.sections.map((s) => [s.name, s.count]));
    expect(counts).toMatchObject({ jobs: 10, credit_holds: 1, online_nodes: 3, credit_balances: 2 });
    const active = await db.pool.query(
      `select count(*)::int as n from jobs where status in ('queued', 'dispatched')`,
    );
    expect(active.rows[0].n).toBe(11);
    const bytes = await readFile(result.location);
    const report = await verifySnapshot(bytes);
    expect(report).toMatchObject({ cid: result.cid, kind: 'freeze', chain: 'not-chained' });
    const snap = await SnapshotReader.open(bytes);
    const online: unknown[] = [];
    for await (const r of snap.rows('online_nodes')) online.push(r[0]);
    expect(online).toEqual(['0x' + 'a'.repeat(40), '0x' + 'b'.repeat(40), '0x' + 'c'.repeat(40)]);
  });

  it('reads only nodes scored at or above a minimum (e.g. heartbeat within the TTL)', async () => {
    const recent = await sortedSetOnlineNodes(redis, key, String(Date.now() - 30_000)).onlineNodes();
    expect(recent.map((r) => r.node)).toEqual(['0x' + 'a'.repeat(40), '0x' + 'b'.repeat(40)]);
  });
});
