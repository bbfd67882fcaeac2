import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Integration tests start shards and real clients; two test files at once fill two cores.
    maxWorkers: 2,
  },
});
