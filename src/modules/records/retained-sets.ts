// What the retention sweep exports and deletes, one set per collection: plain documents as canonical EJSON
// lines, and GridFS blobs as one line each (metadata + bytes), whose SHA-256 is re-checked on verification.
import { createHash } from 'node:crypto';
import { BSON, GridFSBucket, type Collection, type Db, type Document } from 'mongodb';
import { AppError } from '../../platform/errors.js';
import { BLOB_BUCKET } from './record.js';

/** What verification needs from one exported line. */
export interface ExportedEntry {
  id: string;
  ns: string;
  ts: Date;
}

export interface RetainedSet {
  /** Recorded in the run (the `collection` of a receipt). */
  readonly name: string;
  hasExpiring(ns: string, cutoff: Date): Promise<boolean>;
  /** Expiring entries in ascending _id order, each as one line of text (no newline). */
  expiring(ns: string, cutoff: Date): AsyncGenerator<{ ts: Date; line: string }>;
  /** Parses (and checks) one exported line. */
  parseLine(line: string): ExportedEntry;
  deleteIds(ns: string, ids: string[]): Promise<void>;
  countIds(ns: string, ids: string[]): Promise<number>;
}

type StoredDoc = Document & { _id: string; ns: string; ts: Date };

export function collectionSet(col: Collection<StoredDoc>): RetainedSet {
  return {
    name: col.collectionName,
    async hasExpiring(ns, cutoff) {
      return (
        (await col.findOne({ ns: { $eq: ns }, ts: { $lt: cutoff } }, { projection: { _id: 1 } })) !== null
      );
    },
    async *expiring(ns, cutoff) {
      const cursor = col
        .find({ ns: { $eq: ns }, ts: { $lt: cutoff } })
        .sort({ _id: 1 })
        .batchSize(1000);
      try {
        for await (const doc of cursor)
          yield { ts: doc.ts, line: BSON.EJSON.stringify(doc, { relaxed: false }) };
      } finally {
        await cursor.close();
      }
    },
    parseLine(line) {
      const doc = BSON.EJSON.parse(line, { relaxed: false }) as StoredDoc;
      return { id: doc._id, ns: doc.ns, ts: doc.ts };
    },
    async deleteIds(ns, ids) {
      await col.deleteMany({ ns: { $eq: ns }, _id: { $in: ids } });
    },
    countIds(ns, ids) {
      return col.countDocuments({ ns: { $eq: ns }, _id: { $in: ids } });
    },
  };
}

type BlobFile = {
  _id: string;
  length: number;
  metadata: { ns: string; jobId: string; sha256: string; ts: Date };
};

export function blobSet(db: Db): RetainedSet {
  const files = db.collection<BlobFile>(`${BLOB_BUCKET}.files`);
  const chunks = db.collection<{ files_id: string }>(`${BLOB_BUCKET}.chunks`);
  const bucket = new GridFSBucket(db, { bucketName: BLOB_BUCKET });
  return {
    name: `${BLOB_BUCKET}.files`,
    async hasExpiring(ns, cutoff) {
      const f = await files.findOne({ 'metadata.ns': { $eq: ns }, 'metadata.ts': { $lt: cutoff } });
      return f !== null;
    },
    async *expiring(ns, cutoff) {
      const cursor = files
        .find({ 'metadata.ns': { $eq: ns }, 'metadata.ts': { $lt: cutoff } })
        .sort({ _id: 1 })
        .batchSize(100);
      try {
        for await (const f of cursor) {
          const parts: Buffer[] = [];
          for await (const c of bucket.openDownloadStream(f._id as never)) parts.push(c as Buffer);
          const data = Buffer.concat(parts);
          const entry = {
            _id: f._id,
            ns: f.metadata.ns,
            ts: f.metadata.ts,
            jobId: f.metadata.jobId,
            sha256: f.metadata.sha256,
            data: new BSON.Binary(data),
          };
          yield { ts: f.metadata.ts, line: BSON.EJSON.stringify(entry, { relaxed: false }) };
        }
      } finally {
        await cursor.close();
      }
    },
    parseLine(line) {
      const e = BSON.EJSON.parse(line, { relaxed: false }) as {
        _id: string;
        ns: string;
        ts: Date;
        sha256: string;
        data: BSON.Binary;
      };
      const sha = createHash('sha256').update(e.data.buffer).digest('hex');
      if (sha !== e.sha256)
        throw new AppError('export_verification_failed', `exported blob ${e._id} does not match its SHA-256`);
      return { id: e._id, ns: e.ns, ts: e.ts };
    },
    async deleteIds(ns, ids) {
      // Blob ids start with their namespace; the files document, then the chunks (a crash in between is
      // finished by the resumed run, which deletes by the same exported ids).
      const own = ids.filter((id) => id.startsWith(`${ns}:`));
      if (own.length === 0) return;
      await files.deleteMany({ _id: { $in: own }, 'metadata.ns': { $eq: ns } });
      await chunks.deleteMany({ files_id: { $in: own } });
    },
    async countIds(ns, ids) {
      const f = await files.countDocuments({ _id: { $in: ids }, 'metadata.ns': { $eq: ns } });
      const c = await chunks.countDocuments({ files_id: { $in: ids } });
      return f + c;
    },
  };
}
