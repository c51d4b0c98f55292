// The archive CLI end to end against a test schema: rollup run, snapshot create/list/verify/prove/verify-proof/restore,
// audit verify, each with its exit code and summary line.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { insertJobs, insertTopups } from '../../../test/archive-factories.js';
import { createScratchDatabase, tempArchiveDir } from '../../../test/archive-harness.js';
import { buildProgram } from '../program.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let namespaceIds: string[];

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  namespaceIds = (await createNamespaces(db.pool, 2)).map((n) => n.id);
  const from = new Date('2026-03-01T00:00:00Z');
  const to = new Date('2026-03-10T00:00:00Z');
  await insertJobs(db.pool, { count: 500, from, to, namespaceIds });
  await insertTopups(db.pool, { count: 300, from, to, namespaceIds, tag: 'c' });
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
});

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

describe('rty archive commands', () => {
  it('rollup run, snapshot create, list, verify by file and by CID, audit verify', async () => {
    const rolled = await rty('rollup', 'run', '--through', '2026-03-09');
    expect(rolled.code).toBe(0);
    expect(rolled.out.at(-1)).toMatch(/^rollup: 9 days 2026-03-01\.\.2026-03-09: 500 jobs into \d+ groups/);
    expect((await rty('rollup', 'run', '--through', '2026-03-09')).out.at(-1)).toMatch(/nothing to roll up/);
    expect((await rty('rollup', 'verify')).out).toEqual(['rollup: 9 periods verified']);

    const created = await rty('snapshot', 'create');
    expect(created.code).toBe(0);
    const m = /^snapshot 1 (\S+): .* at (\S+), prev -, verified/.exec(created.out.at(-1)!);
    expect(m).not.toBeNull();
    const [, cid, file] = m!;
    expect((await rty('snapshot', 'list')).out[0]).toMatch(new RegExp(`^1\\t${cid}\\t.*verified$`));
    expect((await rty('snapshot', 'verify', file!)).out.at(-1)).toMatch(
      new RegExp(`^snapshot ${cid} OK: snapshot seq 1, .* chain first`),
    );
    expect((await rty('snapshot', 'verify', cid!)).code).toBe(0);
    const audit = await rty('audit', 'verify');
    expect(audit.code).toBe(0);
    // The only entry records the snapshot itself (the log was empty when it was taken, so there is no anchor yet).
    expect(audit.out.at(-1)).toMatch(/^audit: 1 entries, chain intact \(head 1 [0-9a-f]{64}\)$/);
  });

  it('prove and verify-proof; a changed proof exits 3 (tampered)', async () => {
    const cid = /^1\t(\S+)\t/.exec((await rty('snapshot', 'list')).out[0]!)![1]!;
    const proved = await rty('snapshot', 'prove', cid, '--namespace', namespaceIds[1]!);
    const proof = JSON.parse(proved.out.join('\n'));
    const file = join(archive.dir, 'proof.json');
    await writeFile(file, JSON.stringify(proof));
    expect(await rty('snapshot', 'verify-proof', file, '--root', proof.root)).toEqual({
      code: 0,
      out: [`proof OK against root ${proof.root}`],
    });
    await writeFile(file, JSON.stringify({ ...proof, chunk: proof.chunk + 1 }));
    expect((await rty('snapshot', 'verify-proof', file, '--cid', cid)).code).toBe(3);
  });

  it('restore <file> --database <url> into a fresh database', async () => {
    const target = await createScratchDatabase();
    try {
      const line = (await rty('snapshot', 'list')).out[0]!;
      const cid = line.split('\t')[1]!;
      const r = await rty('snapshot', 'restore', join(archive.dir, `${cid}.car`), '--database', target.url);
      expect(r.code).toBe(0);
      expect(r.out.at(-1)).toMatch(new RegExp(`^restored snapshot ${cid} \\(seq 1\\) into schema public`));
      const n = await target.pool.query('select count(*)::int as n from ledger_entries');
      expect(n.rows[0].n).toBe(300);
    } finally {
      await target.drop();
    }
  });
});
