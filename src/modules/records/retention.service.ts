// The retention sweep: per namespace and collection, export expiring documents to cold storage, re-read and
// verify the export, delete exactly the exported documents, and record a receipt. A crash at any point is
// resumed by the next sweep from the run's recorded state; nothing is deleted unless it is in a verified export.
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { AppError } from '../../platform/errors.js';
import type { Clock } from '../../platform/clock.js';
import type { Logger } from '../../platform/logger.js';
import { FileDagBuilder, type ColdStore } from '../../stores/cold/index.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { retentionCutoff } from './record.js';
import { blobSet, collectionSet, type ExportedEntry, type RetainedSet } from './retained-sets.js';
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

export class RetentionService {
  private readonly runs = new RetentionRepository();
  private readonly log: Logger;

  constructor(
    private readonly deps: {
      pool: Pool;
      repo: RecordsRepository;
      target: ColdStore;
      clock: Clock;
      log: Logger;
      options: RetentionOptions;
      /** Called at each step; a throw stops the run there, as a crash would. */
      onStep?: (step: RetentionStep, run: RetentionRun) => void | Promise<void>;
    },
  ) {
    this.log = deps.log.child({ component: 'retention' });
  }

  /** Documents first, blobs last: every document referencing a blob is as old as the blob or older. */
  private sets(): RetainedSet[] {
    const { repo } = this.deps;
    return [...[repo.jobs, repo.logs, repo.qc].map((c) => collectionSet(c as never)), blobSet(repo.db)];
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
    for (const set of this.sets()) {
      // A crashed run keeps its own cut-off: it is finished as it was started.
      let run = await this.runs.findOpenRun(this.deps.pool, namespaceId, set.name);
      if (!run) {
        const cutoff = retentionCutoff(this.deps.clock.now(), retentionDays);
        if (!(await set.hasExpiring(namespaceId, cutoff))) continue;
        run = await this.runs.createRun(this.deps.pool, {
          id: randomUUID(),
          namespaceId,
          collection: set.name,
          cutoff,
          target: this.deps.target.description,
        });
      }
      done.push(await this.finishRun(set, run));
    }
    return done;
  }

  private prefixOf(run: RetentionRun): string {
    return `${run.namespaceId}/${run.collection}/${run.id}`;
  }

  private async finishRun(set: RetainedSet, run: RetentionRun): Promise<RetentionRun> {
    const log = this.log.child({ runId: run.id, namespaceId: run.namespaceId, collection: run.collection });
    if (run.status === 'exporting') {
      // Whatever an earlier attempt wrote was never verified: start the export of this run again.
      await this.deps.target.removePrefix(this.prefixOf(run));
      const exported = await this.exportRun(set, run);
      await this.deps.onStep?.('exported-unverified', run);
      await this.verify(set, run, exported.files);
      await this.runs.markExported(this.deps.pool, run.id, exported);
      run = { ...run, ...exported, status: 'exported' };
      log.info({ docs: exported.docCount, files: exported.files.length }, 'retention export verified');
      await this.deps.onStep?.('verified', run);
    } else {
      // Resumed after a crash between export and the end of the delete: the files must still verify.
      await this.verify(set, run, run.files);
    }
    const deleted = await this.deleteExported(set, run);
    await this.runs.markDone(this.deps.pool, run.id, deleted);
    log.info({ deleted }, 'retention run done');
    return { ...run, status: 'done', deletedCount: deleted };
  }

