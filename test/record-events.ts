// Builders of job events (contract version 1) for records tests and the records benchmark.
import { randomUUID } from 'node:crypto';
import type { RecordEventInput } from '../src/modules/records/index.js';

export interface JobEventOptions {
  namespaceId: string;
  jobId?: string;
  at: Date;
  model?: string;
  apiKeyId?: string | null;
  status?: 'succeeded' | 'failed';
  latencyMs?: number;
  tokensIn?: number;
  tokensOut?: number;
  costMicro?: number;
  fallbacks?: number;
  prompt?: string;
  params?: Record<string, unknown>;
  logs?: number;
}

const node = (i: number) => `0x${i.toString(16).padStart(40, '0')}`;

/** The events of one job in their natural order: submitted, fallbacks, assigned, logs, finished. */
export function jobEvents(o: JobEventOptions): RecordEventInput[] {
  const jobId = o.jobId ?? randomUUID();
  const model = o.model ?? 'llama-3-8b';
  const base = { version: 1 as const, namespaceId: o.namespaceId, jobId, model };
  const t = (ms: number) => new Date(o.at.getTime() + ms).toISOString();
  const events: RecordEventInput[] = [
    {
      ...base,
      at: t(0),
      type: 'job.submitted',
      apiKeyId: o.apiKeyId ?? null,
      priority: 'bulk',
      input: {
        messages: [{ role: 'user', content: o.prompt ?? 'Say hello' }],
        params: o.params ?? { temperature: 0.2 },
      },
    },
  ];
  const fallbacks = o.fallbacks ?? 0;
  for (let a = 1; a <= fallbacks; a += 1) {
    events.push({
      ...base,
      at: t(a),
      type: 'job.fallback',
      attempt: a,
      nodeAddress: node(a),
      reason: 'timeout',
    });
  }
  events.push({
    ...base,
    at: t(fallbacks + 1),
    type: 'job.assigned',
    attempt: fallbacks + 1,
    nodeAddress: node(99),
  });
  for (let l = 0; l < (o.logs ?? 0); l += 1) {
    events.push({
      ...base,
      at: t(fallbacks + 2),
      type: 'log',
      eventId: `exec-${l}`,
      logType: 'execution',
      level: 'info',
      message: `step ${l}`,
    });
  }
  const status = o.status ?? 'succeeded';
  events.push({
    ...base,
    at: t(fallbacks + 3),
    type: 'job.finished',
    status,
    nodeAddress: node(99),
    assignedAt: t(fallbacks + 1),
    attempts: fallbacks + 1,
    output:
      status === 'succeeded'
        ? { text: 'Hello!', tokensIn: o.tokensIn ?? 5, tokensOut: o.tokensOut ?? 3, finishReason: 'stop' }
        : null,
    error: status === 'succeeded' ? null : 'node disconnected',
    metrics: {
      queueMs: 3,
      executionMs: 40,
      latencyMs: o.latencyMs ?? 50,
      retries: fallbacks,
      gpu: { util: 0.7 },
    },
    costMicro: String(o.costMicro ?? 1200),
  });
  return events;
}
