// The retention sweep: per namespace and collection, export expiring documents to cold storage, re-read and
// verify the export, delete exactly the exported documents, and record a receipt. A crash at any point is
// resumed by the next sweep from the run's recorded state; nothing is deleted unless it is in a verified export.
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { BSON, type Collection, type Document } from 'mongodb';
import { AppError } from '../../platform/errors.js';
import type { Clock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool } from '../../stores/postgres/pool.js';
import type { ColdStorageTarget } from './cold-storage.js';
import { COLLECTIONS, retentionCutoff } from './record.js';
import type { RecordsRepository } from './records.repository.js';
import { RetentionRepository, type ExportFile, type RetentionRun } from './retention.repository.js';

export interface RetentionOptions {
  fileMaxDocs: number;
  deleteBatchSize: number;
}

/** Points where a test may stop the worker as if it had crashed. */
export type RetentionStep = 'exported-unverified' | 'verified' | 'deleted-batch';

export interface RetentionSummary {
  namespaces: number;
  runs: number;
  deleted: number;
}

type StoredDoc = Document & { _id: string; ns: string; ts: Date };

export class RetentionService {
  private readonly runs = new RetentionRepository();
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      pool: Pool;
      repo: RecordsRepository;
      target: ColdStorageTarget;
      clock: Clock;
      log: Logger;
      options: RetentionOptions;
      /** Called at each step; a throw stops the run there, as a crash would. */
      onStep?: (step: RetentionStep, run: RetentionRun) => void | Promise<void>;
    },
  ) {
    this.log = deps.log.child({ component: 'retention' });
  }

  private collections(): Array<Collection<StoredDoc>> {
    const { repo } = this.deps;
    return [repo.jobs, repo.logs, repo.qc] as unknown as Array<Collection<StoredDoc>>;
  }

  /** Sweeps every namespace; run it under the task runner's lock (one runner at a time). */
  async sweep(signal?: AbortSignal): Promise<RetentionSummary> {
    const summary: RetentionSummary = { namespaces: 0, runs: 0, deleted: 0 };
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const page = await this.runs.listNamespaces(this.deps.pool, after, 500);
      for (const ns of page) {
        if (signal?.aborted) return summary;
        summary.namespaces += 1;
        for (const r of await this.sweepNamespace(ns.id, ns.retentionDays)) {
          summary.runs += 1;
          summary.deleted += r.deletedCount ?? 0;
        }
      }
      if (page.length < 500) return summary;
      after = page[page.length - 1]!.id;
    }
  }

  async sweepNamespace(namespaceId: string, retentionDays: number): Promise<RetentionRun[]> {
    const done: RetentionRun[] = [];
    for (const col of this.collections()) {
      // A crashed run keeps its own cut-off: it is finished as it was started.
      let run = await this.runs.findOpenRun(this.deps.pool, namespaceId, col.collectionName);
      if (!run) {
        const cutoff = retentionCutoff(this.deps.clock.now(), retentionDays);
        const any = await col.findOne(
          { ns: { $eq: namespaceId }, ts: { $lt: cutoff } },
          { projection: { _id: 1 } },
        );
        if (!any) continue;
        run = await this.runs.createRun(this.deps.pool, {
          id: randomUUID(),
          namespaceId,
          collection: col.collectionName,
          cutoff,
          target: this.deps.target.description,
        });
      }
      done.push(await this.finishRun(col, run));
    }
    return done;
  }

  private prefixOf(run: RetentionRun): string {
    return `${run.namespaceId}/${run.collection}/${run.id}`;
  }

  private async finishRun(col: Collection<StoredDoc>, run: RetentionRun): Promise<RetentionRun> {
    const log = this.log.child({ runId: run.id, namespaceId: run.namespaceId, collection: run.collection });
    if (run.status === 'exporting') {
      // Whatever an earlier attempt wrote was never verified: start the export of this run again.
      await this.deps.target.removePrefix(this.prefixOf(run));
      const exported = await this.exportRun(col, run);
      await this.deps.onStep?.('exported-unverified', run);
      await this.verify(run, exported.files);
      await this.runs.markExported(this.deps.pool, run.id, exported);
      run = { ...run, ...exported, status: 'exported' };
      log.info({ docs: exported.docCount, files: exported.files.length }, 'retention export verified');
      await this.deps.onStep?.('verified', run);
    } else {
      // Resumed after a crash between export and the end of the delete: the files must still verify.
      await this.verify(run, run.files);
    }
    const deleted = await this.deleteExported(col, run);
    await this.runs.markDone(this.deps.pool, run.id, deleted);
    log.info({ deleted }, 'retention run done');
    return { ...run, status: 'done', deletedCount: deleted };
  }

  /** Streams the expiring documents (by _id) into gzip'd EJSON-lines files and a manifest. */
  private async exportRun(col: Collection<StoredDoc>, run: RetentionRun) {
    const cursor = col
      .find({ ns: { $eq: run.namespaceId }, ts: { $lt: run.cutoff } })
      .sort({ _id: 1 })
      .batchSize(1000);
    const it = cursor[Symbol.asyncIterator]();
    const files: ExportFile[] = [];
    let rangeFrom: Date | null = null;
    let rangeTo: Date | null = null;
    let docCount = 0;
    try {
      let next = await it.next();
      while (!next.done) {
        const name = `${this.prefixOf(run)}/part-${String(files.length).padStart(5, '0')}.jsonl.gz`;
        let count = 0;
        const max = this.deps.options.fileMaxDocs;
        const first = next.value;
        async function* lines(): AsyncGenerator<string> {
          let buf = '';
          let doc: StoredDoc = first;
          for (;;) {
            buf += `${BSON.EJSON.stringify(doc, { relaxed: false })}\n`;
            count += 1;
            if (!rangeFrom || doc.ts < rangeFrom) rangeFrom = doc.ts;
            if (!rangeTo || doc.ts > rangeTo) rangeTo = doc.ts;
            if (buf.length >= 64 * 1024) {
              yield buf;
              buf = '';
            }
            next = await it.next();
            if (next.done || count >= max) break;
            doc = next.value;
          }
          if (buf) yield buf;
        }
        const written = await this.deps.target.write(name, Readable.from(lines()).pipe(createGzip()));
        files.push({ name, count, ...written });
        docCount += count;
      }
    } finally {
      await cursor.close();
    }
    const manifest = {
      version: 1,
      runId: run.id,
      namespaceId: run.namespaceId,
      collection: run.collection,
      cutoff: run.cutoff.toISOString(),
      count: docCount,
      range: { from: rangeFrom, to: rangeTo },
      files,
    };
    const m = await this.deps.target.write(
      `${this.prefixOf(run)}/manifest.json`,
      Readable.from([Buffer.from(JSON.stringify(manifest, null, 2))]),
    );
    return { files, docCount, rangeFrom, rangeTo, manifestSha256: m.sha256 };
  }

  /**
   * Re-reads every file: its SHA-256 and count must match, and every document must belong to the namespace,
   * be older than the cut-off and have an _id greater than the one before (so none appears twice).
   */
  private async verify(run: RetentionRun, files: ExportFile[]): Promise<void> {
    let prev: string | undefined;
    for (const f of files) {
      let n = 0;
      for await (const id of this.readIds(run, f, (doc) => {
        if (doc.ns !== run.namespaceId || !(doc.ts < run.cutoff))
          throw new AppError(
            'export_verification_failed',
            `${f.name}: document ${doc._id} does not belong in this run`,
          );
      })) {
        if (prev !== undefined && !(id > prev))
          throw new AppError('export_verification_failed', `${f.name}: _id ${id} out of order or repeated`);
        prev = id;
        n += 1;
      }
      if (n !== f.count)
        throw new AppError(
          'export_verification_failed',
          `${f.name}: ${n} documents, manifest says ${f.count}`,
        );
    }
  }

  /** Yields the _ids of one export file while checking the file's SHA-256 as it streams. */
  private async *readIds(
    run: RetentionRun,
    f: ExportFile,
    check?: (doc: StoredDoc) => void,
  ): AsyncGenerator<string> {
    const raw = this.deps.target.read(f.name);
    const hash = createHash('sha256');
    raw.on('data', (c: Buffer) => hash.update(c));
    const rl = createInterface({ input: raw.pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line) continue;
      const doc = BSON.EJSON.parse(line, { relaxed: false }) as StoredDoc;
      check?.(doc);
      yield doc._id;
    }
    const sha = hash.digest('hex');
    if (sha !== f.sha256)
      throw new AppError(
        'export_verification_failed',
        `${f.name}: SHA-256 ${sha}, expected ${f.sha256} (run ${run.id})`,
      );
  }

  /** Deletes exactly the documents listed in the verified export, in batches; returns how many are gone. */
  private async deleteExported(col: Collection<StoredDoc>, run: RetentionRun): Promise<number> {
    let gone = 0;
    const flush = async (ids: string[]) => {
      await col.deleteMany({ ns: { $eq: run.namespaceId }, _id: { $in: ids } });
      const left = await col.countDocuments({ ns: { $eq: run.namespaceId }, _id: { $in: ids } });
      if (left !== 0) throw new AppError('store_unavailable', `${left} exported documents are still present`);
      gone += ids.length;
      await this.deps.onStep?.('deleted-batch', run);
    };
    for (const f of run.files) {
      let batch: string[] = [];
      for await (const id of this.readIds(run, f)) {
        batch.push(id);
        if (batch.length >= this.deps.options.deleteBatchSize) {
          await flush(batch);
          batch = [];
        }
      }
      if (batch.length > 0) await flush(batch);
    }
    return gone;
  }

  listReceipts(namespaceId: string): Promise<RetentionRun[]> {
    return this.runs.listRuns(this.deps.pool, namespaceId);
  }
}

export const RETAINED_COLLECTIONS = Object.values(COLLECTIONS);
