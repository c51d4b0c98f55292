// Pure routing rules, the fair scheduler, the contracts and topology naming (no I/O).
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/config.js';
import { routingOptionsFromConfig } from './routing.service.js';
import {
  laneQueueName,
  laneTopology,
  routingClassName,
  recordsTopology,
  staticTopology,
  topologyNames,
  EXCHANGES,
} from '../../stores/rabbitmq/topology.js';
import { FairScheduler } from './fair-scheduler.js';
import { decodeJob, encodeJob, jobEventSchema, type JobMessage } from './routing.contracts.js';
import {
  decideFailure,
  isExpired,
  laneKeyOf,
  parseRetryDelays,
  remainingTtlMs,
  replayedJob,
} from './routing.rules.js';

const job: JobMessage = {
  v: 1,
  jobId: '00000000-0000-4000-8000-000000000001',
  namespaceId: '00000000-0000-4000-8000-0000000000aa',
  model: 'meta-llama/Llama-3.1-8B',
  environment: 'mainnet',
  priority: 'urgent',
  subcloud: null,
  attempt: 0,
  excludedNodeIds: [],
  failures: [],
  enqueuedAt: '2026-01-01T00:00:00.000Z',
  ttlMs: 60_000,
};
const policy = { maxAttempts: 3, retryDelaysMs: [1000, 5000, 30000] };
const t = (ms: number) => new Date(Date.parse(job.enqueuedAt) + ms);

describe('failure decisions', () => {
  it('backs off through increasing tiers, excluding failed nodes, then quarantines at the limit', () => {
    const d1 = decideFailure(job, { reason: 'timeout', nodeId: 'n1' }, policy, t(10));
    expect(d1).toMatchObject({ kind: 'retry', delayMs: 1000 });
    expect(d1.next).toMatchObject({ attempt: 1, excludedNodeIds: ['n1'] });
    const d2 = decideFailure(d1.next, { reason: 'disconnect', nodeId: 'n2' }, policy, t(20));
    expect(d2).toMatchObject({ kind: 'retry', delayMs: 5000 });
    expect(d2.next.excludedNodeIds).toEqual(['n1', 'n2']);
    const d3 = decideFailure(d2.next, { reason: 'error', nodeId: 'n1' }, policy, t(30));
    expect(d3.kind).toBe('quarantine');
    expect(d3.next.attempt).toBe(3);
    expect(d3.next.excludedNodeIds).toEqual(['n1', 'n2']); // no duplicates
    expect(d3.next.failures.map((f) => [f.attempt, f.reason])).toEqual([
      [1, 'timeout'],
      [2, 'disconnect'],
      [3, 'error'],
    ]);
  });

  it('uses the last tier when attempts outnumber tiers, and keeps the lists bounded', () => {
    let j = job;
    const many = { maxAttempts: 500, retryDelaysMs: [10, 20] };
    let last;
    for (let i = 0; i < 150; i += 1) {
      last = decideFailure(j, { reason: 'x', nodeId: `n${i}` }, many, t(i));
      j = last.next;
    }
    expect(last).toMatchObject({ kind: 'retry', delayMs: 20 });
    expect(j.failures).toHaveLength(100);
    expect(j.excludedNodeIds).toHaveLength(100);
    expect(() => encodeJob(j)).not.toThrow(); // still within the contract
  });

  it('a replayed job starts over with a fresh TTL and keeps its history', () => {
    const failed = decideFailure(job, { reason: 'x', nodeId: 'n1' }, policy, t(1)).next;
    const r = replayedJob(failed, t(3_600_000));
    expect(r).toMatchObject({ attempt: 0, excludedNodeIds: [], enqueuedAt: t(3_600_000).toISOString() });
    expect(r.failures).toHaveLength(1);
  });
});

describe('expiry', () => {
  it('is due at enqueuedAt + ttl; the broker gets what is left, at least 1 ms', () => {
    expect(isExpired(job, t(59_999))).toBe(false);
    expect(isExpired(job, t(60_000))).toBe(true);
    expect(remainingTtlMs(job, t(59_000))).toBe(1000);
    expect(remainingTtlMs(job, t(70_000))).toBe(1);
  });
});

