// The index definitions can be sharded as docs/sharding.md says, and the shard-key checks themselves.
import { describe, expect, it } from 'vitest';
import { mongoMigrationsDir } from '../../platform/paths.js';
import { readMongoIndexSpecs, type MongoIndexSpec } from './indexes.js';
import { missingShardKeyFields, shardKeyProblems, SHARD_KEYS } from './shard-keys.js';

describe('MongoDB shard keys', () => {
  it('every collection with indexes has a shard key, and no unique index breaks it', async () => {
    const specs = await readMongoIndexSpecs(mongoMigrationsDir());
    expect(specs.length).toBeGreaterThan(5);
    expect(shardKeyProblems(specs)).toEqual([]);
  });

  it('names a unique index that does not start with the shard key, and a collection without one', () => {
    const specs: MongoIndexSpec[] = [
      { collection: 'record_jobs', name: 'by_job', keys: { jobId: 1 }, unique: true },
      { collection: 'record_jobs', name: 'ns_id', keys: { ns: 1, _id: 1 }, unique: true },
      { collection: 'unsharded', name: 'x', keys: { a: 1 } },
    ];
    expect(shardKeyProblems(specs)).toEqual([
      expect.stringMatching(/^record_jobs\.by_job: a unique index must start with the shard key/),
      expect.stringMatching(/^unsharded: no shard key is declared/),
    ]);
    expect(shardKeyProblems([{ ...specs[0]!, collection: 'record_blobs.files' }])).toHaveLength(1);
  });

  it('finds the shard-key fields a document or a filter lacks', () => {
    expect(missingShardKeyFields('record_jobs', { _id: 'a', ns: 'n' })).toEqual([]);
    expect(missingShardKeyFields('record_jobs', { ns: { $eq: 'n' }, _id: { $in: ['a'] } })).toEqual([]);
    expect(missingShardKeyFields('record_jobs', { _id: 'a' })).toEqual(['ns']);
    expect(missingShardKeyFields('record_blobs.files', { 'metadata.ns': 'n' })).toEqual(['_id']);
    expect(missingShardKeyFields('record_blobs.chunks', { files_id: 'f' })).toEqual([]);
    expect(missingShardKeyFields('not_sharded', {})).toEqual([]);
    expect(Object.keys(SHARD_KEYS)).toContain('record_qc');
  });
});
