// `rty sim`: a network of simulated nodes against a running backbone. Creates N keys, binds them to an
// operator account through the Gate/Admin API (or skips that when they are bound already), then each node
// registers, heartbeats and serves jobs over the gateway WebSocket until SIGINT/SIGTERM.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { generatePrivateKey } from 'viem/accounts';
import type { Logger } from '../../platform/logger.js';
import { ENVIRONMENTS, isEnvironment, type Environment } from '../../config/vocabulary.js';
import { signNodeMessage } from '../../modules/network/index.js';
import { NodeAgent, type AgentBehaviour } from '../../agent/node-agent.js';
import { BuiltinRuntime, UpstreamRuntime, type NodeRuntime } from '../../agent/node-runtime.js';
import type { CliContext } from '../context.js';
import { intFlag, rateFlag } from '../flags.js';

export interface SimOptions {
  url: string;
  /** Where the Gate/Admin API is (default: `url`). */
  gateUrl?: string;
  nodes: number;
  models: string[];
  environment: Environment;
  capacity: number;
  region?: string;
  behaviour: AgentBehaviour;
  upstream?: string;
  /** A runtime of the caller's (a benchmark's instrumented one); wins over `upstream` and `tokenDelayMs`. */
  runtime?: NodeRuntime;
  /** Built-in runtime: ms per output token (each streamed as it is produced). */
  tokenDelayMs?: number;
  /** Admin token for creating the operator account (POST /admin/v1/accounts). */
  adminToken?: string;
  /** An existing operator account's token: no account is created. */
  accountToken?: string;
  /** The nodes are bound already (their keys are given). */
  skipBind: boolean;
  privateKeys?: Array<`0x${string}`>;
  heartbeatIntervalMs?: number;
}

export interface RunningSim {
  agents: NodeAgent[];
  stop(): Promise<void>;
}

