// The shard key of every MongoDB collection (docs/sharding.md) and the two rules that keep a sharded cluster
// correct for us: every unique index starts with its collection's shard key (MongoDB enforces uniqueness per
// shard only), and every write and namespace query names the key's fields, so that a retried insert lands
// on the shard holding the first copy (refused there as a duplicate, never a silent second copy) and a query
// goes to the namespace's own shards. Pure: checked by a unit test over the index definitions and by an
// integration test over the commands the records module really sends.
import type { MongoIndexSpec } from './indexes.js';

export type ShardKey = Record<string, 1 | 'hashed'>;

export const SHARD_KEYS: Readonly<Record<string, ShardKey>> = {
  // A namespace's documents stay together (its queries are targeted); `_id` (`<ns>:<job>…`, deterministic)
  // splits a large tenant into chunks and makes the idempotent insert's duplicate check land on one shard.
  record_jobs: { ns: 1, _id: 1 },
  record_logs: { ns: 1, _id: 1 },
  record_qc: { ns: 1, _id: 1 },
  // GridFS: files by hashed id (every read, write and delete names the id); chunks as MongoDB documents.
  'record_blobs.files': { _id: 'hashed' },
  'record_blobs.chunks': { files_id: 1, n: 1 },
};

/** Why the index definitions could not be sharded as SHARD_KEYS says (empty: they can). */
export function shardKeyProblems(specs: MongoIndexSpec[], keys = SHARD_KEYS): string[] {
  const out: string[] = [];
  for (const spec of specs) {
    const key = keys[spec.collection];
    if (!key) {
      out.push(`${spec.collection}: no shard key is declared (add it to SHARD_KEYS and docs/sharding.md)`);
      continue;
    }
    if (!spec.unique) continue;
    const fields = Object.keys(key);
    const prefix = Object.keys(spec.keys).slice(0, fields.length);
    if (Object.values(key).includes('hashed') || fields.some((f, i) => prefix[i] !== f))
      out.push(
        `${spec.collection}.${spec.name}: a unique index must start with the shard key ${JSON.stringify(key)} ` +
          '(uniqueness is enforced per shard only)',
      );
  }
  return [...new Set(out)];
}

/** The shard-key fields a document or a filter lacks (dotted paths; a present field may be a value or an operator). */
export function missingShardKeyFields(collection: string, docOrFilter: unknown, keys = SHARD_KEYS): string[] {
  const key = keys[collection];
  if (!key) return [];
  const has = (path: string) => {
    let v: unknown = docOrFilter;
    if (v && typeof v === 'object' && path in v) return (v as Record<string, unknown>)[path] !== undefined;
    for (const part of path.split('.')) {
      if (!v || typeof v !== 'object') return false;
      v = (v as Record<string, unknown>)[part];
    }
    return v !== undefined;
  };
  // A hashed key routes by equality only; a range key needs at least its leading field to be targeted.
  const needed = Object.values(key).includes('hashed') ? Object.keys(key) : Object.keys(key).slice(0, 1);
  return needed.filter((f) => !has(f));
}
