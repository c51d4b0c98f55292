// Snapshots: builds the chained, content-addressed CAR of the authoritative state in one repeatable-read view,
// archives it, verifies the archived copy and records it; verifies stored snapshots and builds inclusion proofs.
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { CID } from 'multiformats/cid';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Clock } from '../../platform/clock.js';
import { withAdvisoryLock, withTransaction, type Pool } from '../../stores/postgres/pool.js';
import type { AuditService } from '../audit/index.js';
import { carKey, type ArchiveTarget } from './archive-target.js';
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
import { verifyOpened, type VerifyProgress, type VerifyReport } from './snapshot-verify.js';
import { snapshotSections } from './sections.js';
import { SnapshotsRepository, type SnapshotRecord } from './snapshots.repository.js';

export type ProgressFn = (p: VerifyProgress) => void | Promise<void>;

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
  target: ArchiveTarget;
  limits: ChunkLimits;
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
        const car = CarFileWriter.create(scratch);
        try {
          const sections: SectionSummary[] = [];
          for (const [i, spec] of snapshotSections.entries()) {
            await progress({ stage: 'read', done: i, total: snapshotSections.length, detail: spec.name });
            sections.push(
              await writeSection(car, spec.name, spec.columns, tableRows(tx, spec), this.deps.limits),
            );
          }
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
            },
            sections,
          );
          return { cid: cid.toString(), manifest, blocks: car.blocks, head };
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
    await progress({ stage: 'archived', done: 1, total: 1, detail: stored.location });
    // Verify the archived copy, not the scratch file: what is recorded is what can be read back.
    const report = await this.verifyBytes(await this.fetch(built.cid), opts.onProgress);
    const m = built.manifest;
    const record: SnapshotRecord = {
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
    await withTransaction(pool, async (tx) => {
      await this.repo.insert(tx, { ...record, verifiedAt: record.verifiedAt! });
      await this.deps.audit.append(
        {
          actor: 'system:snapshots',
          action: 'snapshot.create',
          target: built.cid,
          body: { seq: record.seq, size: stored.sizeBytes },
        },
        tx,
      );
    });
    this.deps.log.info({ cid: built.cid, seq: record.seq, bytes: stored.sizeBytes }, 'snapshot created');
    return { record, sections: report.sections, blocks: built.blocks };
  }

  /** The archived bytes of a snapshot, or not_found. */
  async fetch(cid: string): Promise<Uint8Array> {
    const bytes = await this.deps.target.get(carKey(cid));
    if (!bytes) throw new AppError('not_found', `snapshot ${cid} is not in ${this.deps.target.description}`);
    return bytes;
  }

  /** Verifies bytes offline; the predecessor is looked up in the archive. */
  async verifyBytes(bytes: Uint8Array, onProgress?: ProgressFn): Promise<VerifyReport> {
    return verifyOpened(await SnapshotReader.open(bytes), {
      onProgress,
      loadPrevious: (cid) => this.deps.target.get(carKey(cid)),
    });
  }

  /** Verifies an archived snapshot against its file and its record (chain in PostgreSQL too); marks it verified. */
  async verifyStored(cid: string, onProgress?: ProgressFn): Promise<VerifyReport> {
    const report = await this.verifyBytes(await this.fetch(cid), onProgress);
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

  /** For pruning: the CID of an archived, verified snapshot holding every rolled-up day in [fromDay, toDay). */
  async findVerifiedCovering(fromDay: string, toDayExclusive: string): Promise<string | undefined> {
    const last = new Date(new Date(`${toDayExclusive}T00:00:00Z`).getTime() - 86_400_000)
      .toISOString()
      .slice(0, 10);
    const rec = await this.repo.verifiedCovering(this.deps.pool, fromDay, last);
    if (!rec || !(await this.deps.target.exists(carKey(rec.cid)))) return undefined;
    return rec.cid;
  }

  /** The audit head the newest snapshot recorded (anchors `audit verify` against a truncated tail). */
  async latestAuditAnchor(): Promise<{ seq: bigint; hash: Buffer } | undefined> {
    const rec = await this.repo.latest(this.deps.pool);
    return rec?.auditSeq != null && rec.auditHash ? { seq: rec.auditSeq, hash: rec.auditHash } : undefined;
  }

  list(limit = 20): Promise<SnapshotRecord[]> {
    return this.repo.list(this.deps.pool, limit);
  }

  /** Inclusion proof of one namespace balance or one rollup row (key: day, namespace, model, node, status). */
  async prove(
    bytes: Uint8Array,
    what: { namespaceId: string } | { rollupKey: string[] },
  ): Promise<InclusionProof> {
    const snap = await SnapshotReader.open(bytes);
    if ('namespaceId' in what) return buildProof(snap, 'credit_balances', (r) => r[0] === what.namespaceId);
    const key = what.rollupKey;
    return buildProof(snap, 'job_rollups', (r) => key.every((k, i) => String(r[i] ?? '') === k));
  }
}
