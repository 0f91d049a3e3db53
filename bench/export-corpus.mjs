// bench/export-corpus: every model of a folder through `netmoments analyze` as a user runs it
// (default method, zero input, isotropic noise), against Monte Carlo through the real model: per
// model the method that ran, the trust verdict, the worst mean error over the outputs in Monte
// Carlo sd, the range of variance / Monte Carlo over the outputs, and the seconds; or the one-line
// error (exit 2). The models: scripts/make-export-corpus.py (torch exports of modern activations
// and layers), or any folder of .onnx files (e.g. ../shared/wild).
// Usage: npm run build && node bench/export-corpus.mjs [DIR=/tmp/netmoments-exports] [--sigma 0.5]
//          [--mc 4000] [--bin bin/netmoments.js] (--bin: another build's CLI, to compare)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const flags = {};
const positional = [];
for (let a = 2; a < process.argv.length; a++) {
  if (process.argv[a].startsWith('--')) flags[process.argv[a].slice(2)] = process.argv[++a];
  else positional.push(process.argv[a]);
}
const dir = resolve(positional[0] ?? '/tmp/netmoments-exports');
const sigma = flags.sigma ?? '0.5';
const mc = flags.mc ?? '4000';
const bin = resolve(flags.bin ?? new URL('../bin/netmoments.js', import.meta.url).pathname);
const out = mkdtempSync(join(tmpdir(), 'nm-corpus-'));
console.log(
  `${dir}: analyze --sigma ${sigma} --mc ${mc} --seed 1 at the zero input (${bin}); Monte Carlo standard error of a mean ${(1 / Math.sqrt(Number(mc))).toFixed(3)} sd`,
);
console.log(['model', 'exit', 'method', 'trust', 'worst mean err (MC sd)', 'var / MC', 'seconds'].join('\t'));
const counts = { propagate: 0, 'two-stage': 0, refused: 0 };
for (const f of readdirSync(dir)
  .filter((x) => x.endsWith('.onnx'))
  .sort()) {
  const report = join(out, `${f}.json`);
  const t0 = performance.now();
  const run = spawnSync(process.execPath, [bin, 'analyze', join(dir, f), '--sigma', sigma, '--mc', mc, '--seed', '1', '--out', report, '--quiet'], {
    encoding: 'utf8',
    env: { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' },
  });
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  const name = f.replace(/\.onnx$/, '');
  if (run.status !== 0) {
    counts.refused++;
    console.log([name, run.status, '-', '-', '-', '-', seconds, run.stderr.trim().split('\n').at(-1)].join('\t'));
    continue;
  }
  const r = JSON.parse(readFileSync(report, 'utf8'));
  const x = r.results[0];
  let worst = 0;
  let lo = Infinity;
  let hi = -Infinity;
  x.mean.forEach((m, i) => {
    const v = x.mc.variance[i];
    if (!(v > 0)) return;
    worst = Math.max(worst, Math.abs(m - x.mc.mean[i]) / Math.sqrt(v));
    lo = Math.min(lo, x.variance[i] / v);
    hi = Math.max(hi, x.variance[i] / v);
  });
  counts[r.method]++;
  console.log([name, 0, r.method, x.trust.verdict, worst.toFixed(3), `${lo.toFixed(3)}-${hi.toFixed(3)}`, seconds].join('\t'));
}
console.log(`${counts.propagate} propagated, ${counts['two-stage']} by two-stage, ${counts.refused} refused`);
rmSync(out, { recursive: true, force: true });
