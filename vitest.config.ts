import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// glibc's huge-page tunable for the test processes, as bin/netmoments.js's shebang gives the CLI (see
// there): the forks that run the test files are started after this file is read and inherit it (a
// tunable is read when a process starts, so this process itself runs without it); GLIBC_TUNABLES set
// by the caller is kept as it is
process.env.GLIBC_TUNABLES ??= 'glibc.malloc.hugetlb=1';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // every core (vitest's default leaves one idle): most tests wait on a CLI child process, so two
    // files at a time on a 2-core machine keep both cores busy
    maxWorkers: Math.max(2, availableParallelism()),
    globalSetup: ['test/global-setup.ts'],
    // the compiled CLI (test/helpers/cli.ts runs dist/cli.js's main in-process) loads with node's own
    // import, untransformed, as bin/netmoments.js loads it
    server: { deps: { external: [/\/dist\//] } },
    // per-file CPU seconds, only when asked (test/cpu-setup.ts, scripts/test-cpu.mjs)
    setupFiles: process.env.NETMOMENTS_TEST_CPU ? ['test/cpu-setup.ts'] : [],
  },
});
