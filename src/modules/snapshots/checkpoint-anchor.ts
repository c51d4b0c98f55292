// Anchoring database records to the signed checkpoint log: rolling a published head without a record forward, and
// checking that a recorded snapshot is the one its signed checkpoint names.
import type { Clock } from '../../platform/clock.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import { carKey, type ColdStore } from '../../stores/cold/index.js';
import { withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { AuditService } from '../audit/index.js';
import { checkAgainstReport } from './chain-verify.js';
import { checkSignature, type CheckpointSigner } from './checkpoint.js';
import type { CheckpointLog } from './checkpoint-log.js';
import { SnapshotReader } from './snapshot-reader.js';
import type { VerifyReport } from './snapshot-verify.js';
import type { SnapshotRecord, SnapshotsRepository } from './snapshots.repository.js';

export interface AnchorContext {
  pool: Pool;
  log: Logger;
  clock: Clock;
  audit: AuditService;
  target: ColdStore;
  checkpoints?: { signer: CheckpointSigner; log: CheckpointLog };
  repo: SnapshotsRepository;
  verifyArchived(cid: string): Promise<VerifyReport>;
  source(cid: string): Promise<SnapshotReader | Uint8Array | undefined>;
}

/**
 * A create that published its checkpoint but whose COMMIT failed (or crashed) leaves the log's head without a row.
 * When that head is signed by the network key, directly follows the newest record, and its archived CAR verifies
 * against its CID and equals what the checkpoint signs, it is recorded now; anything else is left for
 * `nextCheckpoint` to refuse.
 */
export async function rollForwardHead(ctx: AnchorContext): Promise<void> {
  const cp = ctx.checkpoints;
  if (!cp) return;
  const head = (await cp.log.read()).at(-1);
  if (!head) return;
  const { pool, target } = ctx;
  const c = head.checkpoint;
  if (await ctx.repo.byCid(pool, c.cid)) return;
  const latest = await ctx.repo.latest(pool);
  if (c.prev !== (latest?.cid ?? null) || c.seq !== (latest?.seq ?? 0) + 1) return;
  if (!checkSignature(head, cp.signer.publicKey) || !(await target.exists(carKey(c.cid)))) return;
  let report: VerifyReport;
  try {
    report = await ctx.verifyArchived(c.cid);
  } catch (err) {
    throw new AppError(
      'chain_broken',
      `the checkpoint log's head ${c.cid} has no record and its archived CAR does not verify: ${(err as Error).message}`,
    );
  }
  const diff = checkAgainstReport(head, report);
  if (diff)
    throw new AppError('chain_broken', `the checkpoint log's head ${c.cid} differs from its CAR: ${diff}`);
  const src = await ctx.source(c.cid);
  const snap = src instanceof SnapshotReader ? src : await SnapshotReader.open(src!, c.cid);
  const m = snap.manifest;
  await snap.close();
  const record: SnapshotRecord = {
    seq: c.seq,
    cid: c.cid,
    prevCid: c.prev,
    sizeBytes: BigInt(report.bytes),
    location: target.locate(carKey(c.cid)),
    rollupFrom: m.rollupRange?.from ?? null,
    rollupTo: m.rollupRange?.to ?? null,
    auditSeq: c.auditHead ? BigInt(c.auditHead.seq) : null,
    auditHash: c.auditHead ? Buffer.from(c.auditHead.hash, 'hex') : null,
    createdAt: new Date(c.createdAt),
    verifiedAt: ctx.clock.now(),
  };
  await withTransaction(pool, async (tx) => {
    await ctx.repo.insert(tx, { ...record, verifiedAt: record.verifiedAt! });
    await ctx.audit.append(
      {
        actor: 'system:snapshots',
        action: 'snapshot.roll_forward',
        target: c.cid,
        body: { seq: c.seq, size: report.bytes },
      },
      tx,
    );
  });
  ctx.log.warn({ cid: c.cid, seq: c.seq }, 'recorded a published checkpoint that had no record');
}

/**
 * Why `cid` is not anchored by the signed checkpoint log, when there is one: the CID a database row names is only
 * as good as PostgreSQL (a rewritten row can point at a consistent forgery), the log signed by the network key is not.
 */
export async function checkpointMismatch(
  cp: AnchorContext['checkpoints'],
  cid: string,
  report: VerifyReport,
): Promise<string | undefined> {
  if (!cp) return undefined;
  const log = await cp.log.read();
  if (log.length === 0) return undefined;
  const signed = log.find((s) => s.checkpoint.cid === cid);
  if (!signed) return `snapshot ${cid} is not in the signed checkpoint log`;
  if (!checkSignature(signed, cp.signer.publicKey))
    return `the signed checkpoint of snapshot ${cid} is not signed by the network key`;
  const diff = checkAgainstReport(signed, report);
  return diff ? `snapshot ${cid} differs from its signed checkpoint: ${diff}` : undefined;
}