  /** Streams the expiring documents (by _id) into gzip'd EJSON-lines files and a manifest. */
  private async exportRun(set: RetainedSet, run: RetentionRun) {
    const it = set.expiring(run.namespaceId, run.cutoff);
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
          let entry = first;
          for (;;) {
            buf += `${entry.line}\n`;
            count += 1;
            if (!rangeFrom || entry.ts < rangeFrom) rangeFrom = entry.ts;
            if (!rangeTo || entry.ts > rangeTo) rangeTo = entry.ts;
            if (buf.length >= 64 * 1024) {
              yield buf;
              buf = '';
            }
            next = await it.next();
            if (next.done || count >= max) break;
            entry = next.value;
          }
          if (buf) yield buf;
        }
        const written = await this.deps.target.write(name, Readable.from(lines()).pipe(createGzip()));
        files.push({ name, count, ...written });
        docCount += count;
      }
    } finally {
      await it.return(undefined);
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
    return { files, docCount, rangeFrom, rangeTo, manifestSha256: m.sha256, manifestCid: m.cid };
  }

  /**
   * Re-reads every file: its SHA-256 and count must match, and every document must belong to the namespace,
   * be older than the cut-off and have an _id greater than the one before (so none appears twice).
   */
  private async verify(set: RetainedSet, run: RetentionRun, files: ExportFile[]): Promise<void> {
    let prev: string | undefined;
    for (const f of files) {
      let n = 0;
      for await (const id of this.readIds(set, run, f, (e) => {
        if (e.ns !== run.namespaceId || !(e.ts < run.cutoff))
          throw new AppError('export_verification_failed', `${f.name}: ${e.id} does not belong in this run`);
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

  /** Yields the _ids of one export file while checking the file's SHA-256 (and CID, once recorded) as it streams. */
  private async *readIds(
    set: RetainedSet,
    run: RetentionRun,
    f: ExportFile,
    check?: (e: ExportedEntry) => void,
  ): AsyncGenerator<string> {
    const raw = this.deps.target.read(f.name, f.cid);
    const hash = createHash('sha256');
    const dag = new FileDagBuilder();
    raw.on('data', (c: Buffer) => {
      hash.update(c);
      dag.update(c);
    });
    // pipe() does not forward errors: a store read that fails (a missing file, a block that does not match its CID)
    // must end the iteration below with that error, not escape as an unhandled stream error.
    const gunzip = createGunzip();
    raw.on('error', (err) => gunzip.destroy(err));
    const rl = createInterface({ input: raw.pipe(gunzip), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line) continue;
      const entry = set.parseLine(line);
      check?.(entry);
      yield entry.id;
    }
    const sha = hash.digest('hex');
    if (sha !== f.sha256)
      throw new AppError(
        'export_verification_failed',
        `${f.name}: SHA-256 ${sha}, expected ${f.sha256} (run ${run.id})`,
      );
    // Exports written before CIDs were recorded have none: their SHA-256 is the reference.
    const cid = dag.finish().root.cid.toString();
    if (f.cid !== undefined && cid !== f.cid)
      throw new AppError(
        'export_verification_failed',
        `${f.name}: CID ${cid}, expected ${f.cid} (run ${run.id})`,
      );
  }

  /** Deletes exactly the documents listed in the verified export, in batches; returns how many are gone. */
  private async deleteExported(set: RetainedSet, run: RetentionRun): Promise<number> {
    let gone = 0;
    const flush = async (ids: string[]) => {
      await set.deleteIds(run.namespaceId, ids);
      const left = await set.countIds(run.namespaceId, ids);
      if (left !== 0) throw new AppError('store_unavailable', `${left} exported documents are still present`);
      gone += ids.length;
      await this.deps.onStep?.('deleted-batch', run);
    };
    for (const f of run.files) {
      let batch: string[] = [];
      for await (const id of this.readIds(set, run, f)) {
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

  /**
   * One verified export file of a namespace's run (a part or `manifest.json`), streamed from cold storage. A run of
   * another namespace, an unverified run or a name the run does not list is not found.
   */
  async openExportFile(
    namespaceId: string,
    runId: string,
    file: string,
  ): Promise<{ run: RetentionRun; name: string; stream: Readable }> {
    const run = (await this.runs.listRuns(this.deps.pool, namespaceId)).find((r) => r.id === runId);
    if (!run || run.status === 'exporting')
      throw new AppError('not_found', `namespace ${namespaceId} has no verified retention export ${runId}`);
    const names = [...run.files.map((f) => f.name), `${this.prefixOf(run)}/manifest.json`];
    const name = names.find((n) => n.slice(n.lastIndexOf('/') + 1) === file);
    if (!name) throw new AppError('not_found', `retention export ${runId} has no file ${file}`);
    const cid = run.files.find((f) => f.name === name)?.cid ?? run.manifestCid ?? undefined;
    const stream = this.deps.target.read(name, cid);
    // A file gone from cold storage is a 404 naming it, not a stream failing after the reply has started.
    await new Promise<void>((resolve, reject) => {
      stream.once('readable', resolve);
      stream.once('error', (err) => {
        stream.destroy();
        reject(
          new AppError(
            'not_found',
            `retention export ${runId}: ${file} is missing from cold storage`,
            undefined,
            {
              cause: err,
            },
          ),
        );
      });
    });
    return { run, name, stream };
  }
}
