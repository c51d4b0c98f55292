// Registry, moderation flags and Subcloud membership: written to PostgreSQL (the truth), then mirrored
// into live state. A node with no live record picks its flags up on its next heartbeat (hydration).
import { isAddress, type Environment } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import type { Logger } from '../../platform/logger.js';
import type { Pool, PoolClient } from '../../stores/postgres/pool.js';
import type { LiveStore } from './live.store.js';
import { NodesRepository, type FlagRecord, type RegisteredNode, type Subcloud } from './nodes.repository.js';
import { nodeFlags, type NodeFlag } from './node-status.js';

export class NodeAdminService {
  private readonly repo = new NodesRepository();
  private readonly log: Logger;

  constructor(private readonly deps: { pool: Pool; live: LiveStore; log: Logger }) {
    this.log = deps.log.child({ component: 'node-admin' });
  }

  async registerNode(n: {
    address: string;
    environment: Environment;
    accountId?: string;
    region?: string;
    gpuModel?: string;
    gpuMemoryMb?: number;
  }): Promise<void> {
    if (!isAddress(n.address)) throw new AppError('invalid_request', 'address must be lower-case hex');
    await this.repo.upsertNode(this.deps.pool, n);
  }

  /**
   * Binds a node to an account (Gate API): refused with `already_exists` (409) when the node is bound to another
   * account; the check and the write are one statement, so two accounts racing cannot both win. `tx` lets the
   * caller commit the binding with its audit entry.
   */
  async bindNode(
    n: {
      address: string;
      environment: Environment;
      accountId: string;
      region?: string;
      gpuModel?: string;
      gpuMemoryMb?: number;
    },
    tx?: PoolClient,
  ): Promise<void> {
    if (!isAddress(n.address)) throw new AppError('invalid_request', 'address must be lower-case hex');
    const r = await this.repo.bindNode(tx ?? this.deps.pool, n);
    if (!r.bound) throw new AppError('already_exists', `node ${n.address} is bound to another account`);
  }

  /** The registry entry of a node, if registered. */
  async findNode(address: string): Promise<RegisteredNode | undefined> {
    return this.repo.findNode(this.deps.pool, address);
  }

  /** Sets pause, freeze or shadow_ban, optionally with a cooldown end; persisted, then mirrored. */
  async setFlag(f: {
    nodeAddress: string;
    flag: NodeFlag;
    setBy: string;
    reason?: string;
    expiresAt?: Date | null;
  }): Promise<void> {
    if (!nodeFlags.includes(f.flag))
      throw new AppError('invalid_request', `flag must be one of ${nodeFlags.join(', ')}`);
    const node = await this.requireNode(f.nodeAddress);
    const expiresAt = f.expiresAt ?? null;
    await this.repo.upsertFlag(this.deps.pool, { ...f, expiresAt });
    await this.deps.live.mirrorFlag(node.environment, f.nodeAddress, f.flag, 'set', expiresAt);
    this.log.info({ nodeId: f.nodeAddress, flag: f.flag, setBy: f.setBy, expiresAt }, 'node flag set');
  }

  /**
   * Writes a flag inside the caller's transaction (a spot check's verdict and its shadow-ban commit together);
   * the caller mirrors it with mirrorFlag after the commit (a lost mirror is healed by the flag reconcile task).
   */
  async persistFlag(
    tx: PoolClient,
    f: { nodeAddress: string; flag: NodeFlag; setBy: string; reason?: string },
  ): Promise<void> {
    // Driver errors are already translated at the store boundary (the pool's query wrapper).
    await this.repo.upsertFlag(tx, { ...f, expiresAt: null });
  }

  async mirrorFlag(nodeAddress: string, flag: NodeFlag): Promise<void> {
    const node = await this.requireNode(nodeAddress);
    await this.deps.live.mirrorFlag(node.environment, nodeAddress, flag, 'set', null);
    this.log.info({ nodeId: nodeAddress, flag }, 'node flag set by a spot check');
  }

  /** The nodes of the operator accounts of `addresses` (a blind copy never goes to the same operator). */
  operatorNodes(addresses: string[]): Promise<string[]> {
    return this.repo.findOperatorNodes(this.deps.pool, addresses);
  }

  async clearFlag(nodeAddress: string, flag: NodeFlag, clearedBy: string): Promise<boolean> {
    const node = await this.requireNode(nodeAddress);
    const removed = await this.repo.deleteFlag(this.deps.pool, nodeAddress, flag);
    await this.deps.live.mirrorFlag(node.environment, nodeAddress, flag, 'clear', null);
    this.log.info({ nodeId: nodeAddress, flag, clearedBy, removed }, 'node flag cleared');
    return removed;
  }

  /**
   * Re-mirrors every flag in force from PostgreSQL (idempotent) and clears mirrored flags PostgreSQL
   * no longer has. Heals a mirror lost to a crash between the two writes, or overtaken by a concurrent
   * change. Bounded per run; clearing only when the PostgreSQL list was complete.
   */
  async reconcileFlags(limit = 10_000, signal?: AbortSignal): Promise<{ mirrored: number; cleared: number }> {
    const flags = await this.repo.listFlagsInForce(this.deps.pool, limit);
    let mirrored = 0;
    // An aborted signal (the task's lock lost, or stopping) stops it between batches.
    for (let i = 0; i < flags.length && !signal?.aborted; i += 500) {
      const done = await Promise.all(
        flags
          .slice(i, i + 500)
          .map((f) => this.deps.live.mirrorFlag(f.environment, f.nodeAddress, f.flag, 'set', f.expiresAt)),
      );
      mirrored += done.filter(Boolean).length;
    }
    let cleared = 0;
    if (flags.length < limit && !signal?.aborted) {
      const inForce = new Set(flags.map((f) => `${f.environment}|${f.nodeAddress}|${f.flag}`));
      for (const { environment, base } of this.deps.live.cellBases()) {
        for (const member of await this.deps.live.readFlagged(base)) {
          const [address, flag] = member.split('|') as [string, NodeFlag];
          if (signal?.aborted) return { mirrored, cleared };
          if (inForce.has(`${environment}|${member}`)) continue;
          await this.deps.live.mirrorFlag(environment, address, flag, 'clear', null);
          cleared += 1;
        }
      }
    }
    return { mirrored, cleared };
  }

  async listFlags(nodeAddress: string): Promise<FlagRecord[]> {
    return this.repo.listFlags(this.deps.pool, nodeAddress);
  }

  async createSubcloud(s: { name: string; environment: Environment }): Promise<Subcloud> {
    return this.repo.insertSubcloud(this.deps.pool, s);
  }

  async addSubcloudMember(subcloudId: string, nodeAddress: string): Promise<void> {
    const node = await this.requireNode(nodeAddress);
    const ids = await this.repo.addSubcloudMember(this.deps.pool, subcloudId, nodeAddress);
    await this.deps.live.mirrorSubclouds(node.environment, nodeAddress, ids);
  }

  async removeSubcloudMember(subcloudId: string, nodeAddress: string): Promise<void> {
    const node = await this.requireNode(nodeAddress);
    const ids = await this.repo.removeSubcloudMember(this.deps.pool, subcloudId, nodeAddress);
    await this.deps.live.mirrorSubclouds(node.environment, nodeAddress, ids);
  }

  private async requireNode(address: string) {
    const node = await this.repo.findNode(this.deps.pool, address);
    if (!node) throw new AppError('not_found', `no registered node ${address}`);
    return node;
  }
}
