// Issue 18, signed checkpoints outside the database: verify-chain over 5 snapshots (one CAR removed, one replaced, one
// checkpoint re-signed with another key, the log cut behind a witness), consistency of two checkpoints, and a history
// rewritten inside PostgreSQL (audit entry + recomputed hashes + snapshots.audit_hash; a consistent ledger edit; a
// minted top-up) that the plain verifies pass and `--against <cid>` catches.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { CREDIT, createNamespaces } from '../../../test/factories.js';
import { insertTopups } from '../../../test/archive-factories.js';
import { tempArchiveDir } from '../../../test/archive-harness.js';
import { forgeCar } from '../../../test/forge.js';
import { AuditService, chainHash, GENESIS_HASH, type JsonValue } from '../../modules/audit/index.js';
import {
  CHECKPOINT_LOG,
  CheckpointSigner,
  checkpointHash,
  type SignedCheckpoint,
} from '../../modules/snapshots/index.js';
import { buildProgram } from '../program.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let witness: string;
let namespaceIds: string[];
const cids: string[] = [];

async function rty(...args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  let code = 0;
  const config = { ...db.config, ARCHIVE_DIR: archive.dir, SNAPSHOT_WITNESS_DIRS: witness };
  const program = buildProgram({ config, log: testLog, out: (l) => out.push(l) }, (c) => (code = c));
  await program.parseAsync(['node', 'rty', ...args]);
  return { code, out };
}
const car = (cid: string) => join(archive.dir, `${cid}.car`);
const logFile = () => join(archive.dir, CHECKPOINT_LOG);
const readLog = async (file = logFile()): Promise<SignedCheckpoint[]> =>
  (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SignedCheckpoint);
const writeLog = (log: SignedCheckpoint[]) =>
  writeFile(logFile(), log.map((s) => `${JSON.stringify(s)}\n`).join(''));

/** SQL with the append-only triggers off, as a superuser rewriting history would run it. */
async function tamper(
  fn: (q: (sql: string, p?: unknown[]) => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const c = await db.pool.connect();
  try {
    await c.query('begin');
    await c.query('set local session_replication_role = replica');
    await fn((sql, p) => c.query(sql, p as unknown[]));
    await c.query('commit');
  } finally {
    c.release();
  }
}

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  witness = await mkdtemp(join(tmpdir(), 'rty-witness-'));
  namespaceIds = (await createNamespaces(db.pool, 3)).map((n) => n.id);
  const audit = new AuditService({ pool: db.pool, log: testLog });
  for (let i = 0; i < 5; i += 1) {
    await insertTopups(db.pool, {
      count: 50,
      from: new Date(Date.UTC(2026, 0, 1 + i * 10)),
      to: new Date(Date.UTC(2026, 0, 10 + i * 10)),
      namespaceIds,
      tag: `chain${i}`,
    });
    for (let j = 0; j < 3; j += 1)
      await audit.append({ actor: 'admin', action: 'config.set', target: `k${i}.${j}`, body: { i, j } });
    const r = await rty('snapshot', 'create');
    expect(r.code, r.out.join('\n')).toBe(0);
    cids.push(/^snapshot \d+ (\S+):/.exec(r.out.at(-1)!)![1]!);
  }
});
afterAll(async () => {
  await db.drop();
  await archive.remove();
  await rm(witness, { recursive: true, force: true });
});

