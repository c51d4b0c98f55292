// Applies the index definitions in migrations/mongo/*.json (idempotent); TTL options only where supported.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db, IndexDirection, CreateIndexesOptions } from 'mongodb';
import type { MongoCapabilities } from './client.js';

/** One index: plain or compound only (FerretDB 1.x has no partial, sparse, text or geo indexes). */
export interface MongoIndexSpec {
  collection: string;
  name: string;
  keys: Record<string, IndexDirection>;
  unique?: boolean;
  /** A TTL safety net: created only when the server has TTL indexes; `ttlDays` is filled in by the caller. */
  ttl?: boolean;
}

export async function readMongoIndexSpecs(dir: string): Promise<MongoIndexSpec[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.json$/.test(f)).sort();
  const out: MongoIndexSpec[] = [];
  for (const f of files) {
    const parsed = JSON.parse(await readFile(join(dir, f), 'utf8')) as { indexes: MongoIndexSpec[] };
    out.push(...parsed.indexes);
  }
  return out;
}

/** Creates every index that is missing; an existing index with the same name is left alone. */
export async function applyMongoIndexes(
  db: Db,
  specs: MongoIndexSpec[],
  caps: MongoCapabilities,
  opts: { ttlDays: number; dryRun?: boolean },
): Promise<string[]> {
  const created: string[] = [];
  for (const spec of specs) {
    if (spec.ttl && !caps.ttlIndexes) continue;
    const existing = await db
      .collection(spec.collection)
      .listIndexes()
      .toArray()
      .catch(() => [] as Array<{ name?: string }>);
    if (existing.some((i) => i.name === spec.name)) continue;
    created.push(`${spec.collection}.${spec.name}`);
    if (opts.dryRun) continue;
    const options: CreateIndexesOptions = { name: spec.name };
    if (spec.unique) options.unique = true;
    if (spec.ttl) options.expireAfterSeconds = opts.ttlDays * 86_400;
    await db.collection(spec.collection).createIndex(spec.keys, options);
  }
  return created;
}
