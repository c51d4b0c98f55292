// The process-wide result waiter on the real Redis: a result put in this process answers its waiter here even
// when Redis cannot take it (no round trip on the in-process path); one put elsewhere arrives through pub/sub.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testLog } from '../../../test/harness.js';
import { createRedisTestSpace, type RedisTestSpace } from '../../../test/redis-harness.js';
import { JobResults, type JobResult } from './index.js';

let space: RedisTestSpace;
beforeAll(async () => {
  space = await createRedisTestSpace('results');
});
afterAll(async () => {
  await space?.drop();
});

const resultOf = (jobId: string): JobResult => ({
  v: 1,
  jobId,
  namespaceId: '00000000-0000-4000-8000-000000000001',
  model: 'm',
  kind: 'chat',
  status: 'succeeded',
  output: { text: 'hi', finishReason: 'stop' },
  usage: { promptTokens: 1, completionTokens: 1 },
  costMicro: '20',
  attempts: 1,
  nodeAddress: null,
  createdAt: new Date().toISOString(),
  finishedAt: new Date().toISOString(),
});

describe('JobResults', () => {
  it('hands a result put before wait() over in process when the wait was announced (expect)', async () => {
    // The sync path: a dispatcher of this process may finish the job while its submit still awaits the
    // broker's confirm, before the route calls wait(). Redis is unreachable, so only the hand-over can answer.
    const deadRedis = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    deadRedis.on('error', () => undefined);
    const sub = space.connect();
    const results = new JobResults({
      redis: deadRedis,
      subscriber: sub,
      prefix: space.prefix,
      ttlMs: 60_000,
      log: testLog,
    });
    await results.start();
    try {
      const id = '00000000-0000-4000-8000-0000000000cc';
      const end = results.expect(id);
      await expect(results.put(resultOf(id))).rejects.toThrow();
      expect(await results.wait(id, 5_000, undefined, { readFirst: false })).toMatchObject({ jobId: id });
      end();
      // Ended without anyone waiting: the hand-over is dropped, so a later put is not kept for nobody.
      const other = '00000000-0000-4000-8000-0000000000cd';
      results.expect(other)();
      await expect(results.put(resultOf(other))).rejects.toThrow();
      await expect(results.wait(other, 1_500, undefined, { readFirst: false })).rejects.toThrow();
    } finally {
      await results.stop();
      deadRedis.disconnect();
      await sub.quit();
    }
  });

  it('answers a waiter in this process without Redis, and one on another process through pub/sub', async () => {
    // A client that cannot reach any Redis: every command on it fails at once.
    const deadRedis = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    deadRedis.on('error', () => undefined);
    const sub = space.connect();
    const local = new JobResults({
      redis: deadRedis,
      subscriber: sub,
      prefix: space.prefix,
      ttlMs: 60_000,
      log: testLog,
    });
    await local.start();
    const id = '00000000-0000-4000-8000-0000000000aa';
    const waiting = local.wait(id, 5_000, undefined, { readFirst: false });
    await expect(local.put(resultOf(id))).rejects.toThrow();
    expect(await waiting).toMatchObject({ jobId: id, output: { text: 'hi' } });
    await local.stop();
    deadRedis.disconnect();
    await sub.quit();

    // Across processes: another JobResults (its own connections) stores it; this one's waiter wakes.
    const subA = space.connect();
    const subB = space.connect();
    const a = new JobResults({
      redis: space.redis,
      subscriber: subA,
      prefix: space.prefix,
      ttlMs: 60_000,
      log: testLog,
    });
    const b = new JobResults({
      redis: space.connect(),
      subscriber: subB,
      prefix: space.prefix,
      ttlMs: 60_000,
      log: testLog,
    });
    await Promise.all([a.start(), b.start()]);
    const id2 = '00000000-0000-4000-8000-0000000000bb';
    const remote = a.wait(id2, 5_000);
    await new Promise((r) => setTimeout(r, 20));
    await b.put(resultOf(id2));
    expect(await remote).toMatchObject({ jobId: id2 });
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all([subA.quit(), subB.quit()]);
  });
});
