// `rty doctor`: per store, reachable or not, server version, round-trip time and capabilities.
import { pgHealth } from '../../stores/postgres/pool.js';
import { connectMongo, mongoHealth } from '../../stores/mongo/client.js';
import { createRedis, redisHealth } from '../../stores/redis/client.js';
import { amqpHealth, connectAmqp } from '../../stores/rabbitmq/connection.js';
import { openCliPool, type CliContext } from '../context.js';

interface Check {
  store: string;
  run(): Promise<{ version: string; rttMs: number; capabilities?: string }>;
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms).unref(),
    ),
  ]);

export async function runDoctor(ctx: CliContext): Promise<number> {
  const { config } = ctx;
  const checks: Check[] = [
    {
      store: 'postgres',
      run: async () => {
        const pool = openCliPool(config, 'doctor', 1);
        try {
          const h = await pgHealth(pool);
          return { version: h.version.split(' on ')[0] ?? h.version, rttMs: h.rttMs };
        } finally {
          await pool.end();
        }
      },
    },
    {
      store: 'mongo',
      run: async () => {
        const m = await connectMongo(config.MONGO_URL, config.MONGO_DB);
        try {
          const h = await mongoHealth(m);
          const c = m.capabilities;
          return {
            ...h,
            capabilities: `server=${c.server} ttl_indexes=${c.ttlIndexes ? 'yes' : 'no'} transactions=${c.transactions ? 'yes' : 'no'}`,
          };
        } finally {
          await m.close();
        }
      },
    },
    {
      store: 'redis',
      run: async () => {
        const r = createRedis(config.REDIS_URL, { lazyConnect: true });
        r.options.retryStrategy = () => null;
        r.options.maxRetriesPerRequest = 0;
        try {
          await r.connect();
          return await redisHealth(r);
        } finally {
          r.disconnect();
        }
      },
    },
    {
      store: 'rabbitmq',
      run: async () => {
        const c = await connectAmqp(config.AMQP_URL, 'rty-doctor');
        try {
          return await amqpHealth(c);
        } finally {
          await c.close();
        }
      },
    },
  ];
  const failed: string[] = [];
  for (const check of checks) {
    try {
      const r = await withTimeout(check.run(), 5_000, check.store);
      ctx.out(
        `${check.store.padEnd(9)} ok    ${r.version}  rtt=${r.rttMs.toFixed(2)}ms${r.capabilities ? `  ${r.capabilities}` : ''}`,
      );
    } catch (err) {
      failed.push(check.store);
      ctx.out(`${check.store.padEnd(9)} FAIL  ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failed.length > 0) ctx.out(`doctor: unreachable: ${failed.join(', ')}`);
  return failed.length === 0 ? 0 : 1;
}
