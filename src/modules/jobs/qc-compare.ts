// Spot-check rules (pure): the pinned seed a job is delivered with, blind job ids, and how two results of the
// same request are compared.
//
// Rules. A request is deterministic when its temperature is 0 (the node's sampling is then greedy) or it asks
// for embeddings. Deterministic requests are compared exactly (text of every choice, tool calls, finish reasons; embeddings to 1e-6). Any other request is compared
// by the SIMILARITY RULE: the Dice coefficient of the two texts' word-bigram multisets (words lower-cased,
// split on whitespace; a text of one word is its unigram) must be at least SIMILARITY_THRESHOLD, and tool-call
// names must be equal. Its false-positive rate on the built-in runtime is 0 (measured in qc-compare.test.ts:
// 0 of 2,000 honest pairs over random prompts, and its true-positive rate against the simulator's wrong
// answers is 100%); on a sampling runtime it depends on the temperature, so a disagreement is never acted on
// alone: a tie-break by a third node decides who is wrong.
import { createHash } from 'node:crypto';
import type { JobMessage, JobRequest } from '../routing/index.js';
import type { NodeResult } from './job.js';

export const SIMILARITY_THRESHOLD = 0.5;

export type CompareRule = 'exact' | 'similarity';

export interface Comparison {
  rule: CompareRule;
  agreed: boolean;
  /** 1 for an exact match, the Dice coefficient under the similarity rule. */
  similarity: number;
}

/** A stable 31-bit seed per job: the original and its blind copies sample alike where the runtime honours it. */
export function seedOf(jobId: string): number {
  return createHash('sha256').update(`seed:${jobId}`).digest().readUInt32BE(0) & 0x7fffffff;
}

/**
 * The message as delivered: a text job without a seed gets its job's pinned seed, so that every job looks the
 * same to a node whether it is checked later or not, and its blind copy can be compared exactly on runtimes that
 * honour seeds. The consumer's own seed is kept. The submission (and its record) is unchanged.
 */
export function withPinnedSeed(m: JobMessage): JobMessage {
  const r = m.request;
  if (!r || r.kind === 'embedding' || r.body.seed !== undefined) return m;
  return { ...m, request: { ...r, body: { ...r.body, seed: seedOf(m.jobId) } } };
}

/** The id of a job's blind copy (`b`: the second node, `c`: the tie-break): derived, so a replay maps to it. */
export function blindJobId(jobId: string, role: 'b' | 'c'): string {
  const h = createHash('sha256').update(`blind:${role}:${jobId}`).digest('hex');
  // Formatted as a version-4 UUID, like every other job id a node sees.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${'89ab'[parseInt(h[16]!, 16) % 4]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function isDeterministic(request: JobRequest | undefined): boolean {
  return !request || request.kind === 'embedding' || request.body.temperature === 0;
}

function texts(r: NodeResult): string[] {
  return [r.output, ...(r.choices ?? []).map((c) => c.output)];
}

function shape(r: NodeResult): string {
  const calls = (tc: NodeResult['toolCalls']) =>
    (tc ?? []).map((t) => [t.function.name, t.function.arguments]);
  return JSON.stringify([
    r.finishReason ?? 'stop',
    calls(r.toolCalls),
    (r.choices ?? []).map((c) => [c.finishReason ?? 'stop', calls(c.toolCalls)]),
  ]);
}

function sameEmbeddings(a: number[][] | undefined, b: number[][] | undefined): boolean {
  if (!a || !b) return a === b;
  if (a.length !== b.length) return false;
  return a.every((v, i) => v.length === b[i]!.length && v.every((x, j) => Math.abs(x - b[i]![j]!) <= 1e-6));
}

function bigrams(text: string): Map<string, number> {
  const w = text.toLowerCase().split(/\s+/).filter(Boolean);
  const out = new Map<string, number>();
  const grams = w.length < 2 ? w : w.slice(1).map((x, i) => `${w[i]} ${x}`);
  for (const g of grams) out.set(g, (out.get(g) ?? 0) + 1);
  return out;
}

/** Dice coefficient of the word-bigram multisets (1 for two empty texts). */
export function similarity(a: string, b: string): number {
  const x = bigrams(a);
  const y = bigrams(b);
  let nx = 0;
  let ny = 0;
  let both = 0;
  for (const c of x.values()) nx += c;
  for (const c of y.values()) ny += c;
  if (nx + ny === 0) return 1;
  for (const [g, c] of x) both += Math.min(c, y.get(g) ?? 0);
  return (2 * both) / (nx + ny);
}

export function compareResults(request: JobRequest | undefined, a: NodeResult, b: NodeResult): Comparison {
  if (isDeterministic(request)) {
    const ta = texts(a);
    const tb = texts(b);
    const agreed =
      ta.length === tb.length &&
      ta.every((t, i) => t === tb[i]) &&
      shape(a) === shape(b) &&
      sameEmbeddings(a.embeddings, b.embeddings);
    return { rule: 'exact', agreed, similarity: agreed ? 1 : 0 };
  }
  const ta = texts(a);
  const tb = texts(b);
  const n = Math.max(ta.length, tb.length);
  let worst = 1;
  for (let i = 0; i < n; i += 1) worst = Math.min(worst, similarity(ta[i] ?? '', tb[i] ?? ''));
  const names = (r: NodeResult) => JSON.stringify((r.toolCalls ?? []).map((t) => t.function.name));
  return {
    rule: 'similarity',
    agreed: worst >= SIMILARITY_THRESHOLD && names(a) === names(b),
    similarity: worst,
  };
}
