// The audit log against the real PostgreSQL: concurrent appends form one chain; tampering is detected.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgTestSchema, testLog, type PgTestSchema } from '../../../test/harness.js';
import { AuditService } from './index.js';

let db: PgTestSchema;
let audit: AuditService;

beforeAll(async () => {
  db = await createPgTestSchema();
  audit = new AuditService({ pool: db.pool, log: testLog });
});
afterAll(async () => {
  await db.drop();
});

/** Runs SQL with triggers off (superuser), as someone tampering with the table directly would. */
async function tamper(sql: string): Promise<void> {
  const c = await db.pool.connect();
  try {
    await c.query('begin');
    await c.query('set local session_replication_role = replica');
    await c.query(sql);
    await c.query('commit');
  } finally {
    c.release();
  }
}

async function restoreFrom(backup: string): Promise<void> {
  await tamper(`delete from audit_log; insert into audit_log select * from ${backup}`);
}

describe('audit log', () => {
  it('40 concurrent appends make one gap-free chain that verifies', async () => {
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        audit.append({
          actor: `admin-${i % 3}`,
          action: 'config.set',
          target: `key-${i}`,
          body: { i, z: [1, 2] },
        }),
      ),
    );
    const r = await audit.verify();
    expect(r.entries).toBe(40);
    expect(r.head?.seq).toBe(40n);
    expect(r.problems).toEqual([]);
    await db.pool.query('create table audit_backup as select * from audit_log');
  });

  it('refuses UPDATE and DELETE through the normal path', async () => {
    await expect(db.pool.query(`update audit_log set actor = 'x' where seq = 1`)).rejects.toThrow(
      /append-only/,
    );
    await expect(db.pool.query('delete from audit_log where seq = 1')).rejects.toThrow(/append-only/);
  });

  it('detects a removed entry', async () => {
    await tamper('delete from audit_log where seq = 17');
    const r = await audit.verify();
    expect(r.problems.map((p) => `${p.seq}:${p.kind}`)).toEqual(['18:missing', '18:broken_link']);
    await restoreFrom('audit_backup');
    expect((await audit.verify()).problems).toEqual([]);
  });

  it('detects an altered entry', async () => {
    await tamper(`update audit_log set body = '{"i": 1000}' where seq = 9`);
    const r = await audit.verify();
    expect(r.problems.map((p) => `${p.seq}:${p.kind}`)).toEqual(['9:altered']);
    await restoreFrom('audit_backup');
  });

  it('detects reordered entries', async () => {
    await tamper('update audit_log set seq = -1 where seq = 5');
    await tamper('update audit_log set seq = 5 where seq = 6');
    await tamper('update audit_log set seq = 6 where seq = -1');
    const r = await audit.verify();
    expect(r.problems.length).toBeGreaterThan(0);
    expect(r.problems[0]).toMatchObject({ seq: 5n });
    await restoreFrom('audit_backup');
  });

  it('detects a removed tail against an anchored head, and appends continue the chain', async () => {
    const head = (await audit.head())!;
    await tamper(`delete from audit_log where seq = ${head.seq}`);
    const r = await audit.verify({ anchor: head });
    expect(r.problems.map((p) => p.kind)).toEqual(['head_mismatch']);
    await restoreFrom('audit_backup');
    const next = await audit.append({ actor: 'admin', action: 'node.freeze', target: '0xabc' });
    expect(next.seq).toBe(head.seq + 1n);
    expect(next.prevHash).toEqual(head.hash);
    expect((await audit.verify({ anchor: head })).problems).toEqual([]);
  });
});
