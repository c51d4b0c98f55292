// Child process of the 100,000-document export test: streams one namespace's JSONL export from a fresh process
// and prints its line count, byte count and RSS growth (so the parent's own allocations do not blur the figure).
import {
  RecordsQueryService,
  RecordsRepository,
  RetentionPolicies,
  GridFsBlobStore,
} from '../src/modules/records/index.js';
import { systemClock } from '../src/platform/clock.js';
import { connectMongo } from '../src/stores/mongo/client.js';
import { createPgPool } from '../src/stores/postgres/pool.js';
import { baseConfig } from './harness.js';

const [dbName, schema, namespaceId] = process.argv.slice(2) as [string, string, string];
const pool = createPgPool({ url: baseConfig.POSTGRES_URL, size: 1, schema });
const mongo = await connectMongo(baseConfig.MONGO_URL, dbName);
const repo = new RecordsRepository(mongo.db);
const query = new RecordsQueryService({
  repo,
  policies: new RetentionPolicies({ pool, clock: systemClock }),
  blobs: new GridFsBlobStore(mongo.db),
});
const baseline = process.memoryUsage().rss;
let peak = baseline;
let bytes = 0;
let lines = 0;
const t0 = performance.now();
for await (const chunk of await query.exportJobs(namespaceId, {}, 'jsonl')) {
  const str = String(chunk);
  bytes += str.length;
  for (let k = str.indexOf('\n'); k !== -1; k = str.indexOf('\n', k + 1)) lines += 1;
  peak = Math.max(peak, process.memoryUsage().rss);
}
const ms = performance.now() - t0;
await mongo.close();
await pool.end();
process.stdout.write(`${JSON.stringify({ lines, bytes, rssGrowth: peak - baseline, ms })}\n`);
