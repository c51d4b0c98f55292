// Measured reputation rules without I/O: the prior, what raises and lowers a score, the validity checks, decay
// with its half-lives, and the probation share of job ids.
import { describe, expect, it } from 'vitest';
import {
  addObservation,
  decaySums,
  emptySums,
  failedCheckOf,
  isProbationJob,
  observationOf,
  partsOf,
  PRIOR_SCORE,
  REPUTATION_HALF_LIFE_MS,
  scoreOf,
  type Observation,
} from './reputation.js';

const scoreAfter = (obs: Observation[]) => {
  const s = emptySums();
  obs.forEach((o) => addObservation(s, o));
  return scoreOf(partsOf(s));
};
const times = (n: number, o: Observation) => Array.from({ length: n }, () => o);
const ok = (latencyMs: number, tokensOut = 16): Observation => ({
  kind: 'ok',
  latencyMs,
  tokensOut,
  valid: true,
});

describe('reputation score', () => {
  it('starts a new node at the stated prior', () => {
    expect(PRIOR_SCORE).toBe(6769);
    expect(scoreAfter([])).toBe(PRIOR_SCORE);
  });

  it('ranks a fast node above a slow one, and both above a failing one, after a few jobs', () => {
    const fast = scoreAfter(times(10, ok(20)));
    const slow = scoreAfter(times(10, ok(400)));
    const failing = scoreAfter([...times(5, ok(20)), ...times(5, { kind: 'failed', failure: 'timeout' })]);
    expect(fast).toBeGreaterThan(slow);
    expect(slow).toBeGreaterThan(failing);
    expect(fast).toBeGreaterThan(PRIOR_SCORE);
    expect(failing).toBeLessThan(PRIOR_SCORE);
  });

  it('costs more for invalid results than for slowness', () => {
    const invalid = scoreAfter(times(10, { kind: 'ok', latencyMs: 20, tokensOut: 16, valid: false }));
    expect(invalid).toBeLessThan(scoreAfter(times(10, ok(400))));
  });

  it('decays every family by its half-life; averages keep their ratio, the prior regains weight', () => {
    const s = emptySums();
    times(8, ok(100)).forEach((o) => addObservation(s, o));
    const d = decaySums(s, REPUTATION_HALF_LIFE_MS.speed);
    expect(d.latencyN).toBeCloseTo(4);
    expect(d.ok).toBeCloseTo(
      8 * Math.pow(0.5, REPUTATION_HALF_LIFE_MS.speed / REPUTATION_HALF_LIFE_MS.outcomes),
    );
    expect(d.latencySumMs / d.latencyN).toBeCloseTo(100);
    expect(partsOf(d).latencyMs).toBeGreaterThan(partsOf(s).latencyMs);
  });
});

describe('validity checks', () => {
  const req = (maxTokens: number, body: Record<string, unknown> = {}) => ({ maxTokens, body });
  it('accepts a consistent result', () => {
    expect(failedCheckOf(req(16), { tokensOut: 16, output: 'x', finishReason: 'length' })).toBeUndefined();
    expect(failedCheckOf(req(16), { tokensOut: 3, output: 'x', finishReason: 'stop' })).toBeUndefined();
  });
  it('names the failed check', () => {
    expect(failedCheckOf(req(16), { tokensOut: 17, output: 'x' })).toBe('tokens_over_max_tokens');
    expect(failedCheckOf(req(16), { tokensOut: 3, output: 'x', finishReason: 'length' })).toBe(
      'finish_reason_length',
    );
    expect(
      failedCheckOf(req(16), {
        tokensOut: 3,
        output: '',
        finishReason: 'tool_calls',
        toolCalls: [{ function: { arguments: '{"a":' } }],
      }),
    ).toBe('tool_call_arguments_json');
    expect(failedCheckOf(req(16), { tokensOut: 3, output: '', finishReason: 'tool_calls' })).toBe(
      'finish_reason_tool_calls',
    );
    expect(
      failedCheckOf(req(16, { response_format: { type: 'json_object' } }), {
        tokensOut: 3,
        output: 'not json',
      }),
    ).toBe('response_format_json');
    expect(
      failedCheckOf(req(16, { response_format: { type: 'json_object' } }), {
        tokensOut: 3,
        output: '{"a":1}',
      }),
    ).toBeUndefined();
  });
  it('maps attempts to observations: only node-caused failures count', () => {
    expect(observationOf({ cause: 'node_timeout' })).toEqual({ kind: 'failed', failure: 'timeout' });
    expect(observationOf({ cause: 'node_disconnect' })).toEqual({ kind: 'failed', failure: 'disconnect' });
    expect(observationOf({ cause: 'store_error' })).toBeUndefined();
    expect(observationOf({ cause: 'backbone_shutdown' })).toBeUndefined();
    expect(
      observationOf({ result: { tokensOut: 20, output: 'x' }, latencyMs: 5, request: req(16) }),
    ).toMatchObject({ kind: 'ok', valid: false });
  });
});

describe('probation share', () => {
  it('puts about the stated share of job ids in it, the same way every time', () => {
    const ids = Array.from(
      { length: 20_000 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    const share = ids.filter((id) => isProbationJob(id, 10)).length / ids.length;
    expect(share).toBeGreaterThan(0.09);
    expect(share).toBeLessThan(0.11);
    expect(ids.filter((id) => isProbationJob(id, 0))).toEqual([]);
    expect(isProbationJob(ids[7]!, 10)).toBe(isProbationJob(ids[7]!, 10));
  });
});
