// `ledger verify --against <cid>`: reconciles the live ledger with a snapshot under a signed checkpoint. Every entry the
// snapshot holds must be in the database byte for byte, no entry may appear dated before it, and the live balances and
// holds must equal the live entries; what the checkpoint signed is the anchor, not anything stored in PostgreSQL.
import * as dagCbor from '@ipld/dag-cbor';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import type { SignedCheckpoint } from './checkpoint.js';
import { DeepChecker } from './snapshot-deep.js';
import type { SnapshotReader } from './snapshot-reader.js';
import { snapshotSections } from '../canonical/index.js';
import { tableRows } from './snapshot-builder.js';
import { rowValues, selectSql, type TableSpec } from '../canonical/index.js';

export interface LedgerAnchorResult {
  problems: string[];
  /** Entries the snapshot holds, and those written since (id above its last). */
  checkpointed: number;
  since: number;
}

/** Entries written this close to the snapshot may have been in flight (id taken, not yet committed) when it was read. */
const IN_FLIGHT_MS = 60_000;
const MAX_PROBLEMS = 20;
const spec = (n: string) => snapshotSections.find((s) => s.name === n)!;

async function snapshotItems(snap: SnapshotReader, name: string): Promise<Uint8Array[]> {
  // The entries of one snapshot, as bytes (the comparison walks them beside a cursor over the live rows).
  const s = await snap.section(name);
  const out: Uint8Array[] = [];
  for (let i = 0; i < s.chunks.length; i += 1) out.push(...(await snap.chunkItems(s, i)));
  return out;
}

async function* liveRows(tx: PoolClient, t: TableSpec): AsyncIterable<unknown[]> {
  for (const r of (await tx.query<unknown[]>({ text: selectSql(t), rowMode: 'array' })).rows)
    yield rowValues(t, r);
}

export async function ledgerAgainst(
  pool: Pool,
  snap: SnapshotReader,
  signed: SignedCheckpoint,
): Promise<LedgerAnchorResult> {
  const c = signed.checkpoint;
  const lastId = BigInt(c.ledger.lastEntryId);
  const cutoff = new Date(new Date(c.createdAt).getTime() - IN_FLIGHT_MS);
  return withTransaction(
    pool,
    async (tx) => {
      const problems: string[] = [];
      const add = (p: string) => problems.length < MAX_PROBLEMS && problems.push(p);
      // 1. The checkpointed entries, in id order, against the live rows with those ids.
      const want = (await snapshotItems(snap, 'ledger_entries'))[Symbol.iterator]();
      let checkpointed = 0;
      let next = want.next();
      for await (const got of tableRows(tx, spec('ledger_entries'), 'where id <= $1', [lastId.toString()])) {
        const gotId = BigInt((dagCbor.decode(got) as unknown[])[0] as number);
        while (!next.done && BigInt((dagCbor.decode(next.value) as unknown[])[0] as number) < gotId) {
          add(
            `ledger entry ${(dagCbor.decode(next.value) as unknown[])[0]} of the checkpoint is missing from the database`,
          );
          checkpointed += 1;
          next = want.next();
        }
        const wantId = next.done ? undefined : BigInt((dagCbor.decode(next.value) as unknown[])[0] as number);
        if (wantId !== gotId) {
          const row = dagCbor.decode(got) as unknown[];
          const at = new Date(Number(BigInt(row[8] as number) / 1000n));
          if (at < cutoff)
            add(`ledger entry ${gotId} (${row[1]} ${row[5]}) is not in the checkpointed snapshot`);
          continue;
        }
        if (!Buffer.from(got).equals(Buffer.from(next.value!)))
          add(`ledger entry ${gotId} differs from the checkpointed snapshot (edited in the database)`);
        checkpointed += 1;
        next = want.next();
      }
      for (; !next.done; next = want.next()) {
        add(
          `ledger entry ${(dagCbor.decode(next.value) as unknown[])[0]} of the checkpoint is missing from the database`,
        );
        checkpointed += 1;
      }
      // 2. Nothing new may be dated before the checkpoint (a minted, backdated top-up).
      const back = await tx.query<{ id: string; kind: string; amount: string }>(
        `select id::text, kind, amount::text from ledger_entries where id > $1 and created_at < $2 order by id limit $3`,
        [lastId.toString(), cutoff, MAX_PROBLEMS],
      );
      for (const r of back.rows)
        add(
          `ledger entry ${r.id} (${r.kind} ${r.amount}) is dated before checkpoint ${c.seq} but is not in it`,
        );
      // 3. Live balances and holds against all live entries.
      const deep = new DeepChecker();
      for (const name of ['credit_balances', 'node_balances', 'credit_holds', 'ledger_entries'])
        for await (const r of liveRows(tx, spec(name))) deep.row(name, r);
      for (const p of deep.balanceProblems()) add(`live ${p}`);
      const since = await tx.query<{ n: string }>(
        'select count(*)::text as n from ledger_entries where id > $1',
        [lastId.toString()],
      );
      if (String(checkpointed) !== c.ledger.entries)
        add(`the snapshot holds ${checkpointed} entries, its checkpoint signs ${c.ledger.entries}`);
      return { problems, checkpointed, since: Number(since.rows[0]!.n) };
    },
    'repeatable read',
  );
}
