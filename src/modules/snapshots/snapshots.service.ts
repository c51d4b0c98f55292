// Snapshots: builds the chained, content-addressed CAR of the authoritative state in one repeatable-read view,
// archives it, verifies the archived copy and records it; verifies stored snapshots and builds inclusion proofs.
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Clock } from '../../platform/clock.js';
import { carKey, type ColdStore } from '../../stores/cold/index.js';
import { withAdvisoryLock, withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { AuditService } from '../audit/index.js';
import { CarFileWriter } from './car-io.js';
import { buildProof, type InclusionProof } from './proofs.js';
import {
  finishWithManifest,
  tableRows,
  writeSection,
  type ChunkLimits,
  type SectionSummary,
} from './snapshot-builder.js';
import { SnapshotReader } from './snapshot-reader.js';
import type { Manifest } from './manifest.js';
import {
  checkSignature,
  checkpointHash,
  checkpointOf,
  type CheckpointSigner,
  type SignedCheckpoint,
} from './checkpoint.js';
import { readCheckpointLog, type CheckpointLog } from './checkpoint-log.js';
import { checkpointMismatch, rollForwardHead } from './checkpoint-anchor.js';
import { checkAgainstReport, verifyChain, type ChainReport } from './chain-verify.js';
import { ledgerAgainst, type LedgerAnchorResult } from './ledger-anchor.js';
import {
  verifyOpened,
  verifySnapshotFile,
  type VerifyProgress,
  type VerifyReport,
} from './snapshot-verify.js';
import { snapshotSections } from '../canonical/index.js';
import {
  RECORD_EXPORTS,
  RECORD_EXPORT_CID,
  markExportsReferenced,
  recordExportRows,
  recordExportsSpec,
  unreferencedExportRuns,
} from './record-exports.js';
import { SnapshotsRepository, type SnapshotRecord } from './snapshots.repository.js';

export type ProgressFn = (p: VerifyProgress) => void | Promise<void>;

/** What pruning learns from the archive: the covering snapshot and what it holds for the days, or why not. */
export type ArchiveCover =
  | { cid: string; days: number; jobs: bigint; tokens: bigint; credits: bigint }
  | { reason: string };

/** Rolled-up days and job rollup totals of [from, to) as the snapshot holds them. */
async function rollupTotalsIn(snap: SnapshotReader, from: string, to: string) {
  let days = 0;
  for await (const p of snap.rows('rollup_periods'))
    if ((p[0] as string) >= from && (p[0] as string) < to) days += 1;
  let jobs = 0n;
  let tokens = 0n;
  let credits = 0n;
  for await (const r of snap.rows('job_rollups')) {
    const day = r[0] as string;
    if (day < from || day >= to) continue;
    jobs += BigInt(r[5] as number);
    tokens += BigInt(r[6] as number) + BigInt(r[7] as number);
    credits += BigInt(r[8] as number);
  }
  return { days, jobs, tokens, credits };
}

export interface CreateResult {
  record: SnapshotRecord;
  sections: Array<{ name: string; count: number }>;
  blocks: number;
}

export interface SnapshotsDeps {
  pool: Pool;
  log: Logger;
  clock: Clock;
  audit: AuditService;
  target: ColdStore;
  limits: ChunkLimits;
  /** Signs each snapshot's checkpoint with the network key and appends it to the log outside the database. */
  checkpoints?: { signer: CheckpointSigner; log: CheckpointLog };
}

export class SnapshotsService {
  private readonly repo = new SnapshotsRepository();

  constructor(private readonly deps: SnapshotsDeps) {}

  /**
   * One snapshot at a time (advisory lock). Crash-safe: the CAR is written to a scratch file, archived under its
   * CID, read back and verified, and only then recorded; an interrupted run leaves no record and the next starts over.
   */
  async create(opts: { onProgress?: ProgressFn } = {}): Promise<CreateResult> {
    // Locks are per schema: several networks (or test schemas) may share one server.
    const schema = (await this.deps.pool.query<{ s: string }>('select current_schema() as s')).rows[0]!.s;
    const r = await withAdvisoryLock(this.deps.pool, `rty:snapshot:create:${schema}`, () =>
      this.createLocked(opts),
    );
    if (!r.ran)
      throw new AppError('precondition_failed', 'another snapshot is being created; try again later');
    return r.value;
  }

  private async createLocked(opts: { onProgress?: ProgressFn }): Promise<CreateResult> {
    const { pool, target } = this.deps;
    const progress = opts.onProgress ?? (() => undefined);
    // A run killed mid-write leaves its scratch file; an hour is far beyond any live writer's idle time.
    const swept = await target.sweepScratch(60 * 60 * 1000);
    if (swept > 0) this.deps.log.warn({ swept }, 'removed stale snapshot scratch files');
    await this.rollForward();
    const scratch = join(
      await target.scratchDir(),
      `.snapshot-${randomBytes(6).toString('hex')}.car.partial`,
    );
    const built = await withTransaction(
      pool,
      async (tx) => {
        const prev = await this.repo.latest(tx);
        const config = await this.repo.configHead(tx);
        const range = await this.repo.rollupRange(tx);
        const head = await this.deps.audit.head(tx);
        const ledger = await this.repo.ledgerTotals(tx);
        const origin = prev ? undefined : await this.repo.origin(tx);
        const car = CarFileWriter.create(scratch);
        try {
          const sections: SectionSummary[] = [];
          for (const [i, spec] of snapshotSections.entries()) {
            await progress({ stage: 'read', done: i, total: snapshotSections.length, detail: spec.name });
            sections.push(
              await writeSection(car, spec.name, spec.columns, tableRows(tx, spec), this.deps.limits),
            );
          }
          // The record exports since the predecessor (marked as referenced once this snapshot is recorded).
          const exportRuns = await unreferencedExportRuns(tx);
          const { columns } = recordExportsSpec;
          sections.push(
            await writeSection(car, RECORD_EXPORTS, columns, recordExportRows(tx), this.deps.limits),
          );
          const { cid, manifest } = await finishWithManifest(
            car,
            {
              kind: 'snapshot',
              seq: (prev?.seq ?? 0) + 1,
              prev: prev ? (SnapshotReader.parseCid(prev.cid) as CID) : null,
              createdAt: this.deps.clock.now().toISOString(),
              network: { configVersion: config?.version ?? null, configDigest: config?.digest ?? null },
              rollupRange: range ?? null,
              auditHead: head ? { seq: Number(head.seq), hash: head.hash } : null,
              ledger,
              origin: origin ? (SnapshotReader.parseCid(origin) as CID) : null,
            },
            sections,
          );
          return { cid: cid.toString(), manifest, blocks: car.blocks, head, exportRuns };
        } catch (err) {
          await car.abort();
          await unlink(scratch).catch(() => undefined);
          throw err;
        }
      },
      'repeatable read',
    );
    await progress({ stage: 'written', done: 1, total: 1, detail: built.cid });
    let stored: { location: string; sizeBytes: number };
    try {
      stored = await target.put(carKey(built.cid), scratch);
    } finally {
      await unlink(scratch).catch(() => undefined);
    }
    let record: SnapshotRecord;
    let report: VerifyReport;
    let published = false;
    try {
      await progress({ stage: 'archived', done: 1, total: 1, detail: stored.location });
      // Verify the archived copy, pinned to the CID just built: what is recorded is what can be read back.
      report = await this.verifyArchived(built.cid, opts.onProgress);
      const m = built.manifest;
      record = {
        seq: m.seq!,
        cid: built.cid,
        prevCid: m.prev?.toString() ?? null,
        sizeBytes: BigInt(stored.sizeBytes),
        location: stored.location,
        rollupFrom: m.rollupRange?.from ?? null,
        rollupTo: m.rollupRange?.to ?? null,
        auditSeq: built.head?.seq ?? null,
        auditHash: built.head?.hash ?? null,
        createdAt: new Date(m.createdAt),
        verifiedAt: this.deps.clock.now(),
      };
      const signed = await this.nextCheckpoint(built.cid, m, report);
      await withTransaction(pool, async (tx) => {
        await this.repo.insert(tx, { ...record, verifiedAt: record.verifiedAt! });
        await markExportsReferenced(tx, built.exportRuns, record.seq);
        await this.deps.audit.append(
          {
            actor: 'system:snapshots',
            action: 'snapshot.create',
            target: built.cid,
            body: { seq: record.seq, size: stored.sizeBytes },
          },
          tx,
        );
        // Published last, inside the transaction: a failed log write records nothing. Once the archive's log line is
        // written the checkpoint is out: the CAR stays whatever follows (a failed COMMIT is rolled forward by the
        // next create), and a witness that cannot be written is only logged (the next append catches it up).
        if (signed) {
          const { witnessErrors } = await this.deps.checkpoints!.log.append(signed);
          published = true;
          for (const w of witnessErrors)
            this.deps.log.warn(w, 'checkpoint not mirrored to a witness; the next append catches it up');
        }
      });
    } catch (err) {
      // A snapshot that failed its read-back verify (or was not recorded) must not stay in the archive unrecorded;
      // one whose checkpoint is out already stays (the log names it).
      if (!published) await target.remove(carKey(built.cid)).catch(() => undefined);
      throw err;
    }
    this.deps.log.info({ cid: built.cid, seq: record.seq, bytes: stored.sizeBytes }, 'snapshot created');
    return { record, sections: report.sections, blocks: built.blocks };
  }

  /** Records a published log head whose COMMIT failed (see checkpoint-anchor.ts). */
  private rollForward(): Promise<void> {
    return rollForwardHead({
      ...this.deps,
      repo: this.repo,
      verifyArchived: (cid) => this.verifyArchived(cid),
      source: (cid) => this.source(cid),
    });
  }

  /** The signed checkpoint of a new snapshot, linked to the log's head, which must be its predecessor. */
  private async nextCheckpoint(
    cid: string,
    m: Manifest,
    report: VerifyReport,
  ): Promise<SignedCheckpoint | undefined> {
    const cp = this.deps.checkpoints;
    if (!cp) return undefined;
    const last = (await cp.log.read()).at(-1);
    const prev = m.prev?.toString() ?? null;
    if ((last?.checkpoint.cid ?? null) !== prev)
      throw new AppError(
        'chain_broken',
        `the checkpoint log's head is ${last?.checkpoint.cid ?? 'empty'}, but this snapshot's predecessor is ${prev ?? 'none'}`,
      );
    const prevHash = last ? checkpointHash(last.checkpoint) : null;
    return cp.signer.sign(checkpointOf(cid, m, cp.signer.publicKey, report.ledger, prevHash));
  }

  /** The public key checkpoints are checked against by default (this network's own). */
  get networkKey(): string | undefined {
    return this.deps.checkpoints?.signer.publicKey;
  }

  readCheckpoints(dir?: string): Promise<SignedCheckpoint[]> {
    if (dir) return readCheckpointLog(dir);
    if (!this.deps.checkpoints) throw new AppError('invalid_request', 'no checkpoint log is configured');
    return this.deps.checkpoints.log.read();
  }

  /**
   * The signed checkpoint of `cid` (signature checked against `trustedKey`) and its snapshot, pinned, verified and
   * equal to what the checkpoint commits to: the anchor `audit verify --against` and `ledger verify --against` use.
   */
  async checkpointFor(
    cid: string,
    trustedKey: string,
  ): Promise<{ signed: SignedCheckpoint; snap: SnapshotReader; report: VerifyReport }> {
    const signed = (await this.readCheckpoints()).find((s) => s.checkpoint.cid === cid);
    if (!signed) throw new AppError('not_found', `no checkpoint names snapshot ${cid}`);
    if (!checkSignature(signed, trustedKey))
      throw new AppError('integrity_failed', `the checkpoint of ${cid} is not signed by the network key`);
    const { snap, report } = await this.openVerified(cid);
    const diff = checkAgainstReport(signed, report);
    if (diff) throw new AppError('integrity_failed', `snapshot ${cid} differs from its checkpoint: ${diff}`);
    return { signed, snap, report };
  }

  /** The live ledger reconciled with the checkpointed snapshot `cid` (see ledger-anchor.ts). */
  async ledgerAgainst(cid: string, trustedKey: string): Promise<LedgerAnchorResult & { seq: number }> {
    const { signed, snap } = await this.checkpointFor(cid, trustedKey);
    return { ...(await ledgerAgainst(this.deps.pool, snap, signed)), seq: signed.checkpoint.seq };
  }

  /** The audit entries (seq, hash) of the checkpointed snapshot `cid`, and the head its checkpoint signs. */
  async auditCopy(
    cid: string,
    trustedKey: string,
  ): Promise<{
    seq: number;
    head: { seq: bigint; hash: Buffer } | undefined;
    entries: Array<{ seq: bigint; hash: Buffer }>;
  }> {
    const { signed, snap } = await this.checkpointFor(cid, trustedKey);
    const entries: Array<{ seq: bigint; hash: Buffer }> = [];
    for await (const r of snap.rows('audit_log'))
      entries.push({ seq: BigInt(r[0] as number), hash: Buffer.from(r[7] as Uint8Array) });
    const h = signed.checkpoint.auditHead;
    return {
      seq: signed.checkpoint.seq,
      head: h ? { seq: BigInt(h.seq), hash: Buffer.from(h.hash, 'hex') } : undefined,
      entries,
    };
  }

  /** `verify-chain`: every checkpoint from the first (or `trusted`) and its snapshot; witnesses must agree. */
  async verifyChain(o: {
    trustedKey: string;
    trusted?: string;
    witnesses?: string[];
    onProgress?: ProgressFn;
  }): Promise<ChainReport> {
    const witnesses = [];
    for (const dir of o.witnesses ?? []) witnesses.push({ dir, log: await readCheckpointLog(dir) });
    return verifyChain({
      log: await this.readCheckpoints(),
      trustedKey: o.trustedKey,
      trusted: o.trusted,
      witnesses,
      fetch: (cid) => this.source(cid),
      onProgress: o.onProgress,
    });
  }

  /** The archived bytes of a snapshot, or not_found. */
  async fetch(cid: string): Promise<Uint8Array> {
    SnapshotReader.parseCid(cid);
    const bytes = await this.deps.target.get(carKey(cid));
    if (!bytes) throw new AppError('not_found', `snapshot ${cid} is not in ${this.deps.target.description}`);
    return bytes;
  }

  /** An archived snapshot as a streaming reader over a local copy (released when the reader closes), or undefined. */
  private async source(cid: string): Promise<SnapshotReader | undefined> {
    const local = await this.deps.target.openLocal(carKey(cid));
    return local && SnapshotReader.openFile(local.path, undefined, local.release);
  }

  /** Verifies an archived snapshot pinned to `cid`, streaming a local copy of its file (bounded memory). */
  async verifyArchived(cid: string, onProgress?: ProgressFn): Promise<VerifyReport> {
    SnapshotReader.parseCid(cid);
    const local = await this.deps.target.openLocal(carKey(cid));
    if (!local) throw new AppError('not_found', `snapshot ${cid} is not in ${this.deps.target.description}`);
    const opts = { expectedCid: cid, onProgress, loadPrevious: (prev: string) => this.source(prev) };
    try {
      return await verifySnapshotFile(local.path, opts);
    } finally {
      await local.release();
    }
  }

  /** Verifies bytes pinned to `cid`, offline; the predecessor is looked up in the archive (missing = failure). */
  async verifyBytes(bytes: Uint8Array, cid: string, onProgress?: ProgressFn): Promise<VerifyReport> {
    return verifyOpened(await SnapshotReader.open(bytes, cid), {
      expectedCid: cid,
      onProgress,
      loadPrevious: (prev) => this.source(prev),
    });
  }

  /** Opens an archived snapshot pinned to its CID and verifies it fully before anything in it is used. */
  async openVerified(
    cid: string,
    onProgress?: ProgressFn,
    bytes?: Uint8Array,
  ): Promise<{ snap: SnapshotReader; report: VerifyReport }> {
    const snap = await SnapshotReader.open(bytes ?? (await this.fetch(cid)), cid);
    const report = await verifyOpened(snap, {
      expectedCid: cid,
      onProgress,
      loadPrevious: (prev) => this.source(prev),
    });
    return { snap, report };
  }

  /** Verifies an archived snapshot pinned to its CID and against its record; marks it verified only when it passed. */
  async verifyStored(cid: string, onProgress?: ProgressFn): Promise<VerifyReport> {
    const report = await this.verifyArchived(cid, onProgress);
    const rec = await this.repo.byCid(this.deps.pool, cid);
    if (rec) {
      if (rec.prevCid !== report.prev || rec.seq !== report.seq)
        throw new AppError(
          'chain_broken',
          `record of ${cid} (seq ${rec.seq}, prev ${rec.prevCid}) differs from its manifest`,
        );
      await this.repo.markVerified(this.deps.pool, cid, this.deps.clock.now());
    }
    return report;
  }

  /**
   * For pruning [fromDay, toDay): the newest recorded snapshot whose range holds those days, re-read from the archive,
   * verified against its pinned CID, and the rollup totals of those days as that snapshot holds them. A reason when
   * there is none or it does not verify.
   */
  async coverForPrune(fromDay: string, toDayExclusive: string): Promise<ArchiveCover> {
    const last = new Date(new Date(`${toDayExclusive}T00:00:00Z`).getTime() - 86_400_000)
      .toISOString()
      .slice(0, 10);
    const rec = await this.repo.verifiedCovering(this.deps.pool, fromDay, last);
    if (!rec) return { reason: 'not inside an archived, verified snapshot' };
    let opened: { snap: SnapshotReader; report: VerifyReport };
    try {
      opened = await this.openVerified(rec.cid);
    } catch (err) {
      return {
        reason: `snapshot ${rec.cid} does not verify against its pinned CID: ${(err as Error).message}`,
      };
    }
    const unanchored = await this.checkpointMismatch(rec.cid, opened.report);
    if (unanchored) return { reason: unanchored };
    return { cid: rec.cid, ...(await rollupTotalsIn(opened.snap, fromDay, toDayExclusive)) };
  }

  private checkpointMismatch(cid: string, report: VerifyReport): Promise<string | undefined> {
    return checkpointMismatch(this.deps.checkpoints, cid, report);
  }

  /** The audit head the newest snapshot recorded (anchors `audit verify` against a truncated tail). */
  async latestAuditAnchor(): Promise<{ seq: bigint; hash: Buffer } | undefined> {
    const rec = await this.repo.latest(this.deps.pool);
    return rec?.auditSeq != null && rec.auditHash ? { seq: rec.auditSeq, hash: rec.auditHash } : undefined;
  }

  list(limit = 20): Promise<SnapshotRecord[]> {
    return this.repo.list(this.deps.pool, limit);
  }

  /**
   * Inclusion proof of one namespace balance or one rollup row (key: day, namespace, model, node, status), from the
   * archived snapshot `cid`, pinned and verified first (a forged file never yields a proof).
   */
  async prove(
    cid: string,
    what: { namespaceId: string } | { rollupKey: string[] } | { recordExportCid: string },
    bytes?: Uint8Array,
  ): Promise<InclusionProof> {
    const { snap } = await this.openVerified(cid, undefined, bytes);
    if ('namespaceId' in what) return buildProof(snap, 'credit_balances', (r) => r[0] === what.namespaceId);
    if ('recordExportCid' in what)
      return buildProof(snap, RECORD_EXPORTS, (r) => r[RECORD_EXPORT_CID] === what.recordExportCid);
    const key = what.rollupKey;
    return buildProof(snap, 'job_rollups', (r) => key.every((k, i) => String(r[i] ?? '') === k));
  }
}
