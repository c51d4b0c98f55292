import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', 'node_modules/**'],
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: ['src/**/*.int.test.ts', 'test/**/*.int.test.ts', 'scripts/**/*.int.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Two cores shared with the servers: a few files at a time.
          maxWorkers: 2,
          // Spot checks (issue 16) add blind deliveries at random (10% of a new node's jobs): off for the suites
          // that count deliveries per node; the spot-check tests set their own shares (also for the processes
          // they spawn, which inherit this environment).
          env: { QC_SAMPLE_BASIS_POINTS: '0', QC_PROBATION_SAMPLE_BASIS_POINTS: '0' },
        },
      },
    ],
  },
});
