// The demo's consumer traffic, sent with the official `openai` client: sync chat and completions on two
// models, embeddings, polling-mode chat (status polled until terminal), and one Idempotency-Key replay.
import OpenAI from 'openai';

export interface TrafficOutcome {
  kind: 'chat' | 'completion' | 'embedding' | 'poll' | 'replay';
  ok: boolean;
  status: number;
  jobId?: string;
  latencyMs: number;
  error?: string;
}

export interface TrafficOptions {
  baseUrl: string;
  apiKey: string;
  models: string[];
  embeddingModel: string;
  requests: number;
  concurrency: number;
  onProgress?: (done: number, outcomes: TrafficOutcome[]) => void;
}

type Job = { id: string; status: string };

async function pollUntilTerminal(client: OpenAI, id: string, deadlineMs: number): Promise<Job> {
  for (;;) {
    const job = await client.get<Job>(`/jobs/${id}`);
    if (!['queued', 'dispatched'].includes(job.status) || Date.now() > deadlineMs) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function one(client: OpenAI, o: TrafficOptions, i: number): Promise<TrafficOutcome> {
  const model = o.models[i % o.models.length]!;
  const t0 = performance.now();
  const kinds = ['chat', 'chat', 'completion', 'embedding', 'poll'] as const;
  const kind = kinds[i % kinds.length]!;
  const done = (x: Omit<TrafficOutcome, 'latencyMs' | 'kind'>): TrafficOutcome => ({
    kind,
    latencyMs: performance.now() - t0,
    ...x,
  });
  try {
    switch (kind) {
      case 'chat': {
        const { data, response } = await client.chat.completions
          .create({
            model,
            messages: [{ role: 'user', content: `Request ${i}: say hello to the network.` }],
            max_tokens: 32,
          })
          .withResponse();
        return done({
          ok: (data.choices[0]?.message.content ?? '').length > 0,
          status: response.status,
          jobId: response.headers.get('x-request-id') ?? undefined,
        });
      }
      case 'completion': {
        const { data, response } = await client.completions
          .create({ model, prompt: `Request ${i}: the quick brown fox`, max_tokens: 16 })
          .withResponse();
        return done({
          ok: (data.choices[0]?.text ?? '').length > 0,
          status: response.status,
          jobId: response.headers.get('x-request-id') ?? undefined,
        });
      }
      case 'embedding': {
        const { data, response } = await client.embeddings
          .create({ model: o.embeddingModel, input: [`sentence ${i}`, 'another sentence'] })
          .withResponse();
        return done({
          ok: data.data.length === 2,
          status: response.status,
          jobId: response.headers.get('x-request-id') ?? undefined,
        });
      }
      case 'poll': {
        const { data, response } = await client.chat.completions
          .create(
            {
              model,
              messages: [{ role: 'user', content: `Request ${i}, in polling mode.` }],
              max_tokens: 32,
            },
            { headers: { 'x-rty-mode': 'polling' } },
          )
          .withResponse();
        const id = (data as unknown as Job).id;
        const job = await pollUntilTerminal(client, id, Date.now() + 120_000);
        return done({ ok: job.status === 'succeeded', status: response.status, jobId: id });
      }
    }
  } catch (err) {
    const status = err instanceof OpenAI.APIError ? (err.status ?? 0) : 0;
    return done({ ok: false, status, error: err instanceof Error ? err.message : String(err) });
  }
}

/** Sends `requests` requests with `concurrency` in flight, plus one idempotent replay at the end. */
export async function driveTraffic(o: TrafficOptions): Promise<TrafficOutcome[]> {
  const client = new OpenAI({
    baseURL: `${o.baseUrl}/v1`,
    apiKey: o.apiKey,
    maxRetries: 0,
    timeout: 180_000,
  });
  const outcomes: TrafficOutcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < o.requests) {
        const i = next++;
        outcomes.push(await one(client, o, i));
        o.onProgress?.(outcomes.length, outcomes);
      }
    }),
  );
  // A client retry with the same Idempotency-Key gets the first job back, and nothing new is charged.
  const body = {
    model: o.models[0]!,
    messages: [{ role: 'user' as const, content: 'Retried request.' }],
    max_tokens: 8,
  };
  const headers = { headers: { 'idempotency-key': `demo-replay-${Date.now()}` } };
  const t0 = performance.now();
  try {
    const first = await client.chat.completions.create(body, headers).withResponse();
    const again = await client.chat.completions.create(body, headers).withResponse();
    const a = first.response.headers.get('x-request-id');
    const b = again.response.headers.get('x-request-id');
    outcomes.push({
      kind: 'replay',
      ok: a !== null && a === b && again.response.headers.get('idempotent-replayed') === 'true',
      status: again.response.status,
      latencyMs: performance.now() - t0,
      ...(a ? { jobId: a } : {}),
    });
  } catch (err) {
    outcomes.push({
      kind: 'replay',
      ok: false,
      status: err instanceof OpenAI.APIError ? (err.status ?? 0) : 0,
      latencyMs: performance.now() - t0,
      error: err instanceof Error ? err.message : String(err),
    });
  }
  return outcomes;
}
