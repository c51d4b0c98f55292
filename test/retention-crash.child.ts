// Child process of the retention crash test: runs one sweep and kills itself with SIGKILL at a given step
// (no cleanup, no finally blocks, connections dropped), as a crashed worker would.
import { RecordsRepository, RetentionService, type RetentionStep } from '../src/modules/records/index.js';
import { systemClock } from '../src/platform/clock.js';
import { connectMongo } from '../src/stores/mongo/client.js';
import { createPgPool } from '../src/stores/postgres/pool.js';
import { baseConfig, testLog } from './harness.js';
import { DirectoryStore } from '../src/stores/cold/index.js';

const [dbName, schema, dir, step, nth] = process.argv.slice(2) as [
  string,
  string,
  string,
  RetentionStep,
  string,
];
const pool = createPgPool({ url: baseConfig.POSTGRES_URL, size: 2, schema });
const mongo = await connectMongo(baseConfig.MONGO_URL, dbName);
let seen = 0;
const retention = new RetentionService({
  pool,
  repo: new RecordsRepository(mongo.db),
  target: new DirectoryStore(dir),
  clock: systemClock,
  log: testLog,
  options: { fileMaxDocs: 40, deleteBatchSize: 25 },
  onStep: (s) => {
    if (s === step && ++seen === Number(nth)) process.kill(process.pid, 'SIGKILL');
  },
});
await retention.sweep();
process.stdout.write('finished without reaching the kill point\n');
process.exit(0);
