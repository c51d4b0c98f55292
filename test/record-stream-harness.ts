// Shared setup of the records-stream integration tests: managed AMQP connections on a test vhost (stopped
// together at the end), a RecorderService on a test database.
import type { Db } from 'mongodb';
import { systemClock } from '../src/platform/clock.js';
import {
  GridFsBlobStore,
  RecorderService,
  RecordsRepository,
  RetentionPolicies,
} from '../src/modules/records/index.js';
import type { Pool } from '../src/stores/postgres/pool.js';
import { ManagedConnection } from '../src/stores/rabbitmq/reconnect.js';
import { testLog } from './harness.js';

/** Opens named managed connections to the vhost `url()` names (read at open time) and stops them all. */
export function managedConnections(url: () => string) {
  const open: ManagedConnection[] = [];
  return {
    async open(name: string): Promise<ManagedConnection> {
      const c = new ManagedConnection({ url: url(), name, log: testLog, reconnectDelayMs: 100 });
      open.push(c);
      await c.start();
      return c;
    },
    async stopAll(): Promise<void> {
      for (const c of open.splice(0)) await c.stop();
    },
  };
}

/** The recorder the workers role builds, on `db`, with the namespace retention policies of `pool`. */
export function testRecorder(db: Db, pool: Pool): RecorderService {
  return new RecorderService({
    repo: new RecordsRepository(db),
    blobs: new GridFsBlobStore(db),
    policies: new RetentionPolicies({ pool, clock: systemClock }),
    log: testLog,
    options: { largePayloadBytes: 1024 * 1024, maxDocumentBytes: 4 * 1024 * 1024 },
  });
}
