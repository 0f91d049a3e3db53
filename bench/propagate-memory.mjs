// bench/propagate-memory: propagate's memory estimate (src/method.ts estimatePropagateMemory, the
// step-by-step walk of src/propagate/memory.ts) against the resident memory of a real run, step by
// step. Two child processes:
//   1. the estimate as `analyze` makes it (planPropagation, the rank auto would take or --rank),
//      with each step's figure;
//   2. `netmoments analyze MODEL ...` run in-process with NETMOMENTS_TRACE_PROPAGATE=1 and
//      NETMOMENTS_TIMING=1: after each traced line, the peak resident memory since the line before
//      (VmHWM of /proc/self/status, then reset by writing 5 to /proc/self/clear_refs, Linux), so
//      each step's own peak; the first line is the analyzer's start, where the memory limit is taken.
// Prints per step: estimate (the walk's figure for the step and the parts held beside it:
// sessions, plan, output covariance), measured peak above the analyzer's start, ratio (a step's
// measured peak includes the resident memory it started from, which the step before may have
// left: garbage the estimate counts in that step); then the totals:
// estimate, resident memory at the analyzer's start, peak, (estimate + start) / peak and
// estimate / (peak - start). (The reset makes /usr/bin/time's maximum meaningless for child 2:
// the largest step peak is the run's peak.)
// Usage: npm run build && node bench/propagate-memory.mjs MODEL --input FILE [--sigma 0.1]
//        [--method propagate|auto] [--rank K]
// Also: --sessions MODEL (node --expose-gc): resident memory the segment sessions and the evaluator
// take, each after a full V8 collection; --segment MODEL --step K --rows N: one affine step's
// segment run alone on N factor rows, the growth of the peak resident memory over its run against
// its outputs' size.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const GiB = (b) => (b / 2 ** 30).toFixed(3);

if (opt('child-estimate') !== undefined) {
  const { loadModel } = await import('../dist/onnx/load.js');
  const { planPropagation, estimatePropagateMemory, propagateRank, propagateRows } = await import('../dist/method.js');
  const { propagationMemory, DEFAULT_HERMITE_PROBES } = await import('../dist/propagate/index.js');
  const { memoryLimit } = await import('../dist/resources.js');
  const model = loadModel(opt('child-estimate'));
  const plan = await planPropagation(model, {});
  const n = plan.input.size;
  const rank = opt('rank') ? Math.min(Number(opt('rank')), n) : propagateRank(plan, n, memoryLimit(undefined));
  const e = estimatePropagateMemory(plan, rank, n);
  const rows = propagateRows(plan);
  const walk = propagationMemory(plan.layout, {
    rank,
    sketched: rank < n,
    hermiteRows: rows.hermiteColumns,
    hermiteProbes: DEFAULT_HERMITE_PROBES,
    residualRows: rows.residualRows,
  });
  console.log(JSON.stringify({ rank, total: e.total, parts: e.parts.map((p) => [p.what, p.bytes]), steps: walk.steps }));
  process.exit(0);
}

if (opt('sessions') !== undefined) {
  const { loadModel } = await import('../dist/onnx/load.js');
  const { planPropagation, propagateRows, fallbackRank } = await import('../dist/method.js');
  const { createPropagator } = await import('../dist/propagate/index.js');
  const { ModelEvaluator } = await import('../dist/linearize/evaluator.js');
  const settle = async () => {
    for (let i = 0; i < 2; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 1000));
    }
    return process.memoryUsage.rss();
  };
  const model = loadModel(opt('sessions'));
  const plan = await planPropagation(model, {});
  const r0 = await settle();
  // kept referenced: a session nothing points to is released by the collection
  const propagator = await createPropagator(
    { ...model, graph: plan.graph },
    { output: plan.output.name, rank: fallbackRank(plan), ...propagateRows(plan), shapes: plan.shapes },
  );
  const r1 = await settle();
  const evaluator = await ModelEvaluator.create(plan.graph, plan.input, plan.output, { file: model.file });
  const r2 = await settle();
  await evaluator.release();
  await propagator.release();
  const mb = model.bytes.length;
  const MiB = (b) => (b / 2 ** 20).toFixed(1);
  const segs = plan.layout.steps.filter((s) => s.kind === 'affine').length;
  console.log(
    `${opt('sessions')}: weights ${MiB(mb)} MiB (Conv ${MiB(plan.convWeightBytes)}), ${segs} segments: segment sessions ${MiB(r1 - r0)} MiB, ` +
      `evaluator ${MiB(r2 - r1)} MiB; the plan ${MiB(plan.planBytes)} MiB`,
  );
  process.exit(0);
}

