// `rty snapshot create|list|verify|roots|prove|verify-proof|restore|freeze`: the archive of the authoritative state.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ENVIRONMENTS } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import { systemClock } from '../../platform/clock.js';
import { createPgPool } from '../../stores/postgres/pool.js';
import { createRedis } from '../../stores/redis/client.js';
import { RedisKeys, liveSuffix } from '../../stores/redis/keys.js';
import {
  CheckpointSigner,
  checkConsistency,
  checkSignature,
  readCheckpointLog,
  checkProof,
  freezeNetwork,
  restoreSnapshot,
  sortedSetOnlineNodes,
  SnapshotReader,
  verifySnapshotFile,
  type OnlineNodesSource,
  type VerifyReport,
} from '../../modules/snapshots/index.js';
import type { CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { withArchive } from './archive-wiring.js';
import { archiveExit, EXIT } from './archive-exit.js';

const mb = (n: number) => (n / 1024 / 1024).toFixed(2);

function printReport(ctx: CliContext, r: VerifyReport, secs: number): void {
  for (const s of r.sections) ctx.out(`  ${s.name}: ${s.count} rows`);
  ctx.out(
    `snapshot ${r.cid} OK: ${r.kind} seq ${r.seq ?? '-'}, ${r.blocks} blocks, ${mb(r.bytes)} MB, ${r.periods} rollup periods, ` +
      `${r.auditEntries} audit entries, balances equal their entries, chain ${r.chain}${r.prev ? ` (prev ${r.prev})` : ''}; ${secs.toFixed(2)}s, ${(r.bytes / 1048576 / secs).toFixed(1)} MB/s`,
  );
}

/**
 * The CID a `<cid>.car` file name claims, trusted only when the checkpoint log holds a checkpoint of that CID signed by
 * the pinned (network) key: a consistent forgery saved as `<its own cid>.car` pins itself otherwise.
 */
async function nameDerivedCid(file: string, archiveDir: string, signingKey: string): Promise<string> {
  const named = /^(?:freeze-)?([A-Za-z0-9]+)\.car$/.exec(basename(file))?.[1];
  const key = new CheckpointSigner(signingKey).publicKey;
  const log = named ? await readCheckpointLog(archiveDir) : [];
  if (named && log.some((c) => c.checkpoint.cid === named && checkSignature(c, key))) return named;
  throw new AppError(
    'invalid_request',
    `${file}: give the snapshot's CID with --cid <cid> (a file is only trusted against a pinned CID; its name is ` +
      `trusted only when a checkpoint signed by the network key names it)`,
  );
}

/** The CID a file must have: given with --cid, else its checkpointed `<cid>.car` name; a bare CID is looked up. */
async function pinned(
  ctx: CliContext,
  ref: string,
  cid: string | undefined,
): Promise<{ cid: string; bytes: Uint8Array | undefined; path?: string; isFile: boolean }> {
  if (!existsSync(ref)) {
    if (cid !== undefined && cid !== ref)
      throw new AppError('invalid_request', `--cid ${cid} differs from the CID given (${ref})`);
    SnapshotReader.parseCid(ref);
    return { cid: ref, bytes: undefined, isFile: false };
  }
  const expected = cid ?? (await nameDerivedCid(ref, ctx.config.ARCHIVE_DIR, ctx.config.NETWORK_SIGNING_KEY));
  SnapshotReader.parseCid(expected);
  return { cid: expected, bytes: undefined, path: ref, isFile: true };
}

export async function runSnapshotCreate(ctx: CliContext): Promise<number> {
  return withArchive(ctx, ({ snapshots }) =>
    archiveExit(ctx, async () => {
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
    }),
  );
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
  opts: { previous?: string; cid?: string },
): Promise<number> {
  return withArchive(ctx, (s) =>
    archiveExit(ctx, async () => {
      const progress = createProgress('verify');
      const t0 = performance.now();
      const p = await pinned(ctx, ref, opts.cid);
      const previous = opts.previous ? await readFile(opts.previous) : undefined;
      const report =
        !p.isFile && !previous
          ? await s.snapshots.verifyStored(p.cid, (x) => progress.update(x))
          : await verifySnapshotFile(p.path ?? join(ctx.config.ARCHIVE_DIR, `${p.cid}.car`), {
              expectedCid: p.cid,
              onProgress: (x) => progress.update(x),
              loadPrevious: async (cid) => previous ?? s.target.get(`${cid}.car`),
            });
      progress.finish();
      printReport(ctx, report, (performance.now() - t0) / 1000);
      return EXIT.ok;
    }),
  );
}

export async function runSnapshotRoots(
  ctx: CliContext,
  ref: string,
  opts: { cid?: string },
): Promise<number> {
  return withArchive(ctx, (s) =>
    archiveExit(ctx, async () => {
      const p = await pinned(ctx, ref, opts.cid);
      const bytes = p.path ? await readFile(p.path) : undefined;
      const { report } = await s.snapshots.openVerified(p.cid, undefined, bytes);
      for (const x of report.sections) ctx.out(`${x.name}\t${x.count}\t${report.roots[x.name]}`);
      ctx.out(
        `snapshot ${report.cid} seq ${report.seq ?? '-'}: ${report.sections.length} section roots (verified)`,
      );
      return EXIT.ok;
    }),
  );
}

export async function runSnapshotProve(
  ctx: CliContext,
  ref: string,
  opts: { namespace?: string; rollup?: string; recordExport?: string; cid?: string },
): Promise<number> {
  if ([opts.namespace, opts.rollup, opts.recordExport].filter(Boolean).length !== 1) {
    ctx.out(
      'give exactly one of --namespace <id>, --rollup <day,namespace,model,node,status> or --record-export <cid>',
    );
    return EXIT.usage;
  }
  return withArchive(ctx, (s) =>
    archiveExit(ctx, async () => {
      const p = await pinned(ctx, ref, opts.cid);
      const proof = await s.snapshots.prove(
        p.cid,
        opts.namespace
          ? { namespaceId: opts.namespace }
          : opts.recordExport
            ? { recordExportCid: opts.recordExport }
            : { rollupKey: opts.rollup!.split(',') },
        p.path ? await readFile(p.path) : undefined,
      );
      ctx.out(JSON.stringify(proof, null, 2));
      return EXIT.ok;
    }),
  );
}

/** Checks a proof against a root the caller trusts: a pinned snapshot's section root (--cid), or --root. */
export async function runSnapshotVerifyProof(
  ctx: CliContext,
  file: string,
  opts: { root?: string; cid?: string; car?: string },
): Promise<number> {
  if (!opts.root === !opts.cid) {
    ctx.out(
      'give exactly one of --cid <snapshot CID> or --root <hex>: a proof is never checked against its own root',
    );
    return EXIT.usage;
  }
  let proof: unknown;
  try {
    proof = JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (err) {
    ctx.out(`usage: ${file} is not a readable JSON proof (${(err as Error).message})`);
    return EXIT.usage;
  }
  const section = (proof as { section?: unknown }).section;
  const trusted = opts.root
    ? { root: opts.root, what: `root ${opts.root}` }
    : await withArchive(ctx, (s) =>
        archiveExit(ctx, async () => {
          const bytes = opts.car ? await readFile(opts.car) : undefined;
          const { report } = await s.snapshots.openVerified(opts.cid!, undefined, bytes);
          const root = typeof section === 'string' ? report.roots[section] : undefined;
          if (!root)
            throw new AppError('invalid_request', `snapshot ${opts.cid} has no section ${String(section)}`);
          return { root, what: `section ${section} of snapshot ${opts.cid} (root ${root})` };
        }),
      );
  if (typeof trusted === 'number') return trusted;
  const r = checkProof(proof, trusted.root);
  ctx.out(r.ok ? `proof OK against ${trusted.what}` : `proof INVALID: ${r.reason}`);
  return r.ok ? EXIT.ok : EXIT.tampered;
}

export async function runSnapshotRestore(
  ctx: CliContext,
  file: string,
  opts: { database: string; schema: string; cid?: string },
): Promise<number> {
  let cid: string;
  try {
    cid = opts.cid ?? (await nameDerivedCid(file, ctx.config.ARCHIVE_DIR, ctx.config.NETWORK_SIGNING_KEY));
  } catch (err) {
    ctx.out(`usage: ${(err as Error).message}`);
    return EXIT.usage;
  }
  const pool = createPgPool({
    url: opts.database,
    size: 2,
    schema: opts.schema,
    applicationName: 'rty-restore',
  });
  try {
    return await archiveExit(ctx, async () => {
      SnapshotReader.parseCid(cid);
      const progress = createProgress('restore');
      const t0 = performance.now();
      const r = await restoreSnapshot(
        await readFile(file),
        { pool, schema: opts.schema, log: ctx.log },
        { expectedCid: cid, onProgress: (p) => progress.update(p) },
      );
      progress.finish();
      for (const x of r.rows) ctx.out(`  ${x.name}: ${x.count} rows`);
      ctx.out(
        `restored snapshot ${r.report.cid} (seq ${r.report.seq}) into schema ${opts.schema}; ${((performance.now() - t0) / 1000).toFixed(2)}s`,
      );
      return EXIT.ok;
    });
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
      for (const env of ENVIRONMENTS) {
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

export async function runSnapshotVerifyChain(
  ctx: CliContext,
  opts: { key?: string; trusted?: string; witness?: string[]; consistency?: string[] },
): Promise<number> {
  return withArchive(ctx, (s) =>
    archiveExit(ctx, async () => {
      const key = opts.key ?? s.snapshots.networkKey!;
      if (opts.consistency) {
        if (opts.consistency.length !== 2)
          throw new AppError('invalid_request', '--consistency takes two checkpoint hashes: <older> <newer>');
        const [older, newer] = opts.consistency as [string, string];
        const steps = checkConsistency(await s.snapshots.readCheckpoints(), key, older, newer);
        ctx.out(`consistent: checkpoint ${newer} contains ${older} (${steps} signed links back)`);
        return EXIT.ok;
      }
      const progress = createProgress('verify-chain');
      const r = await s.snapshots.verifyChain({
        trustedKey: key,
        trusted: opts.trusted,
        witnesses: opts.witness,
        onProgress: (p) => progress.update(p),
      });
      progress.finish();
      for (const w of r.witnesses)
        ctx.out(`  witness ${w.dir}: ${w.checkpoints} checkpoints, a prefix of the log`);
      ctx.out(
        r.head
          ? `chain OK: ${r.checkpoints} checkpoints from seq ${r.from} to ${r.head.seq}, each signed by ${key.slice(0, 18)}…, each snapshot verified; head ${r.head.cid} checkpoint ${r.head.hash}`
          : 'chain OK: the checkpoint log is empty',
      );
      return EXIT.ok;
    }),
  );
}
