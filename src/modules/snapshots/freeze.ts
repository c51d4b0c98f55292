// Freeze: one consistent view of the live network (jobs in flight, registry, balances and holds from one PostgreSQL
// repeatable-read transaction, online nodes from Redis read inside it), exported as a CAR like a snapshot.
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from '../../stores/redis/client.js';
import { withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { Clock } from '../../platform/clock.js';
import { carKey, type ColdStore } from '../../stores/cold/index.js';
import { CarFileWriter } from './car-io.js';
import { activeJobsSpec, snapshotSections } from '../canonical/index.js';
import {
  arrayRows,
  tableRows,
  writeSection,
  type ChunkLimits,
  type SectionSummary,
  finishWithManifest,
} from './snapshot-builder.js';
import type { Column, TableSpec } from '../canonical/index.js';

/** Where online node ids come from; the live-state module owns the real key, this reads a sorted set. */
export interface OnlineNodesSource {
  onlineNodes(): Promise<Array<{ node: string; score: string }>>;
}

/** Members of one sorted set (node id → score, e.g. last heartbeat ms), optionally only scores ≥ minScore. */
export function sortedSetOnlineNodes(redis: Redis, key: string, minScore = '-inf'): OnlineNodesSource {
  return {
    async onlineNodes() {
      const flat = await redis.zrangebyscore(key, minScore, '+inf', 'WITHSCORES');
      const out: Array<{ node: string; score: string }> = [];
      for (let i = 0; i + 1 < flat.length; i += 2) out.push({ node: flat[i]!, score: flat[i + 1]! });
      return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    },
  };
}

const onlineColumns: Column[] = [
  { name: 'node', type: 'text' },
  { name: 'score', type: 'text' },
];
const byName = (n: string) => snapshotSections.find((s) => s.name === n)!;
/** Sections of a freeze and the subset of rows each carries. */
const frozen: Array<{ spec: TableSpec; where?: string }> = [
  { spec: activeJobsSpec, where: `where status in ('queued', 'dispatched')` },
  { spec: byName('credit_balances') },
  { spec: byName('node_balances') },
  { spec: byName('credit_holds'), where: `where status = 'pending'` },
  { spec: byName('nodes') },
  { spec: byName('node_flags') },
  { spec: byName('subclouds') },
  { spec: byName('subcloud_members') },
  { spec: byName('network_config_versions') },
];

export interface FreezeResult {
  cid: string;
  location: string;
  sizeBytes: number;
  sections: Array<{ name: string; count: number }>;
}

export async function freezeNetwork(deps: {
  pool: Pool;
  online: OnlineNodesSource;
  target: ColdStore;
  limits: ChunkLimits;
  clock: Clock;
}): Promise<FreezeResult> {
  const scratch = join(
    await deps.target.scratchDir(),
    `.freeze-${randomBytes(6).toString('hex')}.car.partial`,
  );
  const built = await withTransaction(
    deps.pool,
    async (tx) => {
      // The first statement fixes the transaction's view; Redis is read right after, so both describe one moment.
      await tx.query('select 1');
      const online = await deps.online.onlineNodes();
      const car = CarFileWriter.create(scratch);
      try {
        const sections: SectionSummary[] = [];
        for (const f of frozen)
          sections.push(
            await writeSection(
              car,
              f.spec.name,
              f.spec.columns,
              tableRows(tx, f.spec, f.where ?? ''),
              deps.limits,
            ),
          );
        sections.push(
          await writeSection(
            car,
            'online_nodes',
            onlineColumns,
            arrayRows(online.map((o) => [o.node, o.score])),
            deps.limits,
          ),
        );
        const { cid } = await finishWithManifest(
          car,
          {
            kind: 'freeze',
            seq: null,
            prev: null,
            createdAt: deps.clock.now().toISOString(),
            network: { configVersion: null, configDigest: null },
            rollupRange: null,
            auditHead: null,
            ledger: null,
            origin: null,
          },
          sections,
        );
        return { cid: cid.toString(), sections: sections.map((s) => ({ name: s.name, count: s.count })) };
      } catch (err) {
        await car.abort();
        throw err;
      }
    },
    'repeatable read',
  );
  try {
    const stored = await deps.target.put(`freeze-${carKey(built.cid)}`, scratch);
    return {
      cid: built.cid,
      location: stored.location,
      sizeBytes: stored.sizeBytes,
      sections: built.sections,
    };
  } finally {
    await unlink(scratch).catch(() => undefined);
  }
}