async function postJson(
  url: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

/** Binds the agents' nodes to an operator account over the Gate API. */
async function bindAgents(opts: SimOptions, agents: NodeAgent[]): Promise<void> {
  let token = opts.accountToken;
  let accountId: string | undefined;
  if (!token) {
    if (!opts.adminToken) throw new Error('binding needs --admin-token or --account-token (or --skip-bind)');
    const r = await postJson(new URL('/admin/v1/accounts', opts.gateUrl ?? opts.url).href, opts.adminToken, {
      email: `sim-${Date.now().toString(36)}@rty.invalid`,
    });
    if (r.status !== 201) throw new Error(`account not created (${r.status}): ${JSON.stringify(r.json)}`);
    const body = r.json as { account: { id: string }; token: string };
    token = body.token;
    accountId = body.account.id;
  }
  for (const agent of agents) {
    const message = await signNodeMessage(agent.account, 'node.bind', {
      ...(accountId ? { accountId } : {}),
      environment: opts.environment,
      ...(opts.region ? { region: opts.region } : {}),
      gpuModel: 'sim-gpu',
      gpuMemoryMb: 24_576,
    });
    const r = await postJson(new URL('/gate/v1/nodes/bind', opts.gateUrl ?? opts.url).href, token, {
      message,
    });
    if (r.status !== 201)
      throw new Error(`node ${agent.address} not bound (${r.status}): ${JSON.stringify(r.json)}`);
    accountId ??= (r.json as { accountId?: string }).accountId;
  }
}

/** Starts the simulated nodes; resolves once every node is connected and heartbeating. */
export async function startSim(opts: SimOptions, log?: Logger): Promise<RunningSim> {
  const runtime =
    opts.runtime ??
    (opts.upstream
      ? new UpstreamRuntime(opts.upstream)
      : new BuiltinRuntime({ tokenDelayMs: opts.tokenDelayMs ?? 0 }));
  const agents = Array.from(
    { length: opts.nodes },
    (_, i) =>
      new NodeAgent({
        url: opts.url,
        ...(opts.privateKeys?.[i]
          ? { privateKey: opts.privateKeys[i] }
          : { privateKey: generatePrivateKey() }),
        environment: opts.environment,
        models: opts.models,
        capacity: opts.capacity,
        ...(opts.region ? { region: opts.region } : {}),
        runtime,
        behaviour: opts.behaviour,
        ...(opts.heartbeatIntervalMs ? { heartbeatIntervalMs: opts.heartbeatIntervalMs } : {}),
        ...(log ? { log } : {}),
      }),
  );
  const stop = async () => void (await Promise.allSettled(agents.map((a) => a.stop())));
  try {
    if (!opts.skipBind) await bindAgents(opts, agents);
    // A few at a time: each start is an HTTP register, a heartbeat and a WebSocket handshake.
    for (let i = 0; i < agents.length; i += 16)
      await Promise.all(agents.slice(i, i + 16).map((a) => a.start()));
  } catch (err) {
    await stop();
    throw err;
  }
  return { agents, stop };
}

export function simCounters(agents: NodeAgent[]): string {
  const sum = (k: keyof NodeAgent['counters']) => agents.reduce((n, a) => n + a.counters[k], 0);
  const connected = agents.filter((a) => a.connected).length;
  return `SIM connected=${connected}/${agents.length} jobs=${sum('jobs')} results=${sum('results')} errors=${sum('errors')} disconnects=${sum('disconnects')} slow=${sum('slow')} refused=${sum('refused')} reconnects=${sum('connects') - agents.length}`;
}

export interface SimCliOptions {
  url: string;
  gateUrl?: string;
  keysFile?: string;
  nodes: string;
  models: string;
  environment: string;
  capacity: string;
  region?: string;
  latencyMs: string;
  jitterMs: string;
  failureRate: string;
  disconnectRate: string;
  slowRate: string;
  upstream?: string;
  tokenDelayMs?: string;
  adminToken?: string;
  accountToken?: string;
  skipBind: boolean;
  reportMs: string;
}

export function parseSimOptions(o: SimCliOptions, defaultAdminToken: string): SimOptions {
  if (!isEnvironment(o.environment))
    throw new Error(`--environment must be one of ${ENVIRONMENTS.join(', ')}`);
  const behaviour: AgentBehaviour = {
    latencyMs: intFlag('latency-ms', o.latencyMs, 0),
    jitterMs: intFlag('jitter-ms', o.jitterMs, 0),
    failureRate: rateFlag('failure-rate', o.failureRate),
    disconnectRate: rateFlag('disconnect-rate', o.disconnectRate),
    slowRate: rateFlag('slow-rate', o.slowRate),
  };
  if (behaviour.failureRate + behaviour.disconnectRate + behaviour.slowRate > 1)
    throw new Error('--failure-rate + --disconnect-rate + --slow-rate must not exceed 1');
  return {
    url: o.url,
    ...(o.gateUrl ? { gateUrl: o.gateUrl } : {}),
    nodes: intFlag('nodes', o.nodes, 1),
    models: o.models
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean),
    environment: o.environment as Environment,
    capacity: intFlag('capacity', o.capacity, 1),
    ...(o.region ? { region: o.region } : {}),
    behaviour,
    ...(o.upstream ? { upstream: o.upstream } : {}),
    ...(o.tokenDelayMs ? { tokenDelayMs: intFlag('token-delay-ms', o.tokenDelayMs, 0) } : {}),
    adminToken: o.adminToken ?? defaultAdminToken,
    ...(o.accountToken ? { accountToken: o.accountToken } : {}),
    skipBind: o.skipBind,
  };
}

/** Node keys kept in a file (one 0x… key a line, mode 0600) so a later run can reuse bound nodes. */
export function loadOrCreateKeys(path: string, n: number): Array<`0x${string}`> {
  const keys = existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /^0x[0-9a-fA-F]{64}$/.test(l))
    : [];
  const created: string[] = [];
  while (keys.length < n) {
    const k = generatePrivateKey();
    keys.push(k);
    created.push(k);
  }
  if (created.length > 0) {
    if (keys.length === created.length) writeFileSync(path, '', { mode: 0o600 });
    appendFileSync(path, created.map((k) => `${k}\n`).join(''));
  }
  return keys.slice(0, n) as Array<`0x${string}`>;
}

export async function runSim(ctx: CliContext, o: SimCliOptions): Promise<number> {
  const opts = parseSimOptions(o, ctx.config.ADMIN_TOKEN);
  if (o.keysFile) opts.privateKeys = loadOrCreateKeys(o.keysFile, opts.nodes);
  const reportMs = intFlag('report-ms', o.reportMs, 100);
  const sim = await startSim(opts, ctx.log);
  ctx.out(`SIM READY nodes=${sim.agents.length}`);
  const timer = setInterval(() => ctx.out(simCounters(sim.agents)), reportMs);
  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  clearInterval(timer);
  await sim.stop();
  ctx.out(simCounters(sim.agents));
  ctx.out('SIM stopped');
  return 0;
}