if (opt('segment') !== undefined) {
  const status = () => readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status())[1]) * 1024;
  const { loadModel } = await import('../dist/onnx/load.js');
  const { planPropagation } = await import('../dist/method.js');
  const { layoutPropagation } = await import('../dist/propagate/propagator.js');
  const { AffineSegment } = await import('../dist/propagate/segment.js');
  const model = loadModel(opt('segment'));
  const plan = await planPropagation(model, {});
  const g = plan.graph.clone();
  g.sortTopologically();
  const layout = layoutPropagation(g, plan.shapes, plan.input.name, plan.output.name);
  const k = Number(opt('step'));
  const rows = Number(opt('rows'));
  const p = layout.steps[k];
  const size = (t) => layout.sampleShape(t).reduce((a, d) => a * d, 1);
  const keep = (t) => t === layout.output || (layout.lastUse.get(t) ?? -1) > p.end - 1;
  const seg = await AffineSegment.create(g, p.nodes, layout.variable, layout.shapes, layout.sampleShape, keep, {});
  const ins = seg.inputs.map((t) => {
    const F = new Float32Array(rows * size(t));
    for (let i = 0; i < F.length; i++) F[i] = ((i * 7919) % 1000) / 1e4; // every page written
    return { m: new Float64Array(size(t)).fill(0.1), F, probes: 0, k: rows, r: new Float64Array(size(t)).fill(0.01) };
  });
  const before = kb('VmRSS');
  writeFileSync('/proc/self/clear_refs', '5');
  await seg.run(ins, false);
  const growth = kb('VmHWM') - before;
  const outBytes = seg.outputs.reduce((a, t) => a + size(t), 0) * rows * 4;
  console.log(
    `${seg.label} (step ${k}, ${rows} rows; inputs ${seg.inputs.map(size).join(' + ')} units, outputs ${seg.outputs.map(size).join(' + ')}): ` +
      `peak growth over the run ${(growth / 2 ** 20).toFixed(0)} MiB = ${(growth / outBytes).toFixed(2)} x the outputs (${(outBytes / 2 ** 20).toFixed(0)} MiB)`,
  );
  process.exit(0);
}

if (opt('child-run') !== undefined) {
  const status = () => readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status())[1]) * 1024;
  const write = process.stderr.write.bind(process.stderr);
  const peaks = [];
  process.stderr.write = (chunk, ...rest) => {
    const s = String(chunk);
    if (/^propagate step|^netmoments timing: analyzer start/.test(s)) {
      peaks.push({ line: s.trim(), peak: kb('VmHWM'), rss: kb('VmRSS') });
      writeFileSync('/proc/self/clear_refs', '5');
    }
    return write(chunk, ...rest);
  };
  const { main } = await import('../dist/cli.js');
  const code = await main(JSON.parse(opt('child-run')));
  peaks.push({ line: 'end', peak: kb('VmHWM'), rss: kb('VmRSS') });
  console.log(`PEAKS ${JSON.stringify({ code, peaks })}`);
  process.exit(0);
}

const model = args[0];
const input = opt('input');
const sigma = opt('sigma', '0.1');
const method = opt('method', 'propagate');
const rankArg = opt('rank');
const est = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--child-estimate', model, ...(rankArg ? ['--rank', rankArg] : [])], {
  encoding: 'utf8',
  maxBuffer: 1 << 26,
});
if (est.status !== 0) throw new Error(`estimate failed: ${est.stderr}`);
const e = JSON.parse(est.stdout.trim().split('\n').at(-1));
const out = `/tmp/propagate-memory-${process.pid}.json`;
const analyzeArgs = ['analyze', model, '--input', input, '--sigma', sigma, '--method', method, '--rank', String(e.rank), '--trust-check', '0', '--out', out]; // propagate's memory alone, without the trust check's Monte Carlo after it
if (method === 'auto' && !rankArg) analyzeArgs.splice(analyzeArgs.indexOf('--rank'), 2); // auto picks the rank itself
const run = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--child-run', JSON.stringify(analyzeArgs)], {
  encoding: 'utf8',
  maxBuffer: 1 << 26,
  env: { ...process.env, NETMOMENTS_TRACE_PROPAGATE: '1', NETMOMENTS_TIMING: '1' },
});
rmSync(out, { force: true });
const line = run.stdout.split('\n').find((l) => l.startsWith('PEAKS '));
if (!line) throw new Error(`run failed (exit ${run.status}): ${run.stderr.slice(-2000)}`);
const { code, peaks } = JSON.parse(line.slice(6));
const method_ = run.stderr.split('\n').find((l) => l.includes('method: '));
const start = peaks[0].rss;
console.log(
  `${model}: ${method_ ?? method} (exit ${code}); estimate at rank ${e.rank}: ${GiB(e.total)} GiB (${e.parts.map(([w, b]) => `${w} ${GiB(b)}`).join('; ')})`,
);
// the parts beside the walk (sessions, plan, output covariance) are held through every step
const beside = e.parts.filter(([w]) => !w.startsWith('factors')).reduce((a, [, b]) => a + b, 0);
console.log(`step | estimate: the walk's figure + ${GiB(beside)} GiB beside it (GiB) | measured peak above the start (GiB) | ratio`);
const steps = peaks.slice(1).filter((p) => p.line.startsWith('propagate step'));
steps.forEach((p, k) => {
  const s = e.steps[k];
  const m = p.peak - start;
  console.log(`${k} ${s?.label ?? '?'} | ${s ? GiB(s.bytes + beside) : '?'} | ${GiB(m)} | ${s ? ((s.bytes + beside) / m).toFixed(2) : '?'}`);
});
const peak = Math.max(...peaks.map((p) => p.peak));
console.log(
  `estimate ${GiB(e.total)} GiB, resident at the analyzer's start ${GiB(start)} GiB, peak ${GiB(peak)} GiB: ` +
    `(estimate + start) / peak ${((e.total + start) / peak).toFixed(2)}, estimate / (peak - start) ${(e.total / (peak - start)).toFixed(2)}`,
);