describe('verify-chain', () => {
  it('checks 5 signed checkpoints and their snapshots from the first; the witness holds the same log', async () => {
    const r = await rty('snapshot', 'verify-chain', '--witness', witness);
    expect(r.code, r.out.join('\n')).toBe(0);
    expect(r.out.at(-1)).toMatch(new RegExp(`^chain OK: 5 checkpoints from seq 1 to 5, .* head ${cids[4]} `));
    expect(await readLog(join(witness, CHECKPOINT_LOG))).toEqual(await readLog());
    const log = await readLog();
    expect(log.map((s) => s.checkpoint.cid)).toEqual(cids);
    const [h2, h5] = [checkpointHash(log[1]!.checkpoint), checkpointHash(log[4]!.checkpoint)];
    expect((await rty('snapshot', 'verify-chain', '--consistency', h2, h5)).out.at(-1)).toBe(
      `consistent: checkpoint ${h5} contains ${h2} (3 signed links back)`,
    );
    expect((await rty('snapshot', 'verify-chain', '--consistency', h5, h2)).code).toBe(3);
    expect((await rty('snapshot', 'verify-chain', '--trusted', h2)).out.at(-1)).toMatch(
      /^chain OK: 4 checkpoints from seq 2 to 5/,
    );
  });

  it('one snapshot removed: missing (exit 4), naming its checkpoint', async () => {
    await rename(car(cids[2]!), `${car(cids[2]!)}.away`);
    try {
      const r = await rty('snapshot', 'verify-chain');
      expect(r.code).toBe(4);
      expect(r.out.at(-1)).toBe(
        `MISSING: checkpoint 3 (snapshot ${cids[2]}): the snapshot is missing from the archive`,
      );
    } finally {
      await rename(`${car(cids[2]!)}.away`, car(cids[2]!));
    }
  });

  it('one checkpoint removed from the log: the next one does not link (exit 3)', async () => {
    const log = await readLog();
    await writeLog([...log.slice(0, 2), ...log.slice(3)]);
    try {
      const r = await rty('snapshot', 'verify-chain');
      expect(r.code).toBe(3);
      expect(r.out.at(-1)).toMatch(/^TAMPERED: checkpoint 3 .* has seq 4/);
    } finally {
      await writeLog(log);
    }
  });

  it('one snapshot replaced by a consistent forgery: its root is not the checkpointed CID (exit 3)', async () => {
    const good = await readFile(car(cids[2]!));
    const forged = await forgeCar(good, {
      rows: {
        section: 'credit_balances',
        edit: (rows) => rows.map((r) => [r[0], 999_000n * CREDIT, ...r.slice(2)]),
      },
    });
    await writeFile(car(cids[2]!), forged.bytes);
    try {
      const r = await rty('snapshot', 'verify-chain');
      expect(r.code).toBe(3);
      expect(r.out.at(-1)).toContain(`the file's root is ${forged.cid}, not the pinned snapshot ${cids[2]}`);
    } finally {
      await writeFile(car(cids[2]!), good);
    }
  });

  it('one checkpoint re-signed with another key over a forged snapshot: the signature fails (exit 3)', async () => {
    const log = await readLog();
    const forged = await forgeCar(await readFile(car(cids[2]!)), {
      manifest: (m) => {
        m.createdAt = '2026-01-01T00:00:00.000Z';
      },
    });
    await writeFile(car(forged.cid), forged.bytes);
    const other = new CheckpointSigner('0x' + '42'.repeat(32));
    const forgedLog = [...log];
    forgedLog[2] = other.sign({
      ...log[2]!.checkpoint,
      cid: forged.cid,
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    await writeLog(forgedLog);
    try {
      const r = await rty('snapshot', 'verify-chain');
      expect(r.code).toBe(3);
      expect(r.out.at(-1)).toMatch(
        new RegExp(`^TAMPERED: checkpoint 3 \\(snapshot ${forged.cid}\\) is not signed by the network key`),
      );
      // Whoever holds the other key can verify their own forgery, but not the real checkpoints before it.
      const theirs = await rty('snapshot', 'verify-chain', '--key', other.publicKey);
      expect(theirs.out.at(-1)).toMatch(/^TAMPERED: checkpoint 1 /);
    } finally {
      await writeLog(log);
    }
  });

  it('a log cut behind a witness is caught by the witness (exit 3)', async () => {
    const log = await readLog();
    await writeLog(log.slice(0, 4));
    try {
      const r = await rty('snapshot', 'verify-chain', '--witness', witness);
      expect(r.code).toBe(3);
      expect(r.out.at(-1)).toMatch(/witness .* holds 5 checkpoints, the archive only 4: the log was cut/);
    } finally {
      await writeLog(log);
    }
  });
});

describe('history rewritten inside PostgreSQL, detected against the last checkpoint', () => {
  it('audit entry 5 rewritten, every later hash recomputed, snapshots.audit_hash updated', async () => {
    const rows = (
      await db.pool.query<{
        seq: string;
        at_us: string;
        actor: string;
        action: string;
        target: string | null;
        body: JsonValue;
      }>(
        `select seq::text, (extract(epoch from at) * 1000000)::int8::text as at_us, actor, action, target, body from audit_log order by audit_log.seq`,
      )
    ).rows;
    await db.pool.query('create table audit_keep as select * from audit_log');
    await db.pool.query('create table snapshots_keep as select * from snapshots');
    await tamper(async (q) => {
      let prev = GENESIS_HASH;
      for (const r of rows) {
        const e = {
          seq: BigInt(r.seq),
          atMicros: BigInt(r.at_us),
          actor: r.actor,
          action: r.action,
          target: r.target,
          body: r.body,
        };
        if (r.seq === '5') e.body = { i: 1, j: 1, forged: true };
        const hash = chainHash(prev, e);
        await q('update audit_log set body = $2::jsonb, prev_hash = $3, hash = $4 where seq = $1', [
          r.seq,
          JSON.stringify(e.body),
          prev,
          hash,
        ]);
        await q('update snapshots set audit_hash = $2 where audit_seq = $1', [r.seq, hash]);
        prev = hash;
      }
    });
    try {
      // Before issue 18 this was the only check there was, and it passes.
      const plain = await rty('audit', 'verify');
      expect(plain.code, plain.out.join('\n')).toBe(0);
      const r = await rty('audit', 'verify', '--against', cids[4]!);
      expect(r.code).toBe(3);
      expect(r.out[0]).toMatch(/^PROBLEM entry 19 head_mismatch: /);
      expect(r.out).toContain(
        'PROBLEM entry 5 altered: entry 5 differs from the checkpointed copy (history rewritten in the database)',
      );
    } finally {
      await tamper(async (q) => {
        await q('delete from audit_log');
        await q('insert into audit_log select * from audit_keep');
        await q('delete from snapshots');
        await q('insert into snapshots select * from snapshots_keep');
      });
    }
    expect((await rty('audit', 'verify', '--against', cids[4]!)).code).toBe(0);
  });

  it('a consistent ledger edit (an entry and its balance) passes ledger verify, not --against', async () => {
    const e = (
      await db.pool.query(`select id, namespace_id, amount from ledger_entries order by id limit 1 offset 10`)
    ).rows[0];
    const delta = 5_000_000_000n;
    const edit = (sign: bigint) =>
      tamper(async (q) => {
        await q('update ledger_entries set amount = amount + $2 where id = $1', [
          e.id,
          (sign * delta).toString(),
        ]);
        await q('update credit_balances set available = available + $2 where namespace_id = $1', [
          e.namespace_id,
          (sign * delta).toString(),
        ]);
      });
    await edit(1n);
    try {
      expect((await rty('ledger', 'verify')).code).toBe(0);
      const r = await rty('ledger', 'verify', '--against', cids[4]!);
      expect(r.code).toBe(3);
      expect(r.out[0]).toBe(
        `MISMATCH ledger entry ${e.id} differs from the checkpointed snapshot (edited in the database)`,
      );
    } finally {
      await edit(-1n);
    }
    const ok = await rty('ledger', 'verify', '--against', cids[4]!);
    expect(ok.out.at(-1)).toMatch(
      /^ledger: consistent with checkpoint 5 .*: 250 checkpointed entries unchanged, 0 since/,
    );
  });

  it('a minted top-up (entry + balance, dated in the past) passes ledger verify, not --against', async () => {
    const ns = namespaceIds[0]!;
    await tamper(async (q) => {
      await q(
        `insert into ledger_entries (kind, namespace_id, amount, idem_key, created_at) values ('topup', $1, $2, 'minted', '2026-01-15')`,
        [ns, (999_000n * CREDIT).toString()],
      );
      await q('update credit_balances set available = available + $2 where namespace_id = $1', [
        ns,
        (999_000n * CREDIT).toString(),
      ]);
    });
    expect((await rty('ledger', 'verify')).code).toBe(0);
    const r = await rty('ledger', 'verify', '--against', cids[4]!);
    expect(r.code).toBe(3);
    expect(r.out[0]).toMatch(
      /^MISMATCH ledger entry \d+ \(topup 999000000000\) is dated before checkpoint 5 but is not in it$/,
    );
  });
});
