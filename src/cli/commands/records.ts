// `rty records sweep|charge`: runs the retention sweep or the daily Space-plan storage charge once, under the
// same advisory lock as the background task (a second concurrent run is skipped, not doubled).
import { createAuditModule } from '../../modules/audit/index.js';
import { createCreditsModule } from '../../modules/credits/index.js';
import { createRecordsModule } from '../../modules/records/index.js';
import { TaskRunner } from '../../background/task-runner.js';
import { connectMongo } from '../../stores/mongo/client.js';
import { openCliPool, type CliContext } from '../context.js';

export async function runRecordsTask(ctx: CliContext, which: 'sweep' | 'charge'): Promise<number> {
  const { config } = ctx;
  const pool = openCliPool(config, `records-${which}`, 3);
  const mongo = await connectMongo(config.MONGO_URL, config.MONGO_DB);
  const { ledger } = createCreditsModule({ config, stores: { pool }, log: ctx.log, unbatched: true });
  // The same records module (and so the same tasks) as the workers role's.
  const { tasks } = createRecordsModule({
    config,
    stores: { pool, mongo },
    log: ctx.log,
    ledger,
    audit: createAuditModule({ stores: { pool }, log: ctx.log }).audit,
  });
  const task = tasks.find(
    (t) => t.name === (which === 'sweep' ? 'records-retention' : 'records-storage-charge'),
  )!;
  const runner = new TaskRunner({ pool, log: ctx.log, tasks: [] });
  try {
    let result: unknown;
    const ran = await runner.runOnce({ ...task, run: async (signal) => (result = await task.run(signal)) });
    if (!ran) {
      ctx.out(`records ${which}: another process holds the lock; skipped`);
      return 0;
    }
    if (result === undefined) {
      ctx.out(`records ${which}: failed (see the log)`);
      return 1;
    }
    ctx.out(`records ${which}: ${JSON.stringify(result)}`);
    return 0;
  } finally {
    await runner.stop();
    await ledger.stop();
    await mongo.close();
    await pool.end();
  }
}
