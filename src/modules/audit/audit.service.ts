// The admin and config history: appends hash-chained entries one at a time and verifies the whole chain.
import type { Logger } from '../../platform/logger.js';
import { withTransaction, type Pool, type PoolClient, type Queryable } from '../../stores/postgres/pool.js';
import { AppError } from '../../platform/errors.js';
import {
  ChainVerifier,
  GENESIS_HASH,
  chainHash,
  normalizeBody,
  type AuditEntry,
  type ChainProblem,
} from './audit-chain.js';
import { AuditRepository } from './audit.repository.js';

export interface AppendInput {
  actor: string;
  action: string;
  target?: string | null;
  body?: unknown;
}

export interface AuditVerifyResult {
  entries: number;
  head: { seq: bigint; hash: Buffer } | undefined;
  problems: ChainProblem[];
}

const PAGE = 5000;

export class AuditService {
  private readonly repo = new AuditRepository();

  constructor(private readonly deps: { pool: Pool; log: Logger }) {}

  /** Appends one entry in its own transaction (or the caller's, so that a change and its record commit together). */
  async append(input: AppendInput, tx?: PoolClient): Promise<AuditEntry> {
    if (!input.actor || !input.action)
      throw new AppError('invalid_request', 'audit entries need an actor and an action');
    const run = async (client: PoolClient) => {
      const head = await this.repo.lockHead(client);
      const base = {
        seq: head.seq + 1n,
        atMicros: head.nowMicros,
        actor: input.actor,
        action: input.action,
        target: input.target ?? null,
        body: normalizeBody(input.body),
      };
      const prevHash = head.hash ?? GENESIS_HASH;
      const entry: AuditEntry = { ...base, prevHash, hash: chainHash(prevHash, base) };
      await this.repo.insert(client, entry);
      return entry;
    };
    return tx ? run(tx) : withTransaction(this.deps.pool, run);
  }

  head(db: Queryable = this.deps.pool): Promise<{ seq: bigint; hash: Buffer } | undefined> {
    return this.repo.head(db);
  }

  /** Reads the chain in seq order in one repeatable-read view; `anchor` is a head recorded elsewhere (a snapshot). */
  async verify(opts: { anchor?: { seq: bigint; hash: Buffer } } = {}): Promise<AuditVerifyResult> {
    return withTransaction(
      this.deps.pool,
      async (tx) => {
        const v = new ChainVerifier();
        let after = 0n;
        let last: AuditEntry | undefined;
        for (;;) {
          // Paging by the last seen seq keeps every row in the order the chain defines.
          const page = await this.repo.readAfter(tx, after, PAGE);
          for (const e of page) v.push(e);
          if (page.length < PAGE) {
            last = page[page.length - 1] ?? last;
            break;
          }
          last = page[page.length - 1];
          after = last!.seq;
        }
        if (opts.anchor) v.checkAnchor(opts.anchor);
        return {
          entries: v.count,
          head: last ? { seq: last.seq, hash: last.hash } : undefined,
          problems: v.problems,
        };
      },
      'repeatable read',
    );
  }

  /**
   * Compares the live chain with a copy kept outside this database (a snapshot under a signed checkpoint): every entry
   * up to the copy's head must have the same hash. Rewriting an entry and recomputing every later hash (and any
   * anchor stored here) passes verify(), but not this.
   */
  async compareWith(copy: Iterable<{ seq: bigint; hash: Buffer }>): Promise<ChainProblem[]> {
    const expected = new Map<bigint, Buffer>();
    let head = 0n;
    for (const e of copy) {
      expected.set(e.seq, e.hash);
      if (e.seq > head) head = e.seq;
    }
    const problems: ChainProblem[] = [];
    const live = new Map<bigint, Buffer>();
    let after = 0n;
    while (after < head) {
      const page = await this.repo.readAfter(this.deps.pool, after, PAGE);
      if (page.length === 0) break;
      for (const e of page) if (e.seq <= head) live.set(e.seq, e.hash);
      after = page[page.length - 1]!.seq;
    }
    for (let seq = 1n; seq <= head; seq += 1n) {
      const want = expected.get(seq);
      const got = live.get(seq);
      if (!want) continue;
      if (!got)
        problems.push({
          seq,
          kind: 'missing',
          message: `entry ${seq}, in the checkpointed copy, is missing`,
        });
      else if (!got.equals(want))
        problems.push({
          seq,
          kind: 'altered',
          message: `entry ${seq} differs from the checkpointed copy (history rewritten in the database)`,
        });
    }
    return problems;
  }
}
