// The OpenAI-compatible Cloud API: models, chat completions, completions, embeddings (sync, polling, and chat
// as server-sent events), job status and cancellation. Every route authenticates a Bearer API key and every
// job read is scoped to the key's namespace.
import { createHash, randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DEFAULT_PRIORITY_CLASS } from '../../config/vocabulary.js';
import { rateLimitHeaders, type AuthenticatedKey } from '../../modules/accounts/index.js';
import { choicesAsked, jobIdForIdempotencyKey, type JobResult } from '../../modules/jobs/index.js';
import type { RequestKind } from '../../modules/routing/index.js';
import { AppError } from '../../platform/errors.js';
import type { Config } from '../../config/config.js';
import type { RateLimiter } from '../../modules/accounts/index.js';
import type { JobResults, JobStreams, JobsService } from '../../modules/jobs/index.js';
import type { PriceBook, QuotedPrice } from '../../modules/network/index.js';
import type { NodesModule } from '../../modules/nodes/index.js';
import { authenticateApiKey, type ApiKeyAuthDeps } from '../auth.js';
import type { AnswerShape, ResultStream, SubmitChat } from './cloud.answer.js';
import { responsesRoutes } from './responses.routes.js';
import {
  chatCompletionBody,
  completionBody,
  embeddingBody,
  jobParams,
  submitHeaders,
  type ChatCompletionBody,
  type SubmitHeaders,
} from './cloud.contracts.js';
import { errorOfResult, renderJob, renderResult } from './cloud.render.js';
import { findReplayedJob, replayedResult } from './cloud.replay.js';
import { ChunkStream } from './cloud.stream.js';

const security = [{ apiKey: [] }];

interface Submission {
  kind: RequestKind;
  model: string;
  body: Record<string, unknown>;
  /**
   * Output tokens the node may produce per choice (what it is told); the reservation adds the prompt at the
   * backbone's bound on it (promptTokenBound, computed by the job flow from the request).
   */
  maxOutputTokens: number;
  stream?: boolean;
  includeUsage?: boolean;
  encodingFormat?: 'float' | 'base64';
  /** Another API's shapes on the same job path (the Responses API): its stream and its answer. */
  shape?: AnswerShape;
}

/** A chat completion request as a submission: the reservation's input estimate and per-choice output budget. */
function chatSubmission(body: ChatCompletionBody, defaultMaxTokens: number): Submission {
  return {
    kind: 'chat',
    model: body.model,
    body,
    maxOutputTokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
  };
}

/** A model as listed, with its price in force on this environment (an extra field OpenAI clients ignore). */
function modelView(m: { model: string; onlineNodes: number; idleNodes: number }, price: QuotedPrice) {
  return {
    id: m.model,
    object: 'model',
    created: 0,
    owned_by: 'rty-network',
    online_nodes: m.onlineNodes,
    idle_nodes: m.idleNodes,
    pricing: {
      input_micro_per_1k_tokens: price.inputMicroPer1kTokens,
      output_micro_per_1k_tokens: price.outputMicroPer1kTokens,
      /** The network config version whose price table this is. */
      price_version: price.version,
    },
  };
}

/** What the Cloud API uses. */
export interface CloudDeps extends ApiKeyAuthDeps {
  config: Pick<
    Config,
    'CLOUD_DEFAULT_ENVIRONMENT' | 'JOB_DEFAULT_MAX_TOKENS' | 'JOB_DEFAULT_TTL_MS' | 'JOB_SYNC_TIMEOUT_MS'
  >;
  rateLimiter: Pick<RateLimiter, 'take'>;
  jobs: Pick<JobsService, 'submit' | 'cancel' | 'interrupt' | 'stopOnNode' | 'getJob' | 'getResult'>;
  results: Pick<JobResults, 'running' | 'wait' | 'expect'>;
  streams: JobStreams;
  nodes: { catalog: Pick<NodesModule['catalog'], 'catalog' | 'requireServed'> };
  prices: Pick<PriceBook, 'quote'>;
}

