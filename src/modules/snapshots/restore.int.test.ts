// Launch from a snapshot into a database of its own: every balance and registry row equal, the ledger and audit
// chain verify there; a tampered file and a non-empty target are refused.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { createNamespaces } from '../../../test/factories.js';
import { forgeCar } from '../../../test/forge.js';
import { AccountsService } from '../accounts/index.js';
import { insertJobs, insertRegistry, insertTopups } from '../../../test/archive-factories.js';
import { createScratchDatabase, indexCar, tempArchiveDir } from '../../../test/archive-harness.js';
import { AuditService } from '../audit/index.js';
import { LedgerService } from '../credits/index.js';
import { RollupsService } from '../rollups/index.js';
import type { Pool } from '../../stores/postgres/pool.js';
import { SnapshotsService, restoreSnapshot, selectSql, snapshotSections } from './index.js';
import { DirectoryStore, carKey } from '../../stores/cold/index.js';

let db: PgTestSchema;
let archive: { dir: string; remove(): Promise<void> };
let target: Awaited<ReturnType<typeof createScratchDatabase>>;
let originCid: string;
let bytes: Buffer;
let auditCountAtSnapshot: number;
let accountToken: string;
let tokenHash: Buffer;

/** The tables a launched network needs besides the ledger and registry (issue 18), each with rows. */
const networkTables = [
  'account_tokens',
  'retention_runs',
  'storage_charge_days',
  'retention_plan_events',
  'space_plan_changes',
  'node_reputation',
  'qc_checks',
];

/** Rows in every table of `networkTables`, plus a grace deadline: values a restore could get wrong (doubles, json). */
async function insertNetworkTables(pool: Pool, ids: string[], accountId: string): Promise<void> {
  const accounts = new AccountsService({ pool, apiKeyPepper: db.config.API_KEY_PEPPER });
  const created = await accounts.createAccountToken(accountId);
  accountToken = created.plaintext;
  tokenHash = created.token.secretHash;
  const revoked = await accounts.createAccountToken(accountId);
  await accounts.revokeAccountToken(accountId, revoked.token.id);
  await pool.query(
    `update namespaces set retention_plan = 'space-90', retention_days = 90, extended_retention_until = '2026-04-15',
       retention_grace_until = '2026-04-17T10:00:00.123456Z' where id = $1`,
    [ids[0]],
  );
  await pool.query(
    `insert into retention_runs (id, namespace_id, collection, cutoff, status, target, doc_count, deleted_count,
       range_from, range_to, files, manifest_sha256, exported_at, finished_at)
     values (gen_random_uuid(), $1, 'record_jobs', '2026-04-01T00:00:00Z', 'done', 'dir:/archive/records', 3, 3,
       '2026-03-01T00:00:00Z', '2026-03-02T00:00:00.000001Z',
       '[{"name": "a/part-00000.jsonl.gz", "sha256": "ab", "count": 3, "bytes": 120}]', 'cd', now(), now()),
       (gen_random_uuid(), $2, 'record_logs', '2026-04-02T00:00:00Z', 'exporting', 'dir:/archive/records', null, null,
       null, null, '[]', null, null, null)`,
    [ids[0], ids[1]],
  );
  await pool.query(
    `insert into storage_charge_days (namespace_id, day, plan, bytes, amount, status) values
       ($1, '2026-04-13', 'space-90', 123456789, 20000, 'charged'), ($1, '2026-04-14', 'space-90', 0, 20000, 'unpaid'),
       ($2, '2026-04-14', 'space-30', 5, 0, 'free')`,
    [ids[0], ids[1]],
  );
  await pool.query(
    `insert into retention_plan_events (namespace_id, kind, body) values ($1, 'plan_set', '{"plan": "space-90"}'),
       ($1, 'grace_started', '{"day": "2026-04-14", "graceUntil": "2026-04-17T10:00:00.123Z"}')`,
    [ids[0]],
  );
  await pool.query(
    `insert into space_plan_changes (id, namespace_id, idem_key, action, from_plan, to_plan, retention_days, day,
       charged_micro, actor) values (gen_random_uuid(), $1, 'k-1', 'set', 'default', 'space-90', 90, '2026-04-13',
       20000, 'account:x')`,
    [ids[0]],
  );
  await pool.query(
    `insert into node_reputation (node_address, as_of, attempts, ok, fail_error, fail_timeout, fail_disconnect,
       latency_sum_ms, latency_n, tokens, token_seconds, valid_ok, valid_n, score, probation)
     select address, '2026-04-14T12:00:00.654321Z', 17, 0.1, 1.0 / 3, 1e-300, 2.5e300, 12345.678901234567, 0.30000000000000004,
       -0.0, 7, 3, 4, 6789, false from nodes order by address limit 2`,
  );
  await pool.query(
    `insert into qc_checks (job_id, namespace_id, model, environment, rule, verdict, node_a, node_b, node_c,
       blind_job_id, tie_job_id, wrong_node, similarity, decided_at)
     values (gen_random_uuid(), $1, 'llama3-8b', 'testnet', 'similarity', 'original_wrong', '0xa', '0xb', '0xc',
       gen_random_uuid(), gen_random_uuid(), '0xa', 0.30000000000000004, '2026-04-14T12:00:00.000001Z'),
       (gen_random_uuid(), $2, 'llama3-8b', 'mainnet', 'exact', 'agreed', '0xa', '0xb', null,
       gen_random_uuid(), null, null, 1, '2026-04-14T12:00:01Z')`,
    [ids[0], ids[1]],
  );
}

