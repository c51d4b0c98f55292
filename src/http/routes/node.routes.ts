// Node HTTP routes (io role): register, heartbeat, config sync. Every body is a signed node message
// (EIP-191 over canonical JSON with ts + nonce); bad signatures, stale timestamps and replayed nonces get
// 401 naming the reason, nodes not bound to an account get 403 node_not_registered.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { addressSchema, environmentSchema } from '../../config/vocabulary.js';
import { heartbeatSchema } from '../../modules/nodes/index.js';
import type { SignedNodeMessage } from '../../modules/network/index.js';
import type { RegisteredNode } from '../../modules/nodes/index.js';
import { AppError, isAppError } from '../../platform/errors.js';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../platform/metrics.js';
import type { NodesModule } from '../../modules/nodes/index.js';
import {
  authenticateNodeMessage,
  rejectReasonOf,
  type NetworkConfigService,
  type NodeAuthDeps,
  type NonceStore,
} from '../../modules/network/index.js';
import { NODE_WS_PATH } from '../../modules/network/index.js';

/** The envelope as sent. Its `body` is not transformed here: the signature covers it byte for byte. */
function signedMessage(type: string, body: z.ZodType) {
  return z.object({
    v: z.literal(1),
    type: z.literal(type),
    node: addressSchema,
    ts: z.number().int().describe('node clock, ms; within NODE_MESSAGE_MAX_SKEW_MS of the server'),
    nonce: z.string().describe('16–64 of [A-Za-z0-9_-]; never reused'),
    body,
    sig: z.string().describe('EIP-191 signature of "rty-node-message:" + canonical JSON of the rest'),
  });
}

// Loose objects: a field a newer agent adds is kept (the signature covers it) rather than stripped into a
// confusing bad_signature.
export const registerBodySchema = z.looseObject({
  environment: environmentSchema,
  region: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,31}$/)
    .optional(),
  gpuModel: z.string().min(1).max(128).optional(),
  gpuMemoryMb: z.number().int().min(0).optional(),
});
export const configBodySchema = z.looseObject({ digest: z.string().max(128).optional() });

const configVersion = z.object({
  version: z.number().int(),
  digest: z.string(),
  body: z.record(z.string(), z.unknown()),
  signature: z.string(),
});

const tags = ['nodes'];

/** What the node HTTP routes ask of the node gateway (one method: is the node's socket on this process). */
export interface NodeConnections {
  isConnectedHere(address: string): boolean;
}

/** What the node HTTP routes use. */
export interface NodeRouteDeps extends NodeAuthDeps {
  config: NodeAuthDeps['config'] & Pick<Config, 'HEARTBEAT_INTERVAL_MS' | 'HEARTBEAT_TTL_MS'>;
  metrics: Pick<Metrics, 'nodeMessagesRejected'>;
  networkConfig: Pick<NetworkConfigService, 'latest' | 'networkAddress'>;
  nodes: NodeAuthDeps['nodes'] & {
    admin: Pick<NodesModule['admin'], 'registerNode'>;
    presence: Pick<NodesModule['presence'], 'ingest'>;
  };
  /** Node message nonces, shared with the gateway (a message replayed on the other path is refused). */
  nonces: NonceStore;
}

