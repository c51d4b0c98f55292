// `rty migrate [--dry-run]`: applies every store's schema: PostgreSQL migrations (advisory-locked), then the
// other stores' idempotent setup steps as modules add them.
import { mongoMigrationsDir, postgresMigrationsDir } from '../../platform/paths.js';
import { connectMongo } from '../../stores/mongo/client.js';
import { applyMongoIndexes, readMongoIndexSpecs } from '../../stores/mongo/indexes.js';
import { migrate } from '../../stores/postgres/migrator.js';
import { routingOptionsFromConfig } from '../../modules/routing/index.js';
import { connectAmqp } from '../../stores/rabbitmq/connection.js';
import { assertTopology, staticTopology } from '../../stores/rabbitmq/topology.js';
import { openCliPool, type CliContext } from '../context.js';

export interface MigrationStep {
  name: string;
  run(ctx: CliContext, dryRun: boolean): Promise<void>;
}

const postgresStep: MigrationStep = {
  name: 'postgres',
  async run(ctx, dryRun) {
    const pool = openCliPool(ctx.config, 'migrate', 1);
    try {
      const r = await migrate(pool, {
        dir: postgresMigrationsDir(),
        schema: ctx.config.POSTGRES_SCHEMA,
        dryRun,
      });
      if (dryRun) {
        if (r.pending.length === 0) ctx.out('postgres: up to date; nothing to apply');
        for (const m of r.pending) ctx.out(`-- ${m.id}\n${m.sql.trimEnd()}\n`);
      } else {
        ctx.out(
          r.applied.length === 0 ? 'postgres: up to date' : `postgres: applied ${r.applied.join(', ')}`,
        );
      }
    } finally {
      await pool.end();
    }
  },
};

/** Asserts the fixed RabbitMQ topology (lanes are declared on demand by the routing layer). */
const rabbitmqStep: MigrationStep = {
  name: 'rabbitmq',
  async run(ctx, dryRun) {
    const topology = staticTopology(routingOptionsFromConfig(ctx.config).topology);
    if (dryRun) {
      for (const e of topology.exchanges) ctx.out(`-- rabbitmq exchange ${e.name} (${e.type}, durable)`);
      for (const q of topology.queues) ctx.out(`-- rabbitmq queue ${q.name} ${JSON.stringify(q.arguments)}`);
      for (const b of topology.bindings)
        ctx.out(`-- rabbitmq bind ${b.exchange} -> ${b.queue} [${b.pattern}]`);
      return;
    }
    const conn = await connectAmqp(ctx.config.AMQP_URL, 'rty-migrate');
    try {
      const ch = await conn.createChannel();
      await assertTopology(ch, topology);
      await ch.close();
      ctx.out(
        `rabbitmq: topology asserted (${topology.exchanges.length} exchanges, ${topology.queues.length} queues)`,
      );
    } finally {
      await conn.close().catch(() => undefined);
    }
  },
};

// Mongo indexes from migrations/mongo/*.json; idempotent (existing names are left alone).
const mongoStep: MigrationStep = {
  name: 'mongo',
  async run(ctx, dryRun) {
    const store = await connectMongo(ctx.config.MONGO_URL, ctx.config.MONGO_DB);
    try {
      const created = await applyMongoIndexes(
        store.db,
        await readMongoIndexSpecs(mongoMigrationsDir()),
        store.capabilities,
        { ttlDays: ctx.config.RECORDS_TTL_SAFETY_DAYS, dryRun },
      );
      const verb = dryRun ? 'would create' : 'created';
      ctx.out(created.length === 0 ? 'mongo: up to date' : `mongo: ${verb} ${created.join(', ')}`);
      if (!store.capabilities.ttlIndexes)
        ctx.out('mongo: no TTL indexes on this server; retention sweep only');
    } finally {
      await store.close();
    }
  },
};

export const migrationSteps: MigrationStep[] = [postgresStep, mongoStep, rabbitmqStep];

export async function runMigrate(ctx: CliContext, opts: { dryRun: boolean }): Promise<number> {
  for (const step of migrationSteps) await step.run(ctx, opts.dryRun);
  return 0;
}