beforeAll(async () => {
  db = await createPgTestSchema();
  archive = await tempArchiveDir();
  target = await createScratchDatabase();
  const ns = await createNamespaces(db.pool, 5);
  const ids = ns.map((n) => n.id);
  await insertRegistry(db.pool, ns[0]!.accountId);
  await insertNetworkTables(db.pool, ids, ns[0]!.accountId);
  await db.pool.query(
    `insert into api_keys (namespace_id, prefix, secret_hash, name, rate_limit_per_s) values ($1, 'abcdefabcdef', '\\x0102', 'k', 5)`,
    [ids[0]],
  );
  const from = new Date('2026-03-01T00:00:00Z');
  const to = new Date('2026-03-20T00:00:00Z');
  await insertJobs(db.pool, { count: 1000, from, to, namespaceIds: ids });
  await insertTopups(db.pool, { count: 2000, from, to, namespaceIds: ids, tag: 'x' });
  // Live ledger activity as well: a reservation and a settlement through the real ledger.
  const ledger = new LedgerService({
    pool: db.pool,
    log: testLog,
    options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
  });
  await ledger.reserve(ids[1]!, '00000000-0000-4000-8000-000000000001', 500n);
  await ledger.reserve(ids[2]!, '00000000-0000-4000-8000-000000000002', 700n);
  await ledger.settle(ids[2]!, '00000000-0000-4000-8000-000000000002', 300n);
  await ledger.stop();
  const audit = new AuditService({ pool: db.pool, log: testLog });
  await audit.append({
    actor: 'admin',
    action: 'subcloud.create',
    target: 'sc-a',
    body: { nested: { a: [1, 2.5] } },
  });
  const clock = { now: () => new Date('2026-04-15T00:00:00Z') };
  await new RollupsService({
    pool: db.pool,
    log: testLog,
    clock,
    options: { detailWindowDays: 7, maxDaysPerTransaction: 31 },
    audit,
  }).rollUp();
  auditCountAtSnapshot = Number((await db.pool.query('select count(*)::int as n from audit_log')).rows[0].n);
  const snapshots = new SnapshotsService({
    pool: db.pool,
    log: testLog,
    clock,
    audit,
    target: new DirectoryStore(archive.dir),
    limits: { rows: 300, bytes: 32 * 1024 },
  });
  const created = await snapshots.create();
  originCid = created.record.cid;
  bytes = await readFile(join(archive.dir, carKey(created.record.cid)));
});
afterAll(async () => {
  await target.drop();
  await db.drop();
  await archive.remove();
});

async function rows(pool: Pool, table: string, where = ''): Promise<unknown[]> {
  const spec = snapshotSections.find((s) => s.name === table)!;
  return (await pool.query(selectSql(spec, where))).rows;
}

