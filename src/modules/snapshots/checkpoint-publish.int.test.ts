// Crash safety of publishing a checkpoint: an unwritable witness does not fail `snapshot create` (it is caught up
// later), and a COMMIT that fails after the checkpoint log line is written is rolled forward by the next create.
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertTopups } from '../../../test/archive-factories.js';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { AuditService } from '../audit/index.js';
import { CHECKPOINT_LOG, CheckpointLog, CheckpointSigner, SnapshotsService } from './index.js';
import { DirectoryStore, carKey } from '../../stores/cold/index.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let scratch: string;
let witness: string;
let snapshots: SnapshotsService;
let namespaceIds: string[];
const torn: Array<{ file: string; bytes: number }> = [];

const logLines = async (dir: string) =>
  (await readFile(join(dir, CHECKPOINT_LOG), 'utf8')).split('\n').filter(Boolean);
const rowCids = async () =>
  (await db.pool.query<{ cid: string }>('select cid from snapshots order by seq')).rows.map((r) => r.cid);

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  scratch = await mkdtemp(join(tmpdir(), 'rty-witness-'));
  // A regular file where the witness directory should be: every write to the witness fails.
  witness = join(scratch, 'witness');
  await writeFile(witness, 'not a directory');
  namespaceIds = (await createNamespaces(db.pool, 2)).map((n) => n.id);
  const audit = new AuditService({ pool: db.pool, log: testLog });
  snapshots = new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock: { now: () => new Date() },
    audit,
    target: new DirectoryStore(archive.dir),
    limits: { rows: 500, bytes: 64 * 1024 },
    checkpoints: {
      signer: new CheckpointSigner(randomBytes(32).toString('hex')),
      log: new CheckpointLog(archive.dir, [witness], (d) => torn.push(d)),
    },
  });
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
  await rm(scratch, { recursive: true, force: true });
});

const topups = (i: number) =>
  insertTopups(db.pool, {
    count: 20,
    from: new Date(Date.UTC(2026, 0, 1 + i)),
    to: new Date(Date.UTC(2026, 0, 2 + i)),
    namespaceIds,
    tag: `pub${i}`,
  });

describe('publishing a checkpoint', () => {
  it('an unwritable witness is logged, not fatal: the snapshot is recorded and the archive log holds it', async () => {
    await topups(0);
    const r = await snapshots.create();
    expect(r.record.seq).toBe(1);
    expect(await rowCids()).toEqual([r.record.cid]);
    expect((await logLines(archive.dir)).length).toBe(1);
    expect((await stat(witness)).isFile()).toBe(true);
  });

  it('a failed COMMIT after the log line is rolled forward by the next create; the witness catches up', async () => {
    await rm(witness);
    await mkdir(witness);
    // A deferred constraint trigger fails the COMMIT of the transaction that records the snapshot.
    await db.pool.query(`create function fail_commit() returns trigger language plpgsql as $$
      begin raise exception 'simulated commit failure'; end $$`);
    await db.pool.query(`create constraint trigger fail_commit after insert on snapshots
      deferrable initially deferred for each row execute function fail_commit()`);
    await topups(1);
    await expect(snapshots.create()).rejects.toThrow(/simulated commit failure/);
    const log = (await logLines(archive.dir)).map((l) => JSON.parse(l) as { checkpoint: { cid: string } });
    expect(log.length).toBe(2);
    const orphan = log[1]!.checkpoint.cid;
    expect((await rowCids()).includes(orphan)).toBe(false);
    expect((await stat(join(archive.dir, carKey(orphan)))).isFile()).toBe(true);

    await db.pool.query('drop trigger fail_commit on snapshots');
    await topups(2);
    const r = await snapshots.create();
    expect(r.record.seq).toBe(3);
    expect(r.record.prevCid).toBe(orphan);
    const rows = await rowCids();
    expect(rows.length).toBe(3);
    expect(rows[1]).toBe(orphan);
    expect(await logLines(witness)).toEqual(await logLines(archive.dir));
    const audit = await db.pool.query<{ action: string }>(`select action from audit_log where target = $1`, [
      orphan,
    ]);
    expect(audit.rows.map((a) => a.action)).toEqual(['snapshot.roll_forward']);
    const chain = await snapshots.verifyChain({ trustedKey: snapshots.networkKey! });
    expect(chain.checkpoints).toBe(3);
  });

  it('a torn last line (a crash mid-append) is skipped with a warning and cut by the next append', async () => {
    const before = await logLines(archive.dir);
    await appendFile(join(archive.dir, CHECKPOINT_LOG), '{"checkpoint":{"type":"rty-snap');
    const chain = await snapshots.verifyChain({ trustedKey: snapshots.networkKey! });
    expect(chain.checkpoints).toBe(before.length);
    expect(torn.length).toBeGreaterThan(0);
    expect(torn[0]!.file).toBe(join(archive.dir, CHECKPOINT_LOG));
    await topups(3);
    const r = await snapshots.create();
    expect(r.record.seq).toBe(before.length + 1);
    const after = await logLines(archive.dir);
    expect(after.slice(0, -1)).toEqual(before);
    for (const l of after) expect(() => JSON.parse(l) as unknown).not.toThrow();
    expect((await snapshots.verifyChain({ trustedKey: snapshots.networkKey! })).checkpoints).toBe(
      after.length,
    );
  });
});
