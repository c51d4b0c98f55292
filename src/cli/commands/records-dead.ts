// `rty records dead list|replay|purge`: the records dead-letter queue (events the recorder refused, each with
// its reason), on the deployment's own queue names.
import { listDeadRecords, purgeDeadRecords, replayDeadRecords } from '../../modules/records/index.js';
import { connectAmqp, type AmqpConnection } from '../../stores/rabbitmq/connection.js';
import { topologyNames } from '../../stores/rabbitmq/topology.js';
import type { CliContext } from '../context.js';

async function withBroker<T>(ctx: CliContext, fn: (conn: AmqpConnection) => Promise<T>): Promise<T> {
  const conn = await connectAmqp(ctx.config.AMQP_URL, 'rty-cli-records-dead');
  try {
    return await fn(conn);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

export async function runRecordsDead(
  ctx: CliContext,
  action: 'list' | 'replay' | 'purge',
  opts: { limit: number },
): Promise<number> {
  const names = topologyNames(ctx.config.DEPLOYMENT);
  return withBroker(ctx, async (conn) => {
    if (action === 'list') {
      const items = await listDeadRecords(conn, opts.limit, names);
      for (const d of items) {
        const jobs = d.jobs.map((j) => `${j.namespaceId}/${j.jobId}:${j.type}`).join(' ');
        ctx.out(
          `${d.deadAt ?? '-'} from=${d.from} events=${d.events} bytes=${d.bytes} reason=${JSON.stringify(d.reason)}${jobs ? ` jobs=${jobs}` : ''}`,
        );
      }
      ctx.out(`${items.length} dead-lettered message(s) listed`);
      return 0;
    }
    const n =
      action === 'replay'
        ? await replayDeadRecords(conn, opts.limit, names)
        : await purgeDeadRecords(conn, opts.limit, names);
    ctx.out(`${n} dead-lettered message(s) ${action === 'replay' ? 'replayed' : 'purged'}`);
    return 0;
  });
}