export function nodeRoutes(b: NodeRouteDeps, gateway: NodeConnections): FastifyPluginAsyncZod {
  const nonces = b.nonces;

  /** Verifies the message and the binding; refusals are counted and rendered with their reason. */
  async function authenticate(
    raw: unknown,
    type: string,
  ): Promise<{ message: SignedNodeMessage; node: RegisteredNode }> {
    try {
      return await authenticateNodeMessage(b, nonces, raw, type);
    } catch (err) {
      const reason = rejectReasonOf(err);
      b.metrics.nodeMessagesRejected.inc({ reason });
      if (isAppError(err, 'unauthorized'))
        throw new AppError('unauthorized', `${reason}: ${err.message}`, { reason });
      throw err;
    }
  }

  function parseBody<T>(schema: z.ZodType<T>, m: SignedNodeMessage): T {
    const r = schema.safeParse(m.body);
    if (!r.success)
      throw new AppError(
        'invalid_request',
        `${m.type} body: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    return r.data;
  }

  return async (app) => {
    app.post(
      '/v1/nodes/register',
      {
        schema: {
          tags,
          summary: 'Update a bound node’s hardware info; returns heartbeat interval and network identity',
          body: signedMessage('node.register', registerBodySchema),
          response: {
            200: z.object({
              address: z.string(),
              accountId: z.string(),
              environment: environmentSchema,
              heartbeatIntervalMs: z.number().int(),
              heartbeatTtlMs: z.number().int(),
              networkAddress: z.string(),
              configVersion: z.number().int().nullable(),
              configDigest: z.string().nullable(),
              wsPath: z.string(),
              connectedHere: z.boolean(),
            }),
          },
        },
      },
      async (req) => {
        const { message, node } = await authenticate(req.body, 'node.register');
        const body = parseBody(registerBodySchema, message);
        if (body.environment !== node.environment)
          throw new AppError('invalid_request', `node ${node.address} is bound on ${node.environment}`);
        await b.nodes.admin.registerNode({
          address: node.address,
          environment: node.environment,
          ...(body.region ? { region: body.region } : {}),
          ...(body.gpuModel ? { gpuModel: body.gpuModel } : {}),
          ...(body.gpuMemoryMb !== undefined ? { gpuMemoryMb: body.gpuMemoryMb } : {}),
        });
        const latest = await b.networkConfig.latest();
        return {
          address: node.address,
          accountId: node.accountId!,
          environment: node.environment,
          heartbeatIntervalMs: b.config.HEARTBEAT_INTERVAL_MS,
          heartbeatTtlMs: b.config.HEARTBEAT_TTL_MS,
          networkAddress: b.networkConfig.networkAddress,
          configVersion: latest?.version ?? null,
          configDigest: latest?.digest ?? null,
          wsPath: NODE_WS_PATH,
          connectedHere: gateway.isConnectedHere(node.address),
        };
      },
    );

    app.post(
      '/v1/nodes/heartbeat',
      {
        schema: {
          tags,
          summary: 'Signed node status (versions, GPU, models, capacity, load, health)',
          body: signedMessage(
            'node.heartbeat',
            z.record(z.string(), z.unknown()).describe('the heartbeat object (version 1); address = signer'),
          ),
          response: {
            200: z.object({
              accepted: z.boolean(),
              eligible: z.boolean(),
              heartbeatIntervalMs: z.number().int(),
              configDigest: z.string().nullable(),
            }),
          },
        },
      },
      async (req) => {
        const { message } = await authenticate(req.body, 'node.heartbeat');
        const hb = parseBody(heartbeatSchema, message);
        if (hb.address !== message.node)
          throw new AppError('invalid_request', 'the heartbeat address must be the signer');
        const r = await b.nodes.presence.ingest(hb);
        const latest = await b.networkConfig.latest();
        return {
          accepted: r.kind === 'ok',
          eligible: r.kind === 'ok' && r.eligible,
          heartbeatIntervalMs: b.config.HEARTBEAT_INTERVAL_MS,
          configDigest: latest?.digest ?? null,
        };
      },
    );

    app.post(
      '/v1/nodes/config',
      {
        schema: {
          tags,
          summary: 'Config sync: up to date, or the latest network-signed version',
          body: signedMessage('node.config', configBodySchema),
          response: {
            200: z.union([
              z.object({ upToDate: z.literal(true), version: z.number().int().nullable() }),
              z.object({ upToDate: z.literal(false), config: configVersion }),
            ]),
          },
        },
      },
      async (req) => {
        const { message } = await authenticate(req.body, 'node.config');
        const body = parseBody(configBodySchema, message);
        const latest = await b.networkConfig.latest();
        if (!latest || latest.digest === body.digest)
          return { upToDate: true as const, version: latest?.version ?? null };
        return {
          upToDate: false as const,
          config: {
            version: latest.version,
            digest: latest.digest,
            body: latest.body,
            signature: latest.signature,
          },
        };
      },
    );
  };
}