export function cloudRoutes(b: CloudDeps): FastifyPluginAsyncZod {
  return async (app) => {
    async function authorize(req: FastifyRequest, reply: FastifyReply): Promise<AuthenticatedKey> {
      const key = await authenticateApiKey(b, req);
      const decision = await b.rateLimiter.take({
        namespaceId: key.namespaceId,
        keyId: key.keyId,
        keyRatePerS: key.rateLimitPerS,
        keyBurst: key.burst,
      });
      reply.headers(rateLimitHeaders(decision));
      return key;
    }

    async function submit(req: FastifyRequest, reply: FastifyReply, s: Submission) {
      const key = await authorize(req, reply);
      const h = req.headers as SubmitHeaders;
      const environment = h['x-rty-environment'] ?? b.config.CLOUD_DEFAULT_ENVIRONMENT;
      // 404 model_not_found, or a retryable 503 catalog_recovering while rebuilt after a Redis loss.
      await b.nodes.catalog.requireServed(environment, s.model);
      const mode = s.stream ? 'sync' : (h['x-rty-mode'] ?? 'sync');
      if (mode === 'polling' && s.shape?.noPolling) throw new AppError('invalid_request', s.shape.noPolling);
      const idem = h['idempotency-key'];
      const jobId = idem ? jobIdForIdempotencyKey(key.namespaceId, idem) : randomUUID();
      // Streamed: listening starts before the job exists, so its first delta cannot be missed.
      const waitAc = new AbortController();
      let resetReason: string | undefined;
      const onReset = (reason: string) => ((resetReason = reason), waitAc.abort());
      // A client that leaves cancels its job when the policy says so (see submitHeaders): the wait ends now.
      const cancelOnLeave = (h['x-rty-on-disconnect'] ?? (s.stream ? 'cancel' : 'continue')) === 'cancel';
      let left: { delivered: number } | undefined;
      const onLeave = (delivered: number) => {
        if (!cancelOnLeave || left) return;
        left = { delivered };
        waitAc.abort();
      };
      const sse: ResultStream | undefined =
        s.stream && s.kind !== 'embedding'
          ? await (s.shape
              ? s.shape.openStream({ streams: b.streams, jobId, onReset, onDisconnect: onLeave })
              : ChunkStream.open(b.streams, {
                  jobId,
                  kind: s.kind,
                  model: s.model,
                  includeUsage: s.includeUsage === true,
                  onReset,
                  onDisconnect: onLeave,
                }))
          : undefined;
      if (!sse && mode === 'sync')
        reply.raw.on('close', () => {
          if (!reply.raw.writableEnded) onLeave(0);
        });
      // Announced before the submit: a node this process dispatches to may answer before the submit returns.
      const endExpect = mode === 'sync' ? b.results.expect(jobId) : undefined;
      try {
        return await run(sse);
      } catch (err) {
        if (!sse?.started) throw err;
        await sse.fail(err instanceof AppError ? err : new AppError('internal', 'the stream failed'));
        return reply;
      } finally {
        endExpect?.();
        await sse?.close();
      }

      async function run(sse: ResultStream | undefined) {
        const submitted = await b.jobs.submit({
          namespaceId: key.namespaceId,
          apiKeyId: key.keyId,
          model: s.model,
          environment,
          priority: h['x-rty-priority'] ?? DEFAULT_PRIORITY_CLASS,
          // n choices run on one node in one job: the hold covers n × the output budget, settled once.
          maxTokens: s.maxOutputTokens * choicesAsked({ body: s.body }),
          ttlMs: b.config.JOB_DEFAULT_TTL_MS,
          mode,
          request: { kind: s.kind, body: s.body, maxTokens: s.maxOutputTokens },
          jobId,
          ...(idem
            ? {
                // The key is bound to this body (and route): the same key with another body is a 409.
                requestHash: createHash('sha256')
                  .update(`${req.url}\n${JSON.stringify(req.body)}`)
                  .digest('hex'),
              }
            : {}),
        });
        reply.header('x-request-id', submitted.jobId);
        if (!submitted.created) reply.header('idempotent-replayed', 'true');
        if (mode === 'polling') {
          // A new job's state is known without a read; an idempotent replay shows the first job as it is now
          // (410 result_expired once its output is past retention).
          const found = submitted.created
            ? {
                row: {
                  id: submitted.jobId,
                  status: 'queued' as const,
                  model: s.model,
                  createdAt: submitted.createdAt,
                  attempts: 0,
                  cost: null,
                  maxCost: submitted.maxCost,
                  priceVersion: submitted.priceVersion,
                },
                result: undefined,
              }
            : await findReplayedJob(b.jobs, key.namespaceId, submitted.jobId);
          return reply
            .status(202)
            .header('location', `/v1/jobs/${submitted.jobId}`)
            .send(renderJob(found.row, found.result, s.encodingFormat));
        }
        sse?.start(reply, submitted.createdAt);
        // A replay of a finished job is answered from its stored result (Redis, or PostgreSQL when Redis lost
        // it) at once, and one whose output is past retention with 410 result_expired: never waited out.
        let result = submitted.created
          ? undefined
          : await replayedResult(b.jobs, key.namespaceId, submitted.jobId);
        result ??= await b.results.wait(submitted.jobId, b.config.JOB_SYNC_TIMEOUT_MS, waitAc.signal, {
          readFirst: !submitted.created,
        });
        if (!result && left) {
          // The client left: its job is stopped and charged for what reached it (nobody reads the answer). A
          // replay's client leaving leaves the first request's job alone.
          if (submitted.created)
            await b.jobs.interrupt(key.namespaceId, submitted.jobId, {
              reason: 'the client disconnected',
              delivered: left.delivered,
              known: { createdAt: submitted.createdAt, model: s.model, environment },
            });
          if (!sse) reply.hijack(); // nothing is sent on a closed connection
          return reply;
        }
        if (!result && resetReason !== undefined) {
          // The streamed attempt failed after the client saw part of it: that output is void, so the job is
          // cancelled and refunded (unless it already finished: then its result is what the client gets).
          await b.jobs.cancel(key.namespaceId, submitted.jobId, 'the streamed attempt failed', {
            createdAt: submitted.createdAt,
            model: s.model,
          });
          result = await b.jobs.getResult(key.namespaceId, submitted.jobId);
          if (result?.status !== 'succeeded')
            throw new AppError(
              'job_failed',
              `job ${submitted.jobId}: the node failed mid-stream (${resetReason ?? ''}); the job was cancelled and refunded`,
              { jobId: submitted.jobId },
            );
        }
        if (!result && !b.results.running)
          // This process is shutting down: the job goes on (another process may run it); never cancel it for that.
          throw new AppError(
            'store_unavailable',
            `the server is shutting down; job ${submitted.jobId} continues: poll /v1/jobs/${submitted.jobId}`,
            {
              jobId: submitted.jobId,
              headers: { location: `/v1/jobs/${submitted.jobId}`, 'retry-after': '1' },
            },
          );
        if (!result) {
          // Waited long enough: cancel and refund, unless the job finished in the meantime (whoever closed the
          // hold decided: a job that succeeded is answered with its result, never reported as refunded).
          const status = await b.jobs.cancel(key.namespaceId, submitted.jobId, 'the sync request timed out', {
            createdAt: submitted.createdAt,
            model: s.model,
          });
          // Refunded: the node, if one still runs it, stops instead of computing an answer nobody is charged for.
          if (status === 'cancelled') b.jobs.stopOnNode(submitted.jobId);
          result = await b.jobs.getResult(key.namespaceId, submitted.jobId);
          if (status === 'succeeded' && result?.status !== 'succeeded')
            throw new AppError(
              'store_unavailable',
              `job ${submitted.jobId} succeeded; its result is not readable right now: poll /v1/jobs/${submitted.jobId}`,
              {
                jobId: submitted.jobId,
                headers: { location: `/v1/jobs/${submitted.jobId}`, 'retry-after': '1' },
              },
            );
          if (!result || status === 'cancelled')
            throw new AppError(
              'timeout',
              `no result within ${b.config.JOB_SYNC_TIMEOUT_MS} ms; job ${submitted.jobId} was cancelled and refunded`,
              { jobId: submitted.jobId },
            );
        }
        // Cancelled while streaming (POST /v1/jobs/:id/cancel): the client still reading gets the end of what it
        // is charged for, with the usage.
        const cutShown = sse && result.status === 'cancelled' && result.output !== undefined;
        if (result.status !== 'succeeded' && !cutShown) throw errorOfResult(result);
        if (sse) {
          await sse.finish(result);
          return reply;
        }
        return respond(reply, result, s);
      }
    }

    function respond(
      reply: FastifyReply,
      result: JobResult,
      s: Pick<Submission, 'encodingFormat' | 'shape'>,
    ) {
      if (s.shape) return reply.send(s.shape.render(result));
      return reply.send(renderResult(result, s.encodingFormat ? { encodingFormat: s.encodingFormat } : {}));
    }

    const submitChat: SubmitChat = (req, reply, body, shape) =>
      submit(req, reply, { ...chatSubmission(body, b.config.JOB_DEFAULT_MAX_TOKENS), shape });
    // The Responses API: its own contracts and shapes, on this plugin's submission path.
    await app.register(responsesRoutes({ submitChat }));

    app.get(
      '/v1/models',
      {
        schema: {
          tags: ['cloud'],
          security,
          headers: submitHeaders.pick({ 'x-rty-environment': true }).loose(),
        },
      },
      async (req, reply) => {
        await authorize(req, reply);
        const env = (req.headers as SubmitHeaders)['x-rty-environment'] ?? b.config.CLOUD_DEFAULT_ENVIRONMENT;
        const served = (await b.nodes.catalog.catalog(env)).filter((m) => m.onlineNodes > 0);
        const data = await Promise.all(
          served.map(async (m) => modelView(m, await b.prices.quote(m.model, env, null))),
        );
        return { object: 'list', data };
      },
    );

    app.get(
      '/v1/models/:model',
      {
        schema: {
          tags: ['cloud'],
          security,
          params: z.object({ model: z.string().min(1).max(200) }),
          headers: submitHeaders.pick({ 'x-rty-environment': true }).loose(),
        },
      },
      async (req, reply) => {
        await authorize(req, reply);
        const env = (req.headers as SubmitHeaders)['x-rty-environment'] ?? b.config.CLOUD_DEFAULT_ENVIRONMENT;
        const found = (await b.nodes.catalog.catalog(env)).find(
          (m) => m.model === req.params.model && m.onlineNodes > 0,
        );
        if (!found)
          throw new AppError(
            'model_not_found',
            `The model '${req.params.model}' is not served on ${env}; GET /v1/models lists those that are`,
          );
        return modelView(found, await b.prices.quote(found.model, env, null));
      },
    );

    app.post(
      '/v1/chat/completions',
      { schema: { tags: ['cloud'], security, body: chatCompletionBody, headers: submitHeaders } },
      async (req, reply) => submit(req, reply, chatSubmission(req.body, b.config.JOB_DEFAULT_MAX_TOKENS)),
    );

    app.post(
      '/v1/completions',
      { schema: { tags: ['cloud'], security, body: completionBody, headers: submitHeaders } },
      async (req, reply) => {
        const body = req.body;
        return submit(req, reply, {
          kind: 'completion',
          model: body.model,
          body,
          maxOutputTokens: body.max_tokens ?? b.config.JOB_DEFAULT_MAX_TOKENS,
          stream: body.stream === true,
          includeUsage: body.stream_options?.include_usage === true,
        });
      },
    );

    app.post(
      '/v1/embeddings',
      { schema: { tags: ['cloud'], security, body: embeddingBody, headers: submitHeaders } },
      async (req, reply) => {
        const body = req.body;
        // The node always returns floats; the server encodes them as the client asked.
        const { encoding_format: _encoding, ...nodeBody } = body;
        return submit(req, reply, {
          kind: 'embedding',
          model: body.model,
          body: nodeBody,
          // An embedding produces no output tokens (billed 0): the reservation covers its input bound.
          maxOutputTokens: 1,
          encodingFormat: body.encoding_format ?? 'float',
        });
      },
    );

    app.get(
      '/v1/jobs/:id',
      {
        schema: {
          tags: ['cloud'],
          security,
          params: jobParams,
          querystring: z.object({ encoding_format: z.enum(['float', 'base64']).optional() }),
        },
      },
      async (req, reply) => {
        const key = await authorize(req, reply);
        const found = await b.jobs.getJob(key.namespaceId, req.params.id);
        // Another namespace's job is indistinguishable from a missing one.
        if (!found) throw new AppError('not_found', `no job ${req.params.id}`);
        if (found.resultExpired)
          throw new AppError(
            'result_expired',
            `job ${req.params.id} succeeded but its output is past this namespace's retention period and was deleted`,
          );
        return renderJob(found.row, found.result, req.query.encoding_format);
      },
    );

    app.post(
      '/v1/jobs/:id/cancel',
      { schema: { tags: ['cloud'], security, params: jobParams } },
      async (req, reply) => {
        const key = await authorize(req, reply);
        // Stopped on its node if it runs (charged for its prompt and the output it produced, which is its
        // result), refunded in full if no node took it yet.
        await b.jobs.interrupt(key.namespaceId, req.params.id, { reason: 'cancelled by the client' });
        const found = await b.jobs.getJob(key.namespaceId, req.params.id);
        if (!found) throw new AppError('not_found', `no job ${req.params.id}`);
        return renderJob(found.row, found.result);
      },
    );
  };
}