describe('retry delay spec', () => {
  it('accepts increasing positive delays and refuses others', () => {
    expect(parseRetryDelays('1000,5000,30000')).toEqual([1000, 5000, 30000]);
    expect(() => parseRetryDelays('5000,1000')).toThrow(/increase/);
    expect(() => parseRetryDelays('0')).toThrow(/positive/);
  });
});

describe('contracts', () => {
  it('round-trips a job and rejects a body that breaks the contract', () => {
    expect(decodeJob(encodeJob(job))).toEqual(job);
    expect(decodeJob(Buffer.from('{"v":2}'))).toBeUndefined();
    expect(decodeJob(Buffer.from('not json'))).toBeUndefined();
    expect(decodeJob(Buffer.from(JSON.stringify({ ...job, priority: 'vip' })))).toBeUndefined();
  });

  it('carries ids and metadata only: a job message stays small', () => {
    expect(encodeJob(job).length).toBeLessThan(512);
  });

  it('versions events', () => {
    const e = { v: 1, eventId: job.jobId, type: 'expired', jobId: job.jobId, namespaceId: job.namespaceId };
    const full = { ...e, model: job.model, environment: 'mainnet', attempt: 0, at: job.enqueuedAt };
    expect(jobEventSchema.safeParse(full).success).toBe(true);
    expect(jobEventSchema.safeParse({ ...full, v: 2 }).success).toBe(false);
  });
});

describe('topology naming', () => {
  it('one lane per routing class and namespace; free-text names cannot collide or inject dots', () => {
    const key = laneKeyOf(job);
    expect(laneQueueName(key)).toBe(
      'rty.lane.mainnet.meta-llama~2f~Llama-3~2e~1-8B.urgent._.00000000-0000-4000-8000-0000000000aa',
    );
    expect(laneQueueName(key).startsWith(`${routingClassName(key)}.`)).toBe(true);
    const sub = laneKeyOf({ ...job, subcloud: 'eu.gpu' });
    expect(laneQueueName(sub)).not.toBe(laneQueueName(key));
    expect(laneQueueName(sub).split('.')).toHaveLength(7);
  });

  it('every queue that can drop messages has a dead-letter exchange', () => {
    const o = { retryDelaysMs: [1000, 5000], jobTtlMaxMs: 3_600_000, laneExpiresMs: 21_600_000 };
    const queues = [...staticTopology(o).queues, ...laneTopology(laneKeyOf(job), o).queues];
    for (const q of queues) {
      const drops = 'x-message-ttl' in q.arguments || 'x-max-length' in q.arguments;
      if (drops) expect(q.arguments['x-dead-letter-exchange'], q.name).toBeTruthy();
    }
    const lane = laneTopology(laneKeyOf(job), o).queues[0]!;
    expect(lane.arguments['x-dead-letter-exchange']).toBe(EXCHANGES.expired);
    expect(lane.arguments['x-expires']).toBeGreaterThan(o.jobTtlMaxMs);
  });

  it('quorum: every queue is quorum, and every one that dead-letters does it at least once', () => {
    const o = {
      retryDelaysMs: [1000, 5000],
      jobTtlMaxMs: 3_600_000,
      laneExpiresMs: 21_600_000,
      queueType: 'quorum' as const,
    };
    const queues = [
      ...staticTopology(o).queues,
      ...laneTopology(laneKeyOf(job), o).queues,
      ...recordsTopology(topologyNames('', 'quorum')).queues,
    ];
    for (const q of queues) {
      expect(q.arguments['x-queue-type'], q.name).toBe('quorum');
      expect(q.arguments['x-queue-leader-locator'], q.name).toBe('balanced');
      expect('x-max-priority' in q.arguments, q.name).toBe(false);
      if ('x-dead-letter-exchange' in q.arguments) {
        // At-most-once is the quorum default: a dead-lettered job would be lost on a leader change.
        expect(q.arguments['x-dead-letter-strategy'], q.name).toBe('at-least-once');
        expect(q.arguments['x-overflow'], q.name).toBe('reject-publish');
      }
    }
    const atLeastOnce = new Set(
      queues.filter((q) => 'x-dead-letter-strategy' in q.arguments).map((q) => q.name),
    );
    expect(atLeastOnce.size).toBe(4); // the lane, two retry tiers, the records queue
    // The default stays classic, without quorum-only arguments.
    for (const q of staticTopology({ ...o, queueType: undefined }).queues) {
      expect(q.arguments['x-queue-type'], q.name).toBe('classic');
      expect('x-dead-letter-strategy' in q.arguments, q.name).toBe(false);
    }
  });
});

