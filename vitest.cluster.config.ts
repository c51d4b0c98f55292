// The cluster suite (`npm run test:cluster`): real distributed engines of its own on loopback ports (a 3-node
// RabbitMQ cluster), started and stopped by PID, with a node killed mid-run. Kept out of `npm test`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/cluster/**/*.cluster.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});
