// `rty snapshot create|list|verify|prove|verify-proof|restore|freeze`: the archive of the authoritative state.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { systemClock } from '../../platform/clock.js';
import { createPgPool } from '../../stores/postgres/pool.js';
import { createRedis } from '../../stores/redis/client.js';
import { RedisKeys, liveSuffix } from '../../stores/redis/keys.js';
import {
  checkProof,
  freezeNetwork,
  restoreSnapshot,
  sortedSetOnlineNodes,
  verifySnapshot,
  type OnlineNodesSource,
  type VerifyReport,
} from '../../modules/snapshots/index.js';
import type { CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { withArchive, type ArchiveServices } from './archive-wiring.js';

const mb = (n: number) => (n / 1024 / 1024).toFixed(2);

function printReport(ctx: CliContext, r: VerifyReport, secs: number): void {
  for (const s of r.sections) ctx.out(`  ${s.name}: ${s.count} rows`);
  ctx.out(
    `snapshot ${r.cid} OK: ${r.kind} seq ${r.seq ?? '-'}, ${r.blocks} blocks, ${mb(r.bytes)} MB, ${r.periods} rollup periods, ` +
      `${r.auditEntries} audit entries, chain ${r.chain}${r.prev ? ` (prev ${r.prev})` : ''}; ${secs.toFixed(2)}s, ${(r.bytes / 1048576 / secs).toFixed(1)} MB/s`,
  );
}

/** A path to a CAR file, or a CID looked up in the archive. */
async function load(s: ArchiveServices, ref: string): Promise<Uint8Array> {
  return existsSync(ref) ? readFile(ref) : s.snapshots.fetch(ref);
}

export async function runSnapshotCreate(ctx: CliContext): Promise<number> {
  return withArchive(ctx, async ({ snapshots }) => {
    const progress = createProgress('snapshot');
    const t0 = performance.now();
    const r = await snapshots.create({ onProgress: (p) => progress.update(p) });
    progress.finish();
    for (const s of r.sections) ctx.out(`  ${s.name}: ${s.count} rows`);
    ctx.out(
      `snapshot ${r.record.seq} ${r.record.cid}: ${r.blocks} blocks, ${mb(Number(r.record.sizeBytes))} MB at ${r.record.location}, ` +
        `prev ${r.record.prevCid ?? '-'}, verified; ${((performance.now() - t0) / 1000).toFixed(2)}s`,
    );
    return 0;
  });
}

export async function runSnapshotList(ctx: CliContext): Promise<number> {
  return withArchive(ctx, async ({ snapshots }) => {
    for (const r of await snapshots.list())
      ctx.out(
        `${r.seq}\t${r.cid}\t${r.createdAt.toISOString()}\t${r.sizeBytes} B\trollups ${r.rollupFrom ?? '-'}..${r.rollupTo ?? '-'}\t${r.verifiedAt ? 'verified' : 'unverified'}`,
      );
    return 0;
  });
}

export async function runSnapshotVerify(
  ctx: CliContext,
  ref: string,
  opts: { previous?: string },
): Promise<number> {
  return withArchive(ctx, async (s) => {
    const progress = createProgress('verify');
    const t0 = performance.now();
    const isFile = existsSync(ref);
    const previous = opts.previous ? await readFile(opts.previous) : undefined;
    const report =
      !isFile && !previous
        ? await s.snapshots.verifyStored(ref, (p) => progress.update(p))
        : await verifySnapshot(await load(s, ref), {
            onProgress: (p) => progress.update(p),
            loadPrevious: async (cid) => previous ?? s.target.get(`${cid}.car`),
          });
    progress.finish();
    printReport(ctx, report, (performance.now() - t0) / 1000);
    return 0;
  });
}

export async function runSnapshotProve(
  ctx: CliContext,
  ref: string,
  opts: { namespace?: string; rollup?: string },
): Promise<number> {
  if (!opts.namespace === !opts.rollup) {
    ctx.out('give exactly one of --namespace <id> or --rollup <day,namespace,model,node,status>');
    return 2;
  }
  return withArchive(ctx, async (s) => {
    const bytes = await load(s, ref);
    const proof = await s.snapshots.prove(
      bytes,
      opts.namespace ? { namespaceId: opts.namespace } : { rollupKey: opts.rollup!.split(',') },
    );
    ctx.out(JSON.stringify(proof, null, 2));
    return 0;
  });
}

export async function runSnapshotVerifyProof(
  ctx: CliContext,
  file: string,
  opts: { root?: string },
): Promise<number> {
  const proof = JSON.parse(await readFile(file, 'utf8')) as unknown;
  const r = checkProof(proof, opts.root);
  ctx.out(
    r.ok ? `proof OK against root ${opts.root ?? '(the proof’s own root)'}` : `proof INVALID: ${r.reason}`,
  );
  return r.ok ? 0 : 1;
}

export async function runSnapshotRestore(
  ctx: CliContext,
  file: string,
  opts: { database: string; schema: string },
): Promise<number> {
  const pool = createPgPool({
    url: opts.database,
    size: 2,
    schema: opts.schema,
    applicationName: 'rty-restore',
  });
  try {
    const progress = createProgress('restore');
    const t0 = performance.now();
    const r = await restoreSnapshot(
      await readFile(file),
      { pool, schema: opts.schema, log: ctx.log },
      {
        onProgress: (p) => progress.update(p),
      },
    );
    progress.finish();
    for (const x of r.rows) ctx.out(`  ${x.name}: ${x.count} rows`);
    ctx.out(
      `restored snapshot ${r.report.cid} (seq ${r.report.seq}) into schema ${opts.schema}; ${((performance.now() - t0) / 1000).toFixed(2)}s`,
    );
    return 0;
  } finally {
    await pool.end();
  }
}

export async function runSnapshotFreeze(ctx: CliContext, opts: { onlineKey?: string }): Promise<number> {
  const { config } = ctx;
  const redis = createRedis(config.REDIS_URL);
  try {
    return await withArchive(ctx, async ({ pool, target }) => {
      const r = await freezeNetwork({
        pool,
        target,
        online: opts.onlineKey
          ? sortedSetOnlineNodes(redis, `${config.REDIS_KEY_PREFIX}${opts.onlineKey}`)
          : liveCellsOnline(redis, config),
        limits: { rows: config.SNAPSHOT_CHUNK_ROWS, bytes: config.SNAPSHOT_CHUNK_MAX_BYTES },
        clock: systemClock,
      });
      for (const s of r.sections) ctx.out(`  ${s.name}: ${s.count} rows`);
      ctx.out(`freeze ${r.cid}: ${mb(r.sizeBytes)} MB at ${r.location}`);
      return 0;
    });
  } finally {
    redis.disconnect();
  }
}

/** Online nodes as the live-state module keeps them: every cell's last-seen set, heard within the TTL. */
function liveCellsOnline(
  redis: ReturnType<typeof createRedis>,
  config: CliContext['config'],
): OnlineNodesSource {
  const keys = new RedisKeys(config.REDIS_KEY_PREFIX);
  return {
    async onlineNodes() {
      const since = String(Date.now() - config.HEARTBEAT_TTL_MS);
      const all: Array<{ node: string; score: string }> = [];
      for (const env of ['testnet', 'mainnet']) {
        for (let cell = 0; cell < config.LIVE_CELLS; cell += 1) {
          all.push(
            ...(await sortedSetOnlineNodes(
              redis,
              `${keys.liveCellBase(env, cell)}${liveSuffix.seen}`,
              since,
            ).onlineNodes()),
          );
        }
      }
      return all.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    },
  };
}
