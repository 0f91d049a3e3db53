#!/usr/bin/env node
/**
 * Sums the per-file CPU seconds that test/cpu-setup.ts records (docs/BENCHMARKS.md, "Test suite time"):
 *   NETMOMENTS_TEST_CPU=/tmp/cpu.ndjson npx vitest run [files]; node scripts/test-cpu.mjs /tmp/cpu.ndjson
 * prints one line per test file, slowest first: total = the worker's own CPU + its waited-for children's.
 */
import { readFileSync } from 'node:fs';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: node scripts/test-cpu.mjs FILE.ndjson\n');
  process.exit(2);
}
const byFile = new Map();
for (const line of readFileSync(path, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const r = JSON.parse(line);
  const seen = byFile.get(r.file) ?? { self: 0, children: 0 };
  byFile.set(r.file, { self: seen.self + r.self, children: seen.children + r.children });
}
const rows = [...byFile.entries()].map(([file, r]) => ({ file, ...r, total: r.self + r.children })).sort((a, b) => b.total - a.total);
const sum = rows.reduce((s, r) => s + r.total, 0);
process.stdout.write(`${'file'.padEnd(48)} ${'total'.padStart(8)} ${'self'.padStart(8)} ${'children'.padStart(8)}\n`);
for (const r of rows)
  process.stdout.write(`${r.file.padEnd(48)} ${r.total.toFixed(1).padStart(8)} ${r.self.toFixed(1).padStart(8)} ${r.children.toFixed(1).padStart(8)}\n`);
process.stdout.write(`${`${rows.length} files`.padEnd(48)} ${sum.toFixed(1).padStart(8)}\n`);
