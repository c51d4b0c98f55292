// The fault suite (`npm run test:faults`): tests that start store servers of their own and restart, kill
// and flush them. Kept out of `npm test` (its files are not *.test.ts); one file at a time, bounded.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.ts'],
    testTimeout: 240_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
