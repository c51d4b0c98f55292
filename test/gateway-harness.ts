// Node gateway test fixtures: node agents bound to an operator account on a running backbone, a funded
// namespace, job submission and bounded waits for a job's terminal state.
import { randomUUID } from 'node:crypto';
import type { Backbone } from '../src/app/compose.js';
import type { Environment } from '../src/config/vocabulary.js';
import type { JobMessage } from '../src/modules/routing/index.js';
import type { RunningServer } from '../src/app/serve.js';
import type { TerminalStatus } from '../src/modules/jobs/index.js';
import { NodeAgent, type NodeAgentOptions } from '../src/agent/node-agent.js';
import { BuiltinRuntime } from '../src/agent/node-runtime.js';
import { uniqueName } from './harness.js';
import { waitFor } from './routing-fixtures.js';

export const MODEL = 'llama3-8b';

/** Test config: quick retries, no cooldown pauses from a single failure, no lease expiry during a test. */
export const gatewayOverrides = {
  ROUTING_RETRY_DELAYS_MS: '50,100,200',
  ROUTING_MAX_ATTEMPTS: 4,
  NODE_COOLDOWN_PENALTY: 1_000_000,
  JOB_ATTEMPT_TIMEOUT_MS: 30_000,
} as const;

export function newAgent(server: RunningServer, over: Partial<NodeAgentOptions> = {}): NodeAgent {
  return new NodeAgent({
    url: server.url,
    environment: 'testnet',
    models: [MODEL],
    capacity: 4,
    region: 'eu',
    runtime: new BuiltinRuntime(),
    heartbeatIntervalMs: 1_000,
    reconnectDelayMs: 100,
    ...over,
  });
}

/** Binds nodes to a new operator account straight in the registry (the Gate API does it over HTTP). */
export async function bindNodes(
  b: Backbone,
  addresses: string[],
  environment: Environment = 'testnet',
): Promise<string> {
  const account = await b.accounts.createAccount({ email: `${uniqueName('op')}@example.test` });
  for (const address of addresses)
    await b.nodes.admin.registerNode({ address, environment, accountId: account.id });
  return account.id;
}

/** Binds the agents' nodes to a new operator account, then starts them (register, heartbeat, socket). */
export async function startBoundAgents(b: Backbone, agents: NodeAgent[]): Promise<void> {
  await bindNodes(
    b,
    agents.map((a) => a.address),
  );
  await Promise.all(agents.map((a) => a.start()));
}

/** A namespace with 100 credits. */
export async function fundedNamespace(b: Backbone): Promise<string> {
  const account = await b.accounts.createAccount({ email: `${uniqueName('c')}@example.test` });
  const ns = await b.accounts.createNamespace({ accountId: account.id, name: 'main' });
  await b.ledger.topUp(ns.id, 100_000_000n, uniqueName('seed'));
  return ns.id;
}

export async function submitChat(
  b: Backbone,
  namespaceId: string,
  prompt = 'the quick brown fox',
): Promise<string> {
  const { jobId } = await b.jobs.submit({
    namespaceId,
    model: MODEL,
    environment: 'testnet',
    priority: 'urgent',
    maxTokens: 16,
    ttlMs: 120_000,
    request: { kind: 'chat', body: { messages: [{ role: 'user', content: prompt }] }, maxTokens: 16 },
  });
  return jobId;
}

/** Waits (bounded) until the job row is terminal; returns its status. */
export async function waitTerminal(
  b: Backbone,
  namespaceId: string,
  jobId: string,
  timeoutMs = 60_000,
): Promise<TerminalStatus> {
  let status = '';
  await waitFor(
    `job ${jobId} terminal`,
    async () => {
      status = (await b.jobs.getJob(namespaceId, jobId))?.row.status ?? '';
      return ['succeeded', 'failed', 'expired', 'cancelled'].includes(status);
    },
    timeoutMs,
  );
  return status as TerminalStatus;
}

export async function settleCount(b: Backbone, jobId: string): Promise<number> {
  const r = await b.pool.query<{ n: string }>(
    `select count(*) as n from ledger_entries where kind = 'settle' and job_id = $1`,
    [jobId],
  );
  return Number(r.rows[0]!.n);
}

/** A job message as the dispatcher hands it to the gateway (for calling `gateway.run` directly). */
export function jobMessage(prompt = 'relay me please'): JobMessage {
  return {
    v: 1,
    jobId: randomUUID(),
    namespaceId: randomUUID(),
    model: MODEL,
    environment: 'testnet',
    priority: 'urgent',
    subcloud: null,
    attempt: 0,
    excludedNodeIds: [],
    failures: [],
    enqueuedAt: new Date().toISOString(),
    ttlMs: 60_000,
    request: { kind: 'completion', body: { prompt }, maxTokens: 8 },
  };
}
