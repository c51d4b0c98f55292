// MongoDB access for job documents, event/log documents and QC results; every tenant query takes namespaceId.
import type { Collection, Db, Filter } from 'mongodb';
import { insertManyIdempotent, translateMongoError, type InsertOutcome } from '../../stores/mongo/bulk.js';
import { COLLECTIONS, type JobDoc, type LogDoc, type QcDoc } from './record.js';

export class RecordsRepository {
  readonly jobs: Collection<JobDoc>;
  readonly logs: Collection<LogDoc>;
  readonly qc: Collection<QcDoc>;

  constructor(readonly db: Db) {
    this.jobs = db.collection<JobDoc>(COLLECTIONS.jobs);
    this.logs = db.collection<LogDoc>(COLLECTIONS.logs);
    this.qc = db.collection<QcDoc>(COLLECTIONS.qc);
  }

  /** Resolves when the server answers (a failing write is poison only while this succeeds). */
  async ping(): Promise<void> {
    try {
      await this.db.command({ ping: 1 });
    } catch (err) {
      throw translateMongoError(err);
    }
  }

  insertEvents(docs: LogDoc[]): Promise<InsertOutcome> {
    return insertManyIdempotent(this.logs, docs);
  }

  insertQcResults(docs: QcDoc[]): Promise<InsertOutcome> {
    return insertManyIdempotent(this.qc, docs);
  }

  insertJobs(docs: JobDoc[]): Promise<InsertOutcome> {
    return insertManyIdempotent(this.jobs, docs);
  }

  /** Event documents by id (ids already carry their namespace). */
  async findEventsByIds(ids: string[]): Promise<LogDoc[]> {
    if (ids.length === 0) return [];
    try {
      return await this.logs.find({ _id: { $in: ids } }).toArray();
    } catch (err) {
      throw translateMongoError(err);
    }
  }

  async findJobIdsPresent(namespaceId: string, jobIds: string[]): Promise<Set<string>> {
    if (jobIds.length === 0) return new Set();
    const rows = await this.jobs
      .find({ ns: { $eq: namespaceId }, _id: { $in: jobIds } }, { projection: { _id: 1 } })
      .toArray();
    return new Set(rows.map((r) => r._id));
  }

  findJobs(namespaceId: string, filter: Filter<JobDoc>, limit: number): Promise<JobDoc[]> {
    return newestFirst(this.jobs, namespaceId, filter, limit);
  }

  findLogs(namespaceId: string, filter: Filter<LogDoc>, limit: number): Promise<LogDoc[]> {
    return newestFirst(this.logs, namespaceId, filter, limit);
  }

  async findJob(namespaceId: string, jobId: string, notBefore: Date): Promise<JobDoc | null> {
    return this.jobs.findOne({ _id: { $eq: jobId }, ns: { $eq: namespaceId }, ts: { $gte: notBefore } });
  }

  async findJobEvents(namespaceId: string, jobId: string, notBefore: Date): Promise<LogDoc[]> {
    return this.logs
      .find({ ns: { $eq: namespaceId }, jobId: { $eq: jobId }, ts: { $gte: notBefore } })
      .sort({ ts: 1, _id: 1 })
      .toArray();
  }

  async findQcResults(namespaceId: string, jobId: string, notBefore: Date): Promise<QcDoc[]> {
    return this.qc
      .find({ ns: { $eq: namespaceId }, jobId: { $eq: jobId }, ts: { $gte: notBefore } })
      .sort({ ts: 1, _id: 1 })
      .toArray();
  }

  /** $group with a single accumulator: FerretDB 1.24 returns 0 for every accumulator after the first. */
  async groupSum(
    namespaceId: string,
    match: Filter<JobDoc>,
    groupId: Record<string, string>,
    sumOf: string | 1,
  ): Promise<Array<{ _id: Record<string, unknown>; v: number }>> {
    try {
      return await this.jobs
        .aggregate<{
          _id: Record<string, unknown>;
          v: number;
        }>([
          { $match: { ...match, ns: namespaceId } },
          { $group: { _id: groupId, v: sumOf === 1 ? { $count: {} } : { $sum: sumOf } } },
        ])
        .toArray();
    } catch (err) {
      throw translateMongoError(err);
    }
  }

  /** Stored bytes of a namespace in one collection (single accumulator, see groupSum). */
  async storedBytes(
    collection: Collection<{ ns: string; bytes: number }>,
    namespaceId: string,
  ): Promise<number> {
    const r = await collection
      .aggregate<{
        v: number;
      }>([{ $match: { ns: namespaceId } }, { $group: { _id: '$ns', v: { $sum: '$bytes' } } }])
      .toArray();
    return Number(r[0]?.v ?? 0);
  }
}

/** One namespace's documents matching `filter`, newest first (ties by id), at most `limit`. */
async function newestFirst<T extends { ns: string; ts: Date; _id: string }>(
  collection: Collection<T>,
  namespaceId: string,
  filter: Filter<T>,
  limit: number,
): Promise<T[]> {
  try {
    return (await collection
      .find({ ...filter, ns: { $eq: namespaceId } } as Filter<T>)
      .sort({ ts: -1, _id: -1 })
      .limit(limit)
      .toArray()) as T[];
  } catch (err) {
    throw translateMongoError(err);
  }
}
