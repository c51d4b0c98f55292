// SQL for the node registry, moderation flags and Subcloud membership (the truth live state rebuilds from).
import type { Environment } from '../../config/vocabulary.js';
import type { Queryable } from '../../stores/postgres/pool.js';
import type { FlagState, NodeFlag } from './node-status.js';

export interface RegisteredNode {
  address: string;
  accountId: string | null;
  environment: Environment;
  status: 'registered' | 'active' | 'retired';
  region: string | null;
}

export interface NodeTruth {
  node: RegisteredNode;
  /** Flags in force now (expired cooldowns filtered out). */
  flags: FlagState[];
  subcloudIds: string[];
  /** Measured reputation last mirrored (absent for a node never observed). */
  reputation?: { score: number; probation: boolean };
}

export interface FlagRecord extends FlagState {
  nodeAddress: string;
  reason: string | null;
  setBy: string;
  setAt: Date;
}

export interface Subcloud {
  id: string;
  name: string;
  environment: Environment;
}

export class NodesRepository {
  async upsertNode(
    db: Queryable,
    n: {
      address: string;
      environment: Environment;
      accountId?: string;
      region?: string;
      gpuModel?: string;
      gpuMemoryMb?: number;
    },
  ): Promise<void> {
    await db.query(
      `insert into nodes (address, account_id, environment, region, gpu_model, gpu_memory_mb)
       values ($1, $2, $3, $4, $5, $6)
       on conflict (address) do update set account_id = coalesce(excluded.account_id, nodes.account_id),
         environment = excluded.environment, region = excluded.region, gpu_model = excluded.gpu_model,
         gpu_memory_mb = excluded.gpu_memory_mb, updated_at = now()`,
      [
        n.address,
        n.accountId ?? null,
        n.environment,
        n.region ?? null,
        n.gpuModel ?? null,
        n.gpuMemoryMb ?? null,
      ],
    );
  }

  /** Registry row, flags in force and Subclouds for each address, in one round trip. */
  async loadTruth(db: Queryable, addresses: string[]): Promise<Map<string, NodeTruth>> {
    const r = await db.query<{
      address: string;
      account_id: string | null;
      environment: Environment;
      status: RegisteredNode['status'];
      region: string | null;
      flags: Array<{ flag: NodeFlag; expires_at: string | null }> | null;
      subclouds: string[] | null;
      rep_score: number | null;
      rep_probation: boolean | null;
    }>(
      `select n.address, n.account_id, n.environment, n.status, n.region,
         (select json_agg(json_build_object('flag', f.flag, 'expires_at', f.expires_at))
            from node_flags f where f.node_address = n.address and (f.expires_at is null or f.expires_at > now())) as flags,
         (select array_agg(m.subcloud_id::text order by m.subcloud_id)
            from subcloud_members m where m.node_address = n.address) as subclouds,
         r.score as rep_score, r.probation as rep_probation
       from nodes n left join node_reputation r on r.node_address = n.address where n.address = any($1::text[])`,
      [addresses],
    );
    return new Map(
      r.rows.map((row) => [
        row.address,
        {
          node: {
            address: row.address,
            accountId: row.account_id,
            environment: row.environment,
            status: row.status,
            region: row.region,
          },
          flags: (row.flags ?? []).map((f) => ({
            flag: f.flag,
            expiresAt: f.expires_at ? new Date(f.expires_at) : null,
          })),
          subcloudIds: row.subclouds ?? [],
          ...(row.rep_score !== null
            ? { reputation: { score: row.rep_score, probation: row.rep_probation ?? true } }
            : {}),
        },
      ]),
    );
  }

  /**
   * Binds a node to an account in one statement: inserts it, or updates it when it is unbound or already bound
   * to the same account. Returns the account it is bound to afterwards (another account's id: refused).
   */
  async bindNode(
    db: Queryable,
    n: {
      address: string;
      environment: Environment;
      accountId: string;
      region?: string;
      gpuModel?: string;
      gpuMemoryMb?: number;
    },
  ): Promise<{ bound: boolean; accountId: string | null }> {
    const r = await db.query<{ account_id: string }>(
      `insert into nodes (address, account_id, environment, region, gpu_model, gpu_memory_mb, bound_at)
       values ($1, $2, $3, $4, $5, $6, now())
       on conflict (address) do update set account_id = excluded.account_id,
         environment = excluded.environment, region = excluded.region, gpu_model = excluded.gpu_model,
         gpu_memory_mb = excluded.gpu_memory_mb, bound_at = coalesce(nodes.bound_at, now()), updated_at = now()
       where nodes.account_id is null or nodes.account_id = excluded.account_id
       returning account_id::text`,
      [n.address, n.accountId, n.environment, n.region ?? null, n.gpuModel ?? null, n.gpuMemoryMb ?? null],
    );
    if (r.rows[0]) return { bound: true, accountId: r.rows[0].account_id };
    const cur = await db.query<{ account_id: string | null }>(
      'select account_id::text from nodes where address = $1',
      [n.address],
    );
    return { bound: false, accountId: cur.rows[0]?.account_id ?? null };
  }

