// The node gateway (being built: see issue 6).
import type { Server } from 'node:http';
import type { Lease } from '../modules/nodes/index.js';
import type { JobMessage } from '../modules/routing/index.js';
import type { NodeExecutor, NodeResult } from '../modules/jobs/index.js';
import type { Backbone } from '../server/backbone.js';

export class NodeGateway implements NodeExecutor {
  constructor(private readonly b: Omit<Backbone, 'jobs'>) {}
  attach(_server: Server): void {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  run(_lease: Lease, _job: JobMessage, _signal: AbortSignal): Promise<NodeResult> {
    return Promise.reject(new Error(`the node gateway is not built yet (${this.b.instanceId})`));
  }
}
