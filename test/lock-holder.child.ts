// Child process of the advisory-lock test: takes a lock with a short lock-session timeout, says HELD, then
// freezes itself (SIGSTOP) with the lock session open, as a hung or partitioned holder would. The test kills it.
import { createPgPool, withAdvisoryLock } from '../src/stores/postgres/pool.js';

const [url, schema, key, timeoutMs] = process.argv.slice(2) as [string, string, string, string];
const pool = createPgPool({ url, size: 1, schema });
await withAdvisoryLock(
  pool,
  key,
  async () => {
    process.stdout.write('HELD\n');
    process.kill(process.pid, 'SIGSTOP');
    await new Promise(() => undefined);
  },
  { sessionTimeoutMs: Number(timeoutMs) },
);
