// The standalone verifier (tools/verify-snapshot.mjs, written from docs/snapshot-format.md) against snapshots the
// project produces and a consistent forgery at every level (chunk, section, manifest, checkpoint): it must agree with
// the project's own verifier on each.
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertRegistry, insertTopups } from '../../../test/archive-factories.js';
import { indexCar, tempArchiveDir } from '../../../test/archive-harness.js';
import { forgeCar } from '../../../test/forge.js';
import { buildProgram } from '../../cli/program.js';
import { fileCid } from '../../stores/cold/index.js';
import { CHECKPOINT_LOG, CheckpointSigner, SnapshotReader, type SignedCheckpoint } from './index.js';

const run = promisify(execFile);
let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
const cids: string[] = [];
let key: string;

async function rty(...args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  let code = 0;
  const program = buildProgram(
    { config: { ...db.config, ARCHIVE_DIR: archive.dir }, log: testLog, out: (l) => out.push(l) },
    (c) => (code = c),
  );
  await program.parseAsync(['node', 'rty', ...args]);
  return { code, out };
}

/** The standalone verifier as a separate Node process: its exit code and JSON verdict. */
async function standalone(...args: string[]): Promise<{ code: number; ok: boolean; error?: string }> {
  const tool = join(process.cwd(), 'tools', 'verify-snapshot.mjs');
  try {
    const r = await run(process.execPath, [tool, ...args]);
    return { code: 0, ...JSON.parse(r.stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, ...JSON.parse(e.stdout) };
  }
}

const car = (cid: string) => join(archive.dir, `${cid}.car`);
const logFile = () => join(archive.dir, CHECKPOINT_LOG);

/** Both verdicts on a file pinned to `cid`: the project's `snapshot verify` and the standalone one. */
async function both(file: string, cid: string, withCheckpoints = false) {
  const project = await rty('snapshot', 'verify', file, '--cid', cid);
  const extra = withCheckpoints ? ['--checkpoints', logFile(), '--key', key] : [];
  const other = await standalone(file, '--cid', cid, ...extra);
  return { project: project.code, standalone: other.code, error: other.error, out: project.out.at(-1) };
}

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  const ns = await createNamespaces(db.pool, 3);
  await insertRegistry(db.pool, ns[0]!.accountId);
  const namespaceIds = ns.map((n) => n.id);
  await insertJobs(db.pool, {
    count: 800,
    from: new Date('2026-01-02T00:00:00Z'),
    to: new Date('2026-02-01T00:00:00Z'),
    namespaceIds,
  });
  await insertTopups(db.pool, {
    count: 600,
    from: new Date('2026-01-02T00:00:00Z'),
    to: new Date('2026-02-01T00:00:00Z'),
    namespaceIds,
    tag: 'sv',
  });
  expect((await rty('rollup', 'run', '--through', '2026-01-31')).code).toBe(0);
  for (let i = 0; i < 2; i += 1) {
    const r = await rty('snapshot', 'create');
    expect(r.code, r.out.join('\n')).toBe(0);
    cids.push(/^snapshot \d+ (\S+):/.exec(r.out.at(-1)!)![1]!);
  }
  key = new CheckpointSigner(db.config.NETWORK_SIGNING_KEY).publicKey;
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
});