  async findNode(db: Queryable, address: string): Promise<RegisteredNode | undefined> {
    return (await this.loadTruth(db, [address])).get(address)?.node;
  }

  /** Sets (or replaces) a flag; the newest admin action wins. */
  async upsertFlag(
    db: Queryable,
    f: { nodeAddress: string; flag: NodeFlag; reason?: string; setBy: string; expiresAt: Date | null },
  ): Promise<void> {
    await db.query(
      `insert into node_flags (node_address, flag, reason, set_by, expires_at) values ($1, $2, $3, $4, $5)
       on conflict (node_address, flag) do update set reason = excluded.reason, set_by = excluded.set_by,
         set_at = now(), expires_at = excluded.expires_at`,
      [f.nodeAddress, f.flag, f.reason ?? null, f.setBy, f.expiresAt],
    );
  }

  /** Every node bound to the same operator account as `addresses` (each unbound node stands for itself). */
  async findOperatorNodes(db: Queryable, addresses: string[]): Promise<string[]> {
    const r = await db.query<{ address: string }>(
      `select n.address from nodes n
        where n.address = any($1::text[])
           or n.account_id in (select account_id from nodes where address = any($1::text[]) and account_id is not null)`,
      [addresses],
    );
    return [...new Set([...addresses, ...r.rows.map((x) => x.address)])];
  }

  async deleteFlag(db: Queryable, nodeAddress: string, flag: NodeFlag): Promise<boolean> {
    const r = await db.query('delete from node_flags where node_address = $1 and flag = $2', [
      nodeAddress,
      flag,
    ]);
    return r.rowCount === 1;
  }

  /** Flags in force with their node's environment, oldest change first (bounded). */
  async listFlagsInForce(
    db: Queryable,
    limit: number,
  ): Promise<Array<FlagState & { nodeAddress: string; environment: Environment }>> {
    const r = await db.query<{
      node_address: string;
      flag: NodeFlag;
      expires_at: Date | null;
      environment: Environment;
    }>(
      `select f.node_address, f.flag, f.expires_at, n.environment from node_flags f
       join nodes n on n.address = f.node_address
       where f.expires_at is null or f.expires_at > now() order by f.set_at limit $1`,
      [limit],
    );
    return r.rows.map((x) => ({
      nodeAddress: x.node_address,
      flag: x.flag,
      expiresAt: x.expires_at,
      environment: x.environment,
    }));
  }

  async listFlags(db: Queryable, nodeAddress: string): Promise<FlagRecord[]> {
    const r = await db.query<{
      node_address: string;
      flag: NodeFlag;
      reason: string | null;
      set_by: string;
      set_at: Date;
      expires_at: Date | null;
    }>('select * from node_flags where node_address = $1 order by flag', [nodeAddress]);
    return r.rows.map((x) => ({
      nodeAddress: x.node_address,
      flag: x.flag,
      reason: x.reason,
      setBy: x.set_by,
      setAt: x.set_at,
      expiresAt: x.expires_at,
    }));
  }

  async insertSubcloud(db: Queryable, s: { name: string; environment: Environment }): Promise<Subcloud> {
    const r = await db.query<Subcloud>(
      'insert into subclouds (name, environment) values ($1, $2) returning id, name, environment',
      [s.name, s.environment],
    );
    return r.rows[0]!;
  }

  async listSubclouds(db: Queryable, environment: Environment): Promise<Subcloud[]> {
    const r = await db.query<Subcloud>(
      'select id, name, environment from subclouds where environment = $1 order by name',
      [environment],
    );
    return r.rows;
  }

  /** Adds the member and returns the node's Subclouds after the change. */
  async addSubcloudMember(db: Queryable, subcloudId: string, nodeAddress: string): Promise<string[]> {
    await db.query(
      'insert into subcloud_members (subcloud_id, node_address) values ($1, $2) on conflict do nothing',
      [subcloudId, nodeAddress],
    );
    return this.subcloudsOf(db, nodeAddress);
  }

  async removeSubcloudMember(db: Queryable, subcloudId: string, nodeAddress: string): Promise<string[]> {
    await db.query('delete from subcloud_members where subcloud_id = $1 and node_address = $2', [
      subcloudId,
      nodeAddress,
    ]);
    return this.subcloudsOf(db, nodeAddress);
  }

  private async subcloudsOf(db: Queryable, nodeAddress: string): Promise<string[]> {
    const r = await db.query<{ id: string }>(
      'select subcloud_id::text as id from subcloud_members where node_address = $1 order by subcloud_id',
      [nodeAddress],
    );
    return r.rows.map((x) => x.id);
  }
}
