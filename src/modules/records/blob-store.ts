// Large payloads outside the documents: a GridFS bucket (proven on FerretDB 1.24 by blob-store.int.test.ts),
// content-addressed per namespace and job, each blob verified against its SHA-256 on read.
import { createHash } from 'node:crypto';
import { GridFSBucket, type Db } from 'mongodb';
import { AppError } from '../../platform/errors.js';
import { isStoreError } from '../../platform/store-error.js';
import { translateMongoError } from '../../stores/mongo/bulk.js';
import { BLOB_BUCKET, type BlobRef } from './record.js';

export interface BlobStore {
  /** Stores the bytes under ref.id unless they are already there; safe to repeat. */
  put(ns: string, jobId: string, ref: BlobRef, data: Buffer, ts: Date): Promise<void>;
  /** Reads and verifies one blob of this namespace stored at or after `notBefore`. */
  get(ns: string, blobId: string, notBefore: Date): Promise<Buffer>;
}

export class GridFsBlobStore implements BlobStore {
  private readonly bucket: GridFSBucket;

  constructor(private readonly db: Db) {
    this.bucket = new GridFSBucket(db, { bucketName: BLOB_BUCKET });
  }

  async put(ns: string, jobId: string, ref: BlobRef, data: Buffer, ts: Date): Promise<void> {
    if (!ref.id.startsWith(`${ns}:`)) throw new AppError('invalid_request', 'blob id of another namespace');
    const files = this.db.collection(`${BLOB_BUCKET}.files`);
    if (await files.findOne({ _id: { $eq: ref.id } as never }, { projection: { _id: 1 } })) return;
    // Chunks left by an upload that crashed before its files document would collide: clear them first.
    await this.db.collection(`${BLOB_BUCKET}.chunks`).deleteMany({ files_id: { $eq: ref.id } });
    const upload = this.bucket.openUploadStreamWithId(ref.id as never, ref.sha256, {
      metadata: { ns, jobId, sha256: ref.sha256, ts },
    });
    try {
      await new Promise<void>((resolve, reject) => {
        upload.once('finish', () => resolve());
        upload.once('error', reject);
        upload.end(data);
      });
    } catch (err) {
      const translated = translateMongoError(err);
      // Another recorder stored the same content at the same time: the blob is there.
      if (isStoreError(translated, 'unique_violation')) return;
      throw translated;
    }
  }

  async get(ns: string, blobId: string, notBefore: Date): Promise<Buffer> {
    if (typeof blobId !== 'string' || !blobId.startsWith(`${ns}:`))
      throw new AppError('not_found', `no blob ${String(blobId)} in namespace ${ns}`);
    const file = await this.db.collection(`${BLOB_BUCKET}.files`).findOne({
      _id: { $eq: blobId } as never,
      'metadata.ns': { $eq: ns },
      'metadata.ts': { $gte: notBefore },
    });
    if (!file) throw new AppError('not_found', `no blob ${blobId} in namespace ${ns}`);
    const chunks: Buffer[] = [];
    for await (const c of this.bucket.openDownloadStream(blobId as never)) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    const sha = createHash('sha256').update(data).digest('hex');
    if (sha !== (file.metadata as { sha256: string }).sha256)
      throw new AppError('internal', `blob ${blobId} does not match its SHA-256`);
    return data;
  }
}