describe('the standalone verifier agrees with the project', () => {
  it('accepts the snapshots the project produced, with their signed checkpoints', async () => {
    for (const cid of cids) {
      const r = await both(car(cid), cid, true);
      expect(r, r.error).toMatchObject({ project: 0, standalone: 0 });
    }
  });

  it('chunk level: one flipped byte in a chunk block', async () => {
    const bytes = Buffer.from(await readFile(car(cids[1]!)));
    const victim = (await indexCar(bytes))[5]!;
    bytes[victim.blockOffset + Math.floor(victim.blockLength / 2)]! ^= 0x01;
    const file = join(archive.dir, 'flipped.car');
    await writeFile(file, bytes);
    const r = await both(file, cids[1]!);
    expect(r).toMatchObject({ project: 3, standalone: 3 });
    expect(r.error).toContain(`bad block ${victim.cid}`);
    expect(r.out).toContain(`bad block ${victim.cid}`);
  });

  it('section level: a balance changed with every hash recomputed, pinned to the real CID and to its own', async () => {
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      rows: {
        section: 'credit_balances',
        edit: (rows) => rows.map((r, i) => (i === 0 ? [r[0], 999_000n * CREDIT, ...r.slice(2)] : r)),
      },
    });
    const file = join(archive.dir, 'section.car');
    await writeFile(file, forged.bytes);
    expect(await both(file, cids[1]!)).toMatchObject({ project: 3, standalone: 3 });
    const own = await both(file, forged.cid);
    expect(own).toMatchObject({ project: 3, standalone: 3 });
    expect(own.error).toMatch(/balance of namespace .* differs from its entries/);
  });

  it('manifest level: a re-dated manifest is a valid snapshot on its own, but not the checkpointed one', async () => {
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        m.createdAt = '2026-01-01T00:00:00.000Z';
      },
    });
    const file = join(archive.dir, `${forged.cid}.car`);
    await writeFile(file, forged.bytes);
    expect(await both(file, cids[1]!)).toMatchObject({ project: 3, standalone: 3 });
    // Self-consistent under its own CID: both accept it as a file...
    expect(await both(file, forged.cid)).toMatchObject({ project: 0, standalone: 0 });
    // ...and both refuse it as the snapshot the checkpoint log names.
    const other = await standalone(file, '--cid', forged.cid, '--checkpoints', logFile(), '--key', key);
    expect(other).toMatchObject({ code: 3, error: `no checkpoint names ${forged.cid}` });
    expect((await rty('audit', 'verify', '--against', forged.cid)).code).toBe(4);
  });

  it('checkpoint level: the log re-signed with another key over the forged manifest', async () => {
    const good = await readFile(logFile(), 'utf8');
    const log = good
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as SignedCheckpoint);
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        m.createdAt = '2026-01-01T00:00:00.000Z';
      },
    });
    await writeFile(car(forged.cid), forged.bytes);
    const other = new CheckpointSigner('0x' + '17'.repeat(32));
    log[1] = other.sign({ ...log[1]!.checkpoint, cid: forged.cid, createdAt: '2026-01-01T00:00:00.000Z' });
    await writeFile(logFile(), log.map((s) => `${JSON.stringify(s)}\n`).join(''));
    try {
      const mine = await standalone(
        car(forged.cid),
        '--cid',
        forged.cid,
        '--checkpoints',
        logFile(),
        '--key',
        key,
      );
      expect(mine).toMatchObject({ code: 3, error: 'checkpoint 2 is not signed by the key' });
      const chain = await rty('snapshot', 'verify-chain');
      expect(chain.code).toBe(3);
      expect(chain.out.at(-1)).toMatch(/^TAMPERED: checkpoint 2 .* is not signed by the network key/);
    } finally {
      await writeFile(logFile(), good);
    }
    expect((await rty('snapshot', 'verify-chain')).code).toBe(0);
    expect(
      (await standalone(car(cids[1]!), '--cid', cids[1]!, '--checkpoints', logFile(), '--key', key)).code,
    ).toBe(0);
  });

  it('format version: a version 1 manifest (single-row leaves) is refused by both, naming the version', async () => {
    const forged = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        m.version = 1;
      },
    });
    const file = join(archive.dir, 'v1.car');
    await writeFile(file, forged.bytes);
    const r = await both(file, forged.cid);
    expect(r).toMatchObject({ project: 3, standalone: 3 });
    expect(r.error).toBe('snapshot format version 1 is not supported (version 2 only)');
    expect(r.out).toContain('snapshot format version 1 is not supported');
  });

  it('record exports: an export verifies against the snapshot that lists it; a changed file or an older snapshot does not', async () => {
    // A finished retention run as the records module leaves it (the module's own path: record-exports.int.test.ts).
    const content = randomBytes(600_000);
    const file = join(archive.dir, 'part-00000.jsonl.gz');
    await writeFile(file, content);
    const cid = fileCid(content);
    const sha = createHash('sha256').update(content).digest('hex');
    const manifest = Buffer.from('{"version":1}');
    const runId = randomUUID();
    const ns = (await db.pool.query<{ id: string }>('select id from namespaces order by id limit 1')).rows[0]!
      .id;
    const name = `${ns}/record_jobs/${runId}/part-00000.jsonl.gz`;
    await db.pool.query(
      `insert into retention_runs (id, namespace_id, collection, cutoff, status, target, doc_count, deleted_count,
         files, manifest_sha256, manifest_cid, exported_at, finished_at)
       values ($1, $2, 'record_jobs', now(), 'done', 'dir:/x', 7, 7, $3, $4, $5, now(), now())`,
      [
        runId,
        ns,
        JSON.stringify([{ name, sha256: sha, count: 7, bytes: content.length, cid }]),
        createHash('sha256').update(manifest).digest('hex'),
        fileCid(manifest),
      ],
    );
    const created = await rty('snapshot', 'create');
    expect(created.code, created.out.join('\n')).toBe(0);
    const latest = /^snapshot \d+ (\S+):/.exec(created.out.at(-1)!)![1]!;
    const ok = await standalone(
      car(latest),
      '--cid',
      latest,
      '--checkpoints',
      logFile(),
      '--key',
      key,
      '--export',
      file,
    );
    expect(ok).toMatchObject({ code: 0, exports: [{ file: name, run: runId, cid }] });
    const proved = await rty('snapshot', 'prove', latest, '--record-export', cid);
    expect(proved.code).toBe(0);
    const proof = JSON.parse(proved.out.join('\n')) as { section: string; record: unknown[] };
    expect(proof.section).toBe('record_exports');
    expect(proof.record.slice(4, 7)).toEqual([cid, sha, content.length]);
    // One byte changed: another CID, referenced by no snapshot.
    const changed = Buffer.from(content);
    changed[123_456]! ^= 1;
    await writeFile(join(archive.dir, 'changed.gz'), changed);
    const bad = await standalone(car(latest), '--cid', latest, '--export', join(archive.dir, 'changed.gz'));
    expect(bad.code).toBe(3);
    expect(bad.error).toMatch(/is not referenced by snapshot/);
    // The earlier snapshot predates the export: it does not list it.
    expect((await standalone(car(cids[1]!), '--cid', cids[1]!, '--export', file)).code).toBe(3);
    // A consistent forgery whose reference is not a CID is refused by both.
    const forged = await forgeCar(await readFile(car(latest)), {
      rows: {
        section: 'record_exports',
        edit: (rows) => rows.map((r) => [...r.slice(0, 4), 'not-a-cid', ...r.slice(5)]),
      },
    });
    const forgedFile = join(archive.dir, 'bad-export-ref.car');
    await writeFile(forgedFile, forged.bytes);
    const refused = await both(forgedFile, forged.cid);
    expect(refused).toMatchObject({ project: 3, standalone: 3 });
    expect(refused.error).toMatch(/bad CID or SHA-256/);
  });

  it('a snapshot of the shape before record exports (no record_exports section) verifies as before', async () => {
    const old = await forgeCar(await readFile(car(cids[1]!)), {
      manifest: (m) => {
        delete m.sections.record_exports;
        delete m.roots.record_exports;
      },
    });
    expect((await SnapshotReader.open(await readFile(car(cids[1]!)))).sectionNames()).toContain(
      'record_exports',
    );
    expect((await SnapshotReader.open(old.bytes, old.cid)).sectionNames()).not.toContain('record_exports');
    const file = join(archive.dir, 'old-shape.car');
    await writeFile(file, old.bytes);
    expect(await both(file, old.cid)).toMatchObject({ project: 0, standalone: 0 });
  });

  it('usage: no pinned CID is a usage error for both', async () => {
    expect((await standalone(car(cids[0]!))).code).toBe(2);
    expect((await rty('snapshot', 'verify', join(archive.dir, CHECKPOINT_LOG))).code).toBe(2);
  });
});
