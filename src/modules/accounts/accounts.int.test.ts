// API keys against the real PostgreSQL: lookup by prefix + hash, revocation, and the secret stored nowhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, createPgTestSchema, type PgTestSchema } from '../../../test/harness.js';
import { AccountsService, parseApiKey } from './index.js';

let db: PgTestSchema;
let accounts: AccountsService;
beforeAll(async () => {
  db = await createPgTestSchema({ poolSize: 2 });
  accounts = new AccountsService({ pool: db.pool, apiKeyPepper: baseConfig.API_KEY_PEPPER });
});
afterAll(async () => {
  await db.drop();
});

describe('API keys', () => {
  it('verifies a key by prefix + hash and never stores the secret', async () => {
    const account = await accounts.createAccount({ email: 'keys@example.test' });
    const ns = await accounts.createNamespace({ accountId: account.id, name: 'prod' });
    const { key, plaintext } = await accounts.createApiKey({ namespaceId: ns.id, name: 'ci' });
    const parsed = parseApiKey(plaintext)!;
    expect(parsed.prefix).toBe(key.prefix);

    const found = await accounts.verifyApiKey(plaintext);
    expect(found).toMatchObject({ id: key.id, namespaceId: ns.id, status: 'active' });

    // Every row of every table in the schema, as text: neither the secret nor the full key appears.
    const tables = await db.pool.query<{ tablename: string }>(
      'select tablename from pg_tables where schemaname = $1',
      [db.schema],
    );
    let dump = '';
    for (const { tablename } of tables.rows) {
      const rows = await db.pool.query(`select row_to_json(t)::text as j from ${tablename} t`);
      dump += rows.rows.map((r) => r.j).join('\n');
    }
    expect(dump).toContain(key.prefix);
    expect(dump).not.toContain(parsed.secret);
    expect(dump).not.toContain(Buffer.from(parsed.secret).toString('hex'));

    const tampered = plaintext.slice(0, -1) + (plaintext.endsWith('A') ? 'B' : 'A');
    await expect(accounts.verifyApiKey(tampered)).rejects.toMatchObject({
      code: 'unauthorized',
      status: 401,
    });
    await expect(accounts.verifyApiKey('sk-not-ours')).rejects.toMatchObject({ code: 'unauthorized' });

    await accounts.revokeApiKey(ns.id, key.id);
    await expect(accounts.verifyApiKey(plaintext)).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(accounts.revokeApiKey(ns.id, key.id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('refuses bad input clearly and leaves nothing behind', async () => {
    const count = async () => (await db.pool.query('select count(*)::int as n from namespaces')).rows[0].n;
    const account = await accounts.createAccount({ walletAddress: `0x${'1'.repeat(40)}` });
    const before = await count();
    await expect(
      accounts.createNamespace({ accountId: account.id, name: 'Bad Name!' }),
    ).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(accounts.createAccount({})).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(accounts.createAccount({ walletAddress: '0xABC' })).rejects.toMatchObject({
      code: 'invalid_request',
    });
    await accounts.createNamespace({ accountId: account.id, name: 'dup' });
    await expect(accounts.createNamespace({ accountId: account.id, name: 'dup' })).rejects.toMatchObject({
      code: 'already_exists',
    });
    expect(await count()).toBe(before + 1);
    const balances = await db.pool.query(
      'select count(*)::int as n from credit_balances b join namespaces n on n.id = b.namespace_id where n.account_id = $1',
      [account.id],
    );
    expect(balances.rows[0].n).toBe(1);
  });
});