describe('restore from a snapshot', () => {
  it('refuses a tampered file before touching the target', async () => {
    const blocks = await indexCar(bytes);
    const tampered = Buffer.from(bytes);
    const b = blocks[2]!;
    tampered[b.blockOffset + 1]! ^= 0xff;
    await expect(
      restoreSnapshot(tampered, { pool: target.pool, schema: 'public', log: testLog }),
    ).rejects.toMatchObject({
      code: 'integrity_failed',
    });
    const tables = await target.pool.query(
      `select count(*)::int as n from pg_tables where schemaname = 'public'`,
    );
    expect(tables.rows[0].n).toBe(0);
  });

  it('the standalone verifier accepts the snapshot with the network tables', async () => {
    const tool = join(process.cwd(), 'tools', 'verify-snapshot.mjs');
    const r = await promisify(execFile)(process.execPath, [
      tool,
      join(archive.dir, carKey(originCid)),
      '--cid',
      originCid,
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true });
  });

  it('carries account tokens as their HMAC only, never the token or its secret', async () => {
    const secret = accountToken.slice('rtya_'.length + 13);
    for (const plain of [accountToken, secret]) expect(bytes.includes(Buffer.from(plain))).toBe(false);
    expect(bytes.includes(tokenHash)).toBe(true);
  });

  it('refuses a consistent forgery of an account token hash pinned to the original CID, writing nothing', async () => {
    const forged = await forgeCar(bytes, {
      rows: {
        section: 'account_tokens',
        edit: (rows) => rows.map((r) => r.map((v, i) => (i === 3 ? new Uint8Array(32).fill(7) : v))),
      },
    });
    await expect(
      restoreSnapshot(
        forged.bytes,
        { pool: target.pool, schema: 'public', log: testLog },
        { expectedCid: originCid },
      ),
    ).rejects.toMatchObject({ code: 'integrity_failed' });
    const tables = await target.pool.query(
      `select count(*)::int as n from pg_tables where schemaname = 'public'`,
    );
    expect(tables.rows[0].n).toBe(0);
  });

  it('restores every balance, registry, rollup and audit row exactly; ledger and audit verify there', async () => {
    const result = await restoreSnapshot(bytes, { pool: target.pool, schema: 'public', log: testLog });
    for (const name of networkTables)
      expect(result.rows.find((r) => r.name === name)?.count, name).toBeGreaterThan(0);
    expect(
      (
        await target.pool.query(
          'select count(*)::int as n from namespaces where retention_grace_until is not null',
        )
      ).rows[0].n,
    ).toBe(1);
    expect(result.rows.find((r) => r.name === 'ledger_entries')?.count).toBe(2000 + 3 + 1);
    for (const spec of snapshotSections) {
      const where = spec.name === 'audit_log' ? `where seq <= ${auditCountAtSnapshot}` : '';
      const source = await rows(db.pool, spec.name, where);
      expect(await rows(target.pool, spec.name, where), spec.name).toEqual(source);
    }
    const ledger = new LedgerService({
      pool: target.pool,
      log: testLog,
      options: { batchMaxWaitMs: 0, batchMaxSize: 1, batchConcurrency: 1, holdTimeoutMs: 60_000 },
    });
    expect(await ledger.verifyLedger()).toEqual([]);
    // The restored network keeps working: a new ledger entry gets the next identity.
    const [ns] = (
      await target.pool.query('select namespace_id from credit_balances order by namespace_id limit 1')
    ).rows;
    await ledger.topUp(ns.namespace_id, 1n, 'after-restore');
    await ledger.stop();
    // The account's token works on the launched network (same pepper), its revoked one does not.
    const restoredAccounts = new AccountsService({
      pool: target.pool,
      apiKeyPepper: db.config.API_KEY_PEPPER,
    });
    await expect(restoredAccounts.verifyAccountToken(accountToken)).resolves.toMatchObject({
      accountId: (await db.pool.query('select account_id from account_tokens limit 1')).rows[0].account_id,
    });
    // A new plan event gets the next identity after the restored ones.
    await target.pool.query(
      `insert into retention_plan_events (namespace_id, kind) select namespace_id, 'plan_set' from space_plan_changes`,
    );
    const audit = new AuditService({ pool: target.pool, log: testLog });
    const verified = await audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified.entries).toBe(auditCountAtSnapshot + 1); // the snapshot's entries + network.restore
  });

  it("the restored network's first snapshot names its origin CID, and it restored only from the pinned CID", async () => {
    await expect(
      restoreSnapshot(
        bytes,
        { pool: target.pool, schema: 'public', log: testLog },
        { expectedCid: 'bafyother' },
      ),
    ).rejects.toMatchObject({ code: 'integrity_failed' });
    const dir = await tempArchiveDir();
    try {
      const first = await new SnapshotsService({
        pool: target.pool,
        log: testLog,
        clock: { now: () => new Date('2026-04-16T00:00:00Z') },
        audit: new AuditService({ pool: target.pool, log: testLog }),
        target: new DirectoryStore(dir.dir),
        limits: { rows: 300, bytes: 32 * 1024 },
      }).create();
      expect(first.record).toMatchObject({ seq: 1, prevCid: null });
      const { SnapshotReader } = await import('./index.js');
      const snap = await SnapshotReader.open(
        await readFile(join(dir.dir, carKey(first.record.cid))),
        first.record.cid,
      );
      expect(snap.manifest.origin?.toString()).toBe(originCid);
    } finally {
      await dir.remove();
    }
  });

  it('refuses a target that is not empty', async () => {
    await expect(
      restoreSnapshot(bytes, { pool: target.pool, schema: 'public', log: testLog }),
    ).rejects.toMatchObject({
      code: 'precondition_failed',
    });
  });

  it('restores a snapshot written before the grace column existed (the column takes its default)', async () => {
    const older = await forgeCar(bytes, {
      rows: {
        section: 'namespaces',
        edit: (rows) => rows.map((r) => r.slice(0, -1)),
        columns: (cols) => cols.slice(0, -1),
      },
    });
    // The forged file stands for an older format: pinned by its own CID.
    const { SnapshotReader } = await import('./index.js');
    const section = await (await SnapshotReader.open(older.bytes, older.cid)).section('namespaces');
    expect(section.columns.at(-1)?.[0]).toBe('created_at');
    const scratch = await createScratchDatabase();
    try {
      await restoreSnapshot(
        older.bytes,
        { pool: scratch.pool, schema: 'public', log: testLog },
        { expectedCid: older.cid },
      );
      const source = await rows(db.pool, 'namespaces');
      const restored = await scratch.pool.query(
        'select count(*)::int as n from namespaces where retention_grace_until is null',
      );
      expect(restored.rows[0].n).toBe(source.length);
    } finally {
      await scratch.drop();
    }
  });
});