describe('fair scheduler', () => {
  it('round-robins lanes within a class: a lane never waits behind another lane’s backlog', () => {
    const s = new FairScheduler<string>({ urgent: 1, bulk: 1, test: 1 });
    for (let i = 0; i < 1000; i += 1) s.push('bulk', 'A', `a${i}`);
    s.push('bulk', 'B', 'b0');
    expect([s.next(), s.next()]).toEqual(['a0', 'b0']);
    expect(s.size).toBe(999);
  });

  it('gives each class its weight while both have work, and all to the one that has', () => {
    const s = new FairScheduler<string>({ urgent: 8, bulk: 2, test: 1 });
    for (let i = 0; i < 100; i += 1) {
      s.push('urgent', 'u', 'u');
      s.push('bulk', 'b', 'b');
    }
    const first50 = Array.from({ length: 50 }, () => s.next());
    expect(first50.filter((x) => x === 'b')).toHaveLength(10);
    expect(first50[0]).toBe('u');
    // Smooth: bulk appears in every 5, never in a burst.
    for (let i = 0; i < 50; i += 5) expect(first50.slice(i, i + 5).filter((x) => x === 'b')).toHaveLength(1);
    const rest: string[] = [];
    for (let x = s.next(); x !== undefined; x = s.next()) rest.push(x);
    expect(rest.filter((x) => x === 'u')).toHaveLength(60);
    expect(rest.filter((x) => x === 'b')).toHaveLength(90);
  });

  it('drain empties every class', () => {
    const s = new FairScheduler<number>({ urgent: 2, bulk: 1, test: 1 });
    s.push('test', 'x', 1);
    s.push('urgent', 'y', 2);
    expect(s.drain().sort()).toEqual([1, 2]);
    expect(s.size).toBe(0);
    expect(s.next()).toBeUndefined();
  });
});

describe('routing options from config', () => {
  const config = loadConfig({});
  it('derives weights, policy and topology from the defaults', () => {
    const o = routingOptionsFromConfig(config);
    expect(o.weights).toEqual({ urgent: 8, bulk: 2, test: 1 });
    expect(o.policy).toEqual({ maxAttempts: 4, retryDelaysMs: [1000, 5000, 30000] });
    expect(o.topology.laneExpiresMs).toBeGreaterThan(o.topology.jobTtlMaxMs);
  });

  it('refuses a job runtime the broker consumer timeout would cut, and unsafe lane timings', () => {
    expect(() => routingOptionsFromConfig(loadConfig({ ROUTING_JOB_MAX_RUNTIME_MS: '1800000' }))).toThrow(
      /CONSUMER_TIMEOUT/,
    );
    expect(() => routingOptionsFromConfig(loadConfig({ ROUTING_LANE_IDLE_MS: '5000' }))).toThrow(
      /ROUTING_LANE_IDLE_MS/,
    );
    expect(() =>
      routingOptionsFromConfig(
        loadConfig({ ROUTING_LANE_EXPIRES_MS: '60000', ROUTING_JOB_TTL_MAX_MS: '120000' }),
      ),
    ).toThrow(/ROUTING_LANE_EXPIRES_MS/);
    expect(() => loadConfig({ ROUTING_RETRY_DELAYS_MS: '1s,5s' })).toThrow(/ROUTING_RETRY_DELAYS_MS/);
  });
});
