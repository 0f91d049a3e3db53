/**
 * Per-file CPU seconds of the test suite (docs/BENCHMARKS.md, "Test suite time"): loaded by
 * vitest.config.ts only when NETMOMENTS_TEST_CPU names a file, to which each test file appends one
 * JSON line {file, self, children}: the CPU seconds (user + system) its worker process spent from
 * before the file was imported to after its last test, and those of the child processes it waited
 * for in that time (the CLI runs, fuzz workers), from /proc/self/stat (Linux). `node
 * scripts/test-cpu.mjs FILE` sums them. Nothing here is timed against a bound: it only records.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { afterAll } from 'vitest';

/** utime, stime, cutime, cstime of this process in seconds (fields 14 to 17 of /proc/self/stat). */
function cpu(): { self: number; children: number } {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // the fields after the command name, which is in parentheses and may hold spaces
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // USER_HZ on Linux
  const n = (i: number) => Number(f[i - 3]) / tick;
  return { self: n(14) + n(15), children: n(16) + n(17) };
}

const OUT = process.env.NETMOMENTS_TEST_CPU;
if (OUT) {
  const start = cpu();
  afterAll(({}, suite) => {
    const end = cpu();
    const file = relative(process.cwd(), (suite as { filepath?: string }).filepath ?? suite.file?.filepath ?? '?');
    const round = (x: number) => Math.round(x * 100) / 100;
    appendFileSync(OUT, `${JSON.stringify({ file, self: round(end.self - start.self), children: round(end.children - start.children) })}\n`);
  });
}
