// bench/scale: ImageNet-size models (scripts/make-imagenet-models.py: torchvision AlexNet, VGG-11,
// ResNet-18, SqueezeNet 1.1, MobileNetV2, random weights with calibrated BatchNorm) timed against a
// Monte Carlo through the same onnxruntime, from one run. Per model:
//   - two-stage at the last Relu (or Clip) split point: `netmoments analyze --method two-stage --relu K`
//     (refusals are printed with their message: the run says up front what does not fit);
//   - `netmoments analyze` with method auto;
//   - a Monte Carlo of S samples (default 1,000) of the model itself through onnxruntime (the same
//     session path analyze's --mc uses: ModelEvaluator + monteCarloMoments), in a child process;
// each child under /usr/bin/time (wall seconds, peak RSS) and a wall-clock limit; then the ratio
// analyze / Monte Carlo. Isotropic noise on the whole image unless --window K puts it on a K x K window
// at the image centre (all channels).
// Usage: npm run build && /usr/bin/python3 scripts/make-imagenet-models.py /tmp/netmoments-imagenet &&
//        node bench/scale.mjs [--dir /tmp/netmoments-imagenet] [--models alexnet,resnet18] [--sigma 0.1]
//        [--samples 1000] [--window K] [--limit 600] [--diagnostics fast]
// --propagate: instead of two-stage, `analyze --method propagate` (with NETMOMENTS_TRACE_PROPAGATE=1:
//   its per-step seconds and resident memory) beside auto, the memory estimate auto's choice rests on
//   (src/method.ts estimatePropagateMemory, plus the process's resident memory when it is made)
//   against the run's peak, and with --reference DIR (files DIR/mc10k-MODEL.json written by
//   `--mc-only FILE --samples 10000 --save DIR/mc10k-MODEL.json`) the top-5 logits' mean error in
//   reference sd and sd ratio. --rank K passes a rank to the propagate run (default: auto's rank).
//   --skip-mc leaves the Monte Carlo out (when a ratio was measured already); --method auto makes the
//   traced run plain `analyze` (no separate auto run).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
/** A switch without a value (--propagate, --skip-auto, --skip-mc), wherever it stands. */
const flag = (name) => args.includes(`--${name}`);
const bin = new URL('../bin/netmoments.js', import.meta.url).pathname;

if (opt('mc-only') !== undefined) {
  // child: S Monte Carlo samples of the model through onnxruntime, isotropic sigma (window: on it only)
  const { loadModel } = await import('../dist/onnx/load.js');
  const { makeBatchDynamicProbed } = await import('../dist/onnx/batch.js');
  const { ModelEvaluator } = await import('../dist/linearize/evaluator.js');
  const { monteCarloMoments } = await import('../dist/moments/montecarlo.js');
  const { readNpy, npyToFloat32 } = await import('../dist/data/npy.js');
  const file = opt('mc-only');
  const model = loadModel(file);
  const graph = await makeBatchDynamicProbed(model.graph, { file });
  const x = npyToFloat32(readNpy(opt('input')));
  const n = x.length;
  const inp = graph.dataInputs[0];
  const out = graph.outputs[0];
  const ev = await ModelEvaluator.create(graph, { name: inp.name, shape: [3, 224, 224], size: n }, { name: out.name, shape: [1000], size: 1000 }, { file });
  const sigma = Number(opt('sigma'));
  const window = opt('window');
  let noise = { kind: 'isotropic', sigma };
  if (window) {
    const k = Number(window);
    const variance = new Float64Array(n);
    const r0 = Math.floor((224 - k) / 2);
    for (let c = 0; c < 3; c++) for (let i = r0; i < r0 + k; i++) for (let j = r0; j < r0 + k; j++) variance[c * 224 * 224 + i * 224 + j] = sigma * sigma;
    noise = { kind: 'diagonal', variance };
  }
  const t0 = process.hrtime.bigint();
  const mc = await monteCarloMoments((xs, count) => ev.evaluate(xs, count), 1000, Float64Array.from(x), noise, {
    samples: Number(opt('samples')),
    batchSize: 50,
    seed: 1,
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ seconds: s, samples: mc.samples, meanTop: Math.max(...mc.mean) }));
  // --save FILE: the per-output mean and sd (the reference a later --propagate run compares with)
  if (opt('save')) {
    const { writeFileSync } = await import('node:fs');
    const sd = Array.from(mc.variance, (v) => Math.sqrt(v));
    writeFileSync(opt('save'), JSON.stringify({ model: file, sigma, samples: mc.samples, seconds: s, mean: Array.from(mc.mean), sd }));
  }
  await ev.release();
  process.exit(0);
}

const dir = opt('dir', '/tmp/netmoments-imagenet');
const sigma = opt('sigma', '0.1');
const samples = opt('samples', '1000');
const window = opt('window');
const limit = Number(opt('limit', '600'));
const diagnostics = opt('diagnostics', 'fast');
const input = join(dir, 'input.npy');
if (!existsSync(input)) throw new Error(`${input} is missing: run /usr/bin/python3 scripts/make-imagenet-models.py ${dir}`);
const wanted = opt('models');
const models = readdirSync(dir)
  .filter((f) => f.endsWith('.onnx'))
  .map((f) => f.replace(/\.onnx$/, ''))
  .filter((m) => !wanted || wanted.split(',').includes(m))
  .sort();
const work = mkdtempSync(join(tmpdir(), 'netmoments-scale-'));

// every child (analyze and the Monte Carlo alike) gets glibc's huge-page tunable, as bin/netmoments.js's
// shebang gives the CLI (see there); GLIBC_TUNABLES set by the caller is kept as it is
const tunables = process.env.GLIBC_TUNABLES ?? 'glibc.malloc.hugetlb=1';

/** Run a command under /usr/bin/time and a wall-clock limit: seconds, peak RSS (GB), exit code, last stderr line. */
function timed(cmd, cmdArgs) {
  const r = spawnSync('/usr/bin/time', ['-f', 'TIME %e %M %U %S', 'timeout', String(limit), cmd, ...cmdArgs], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    env: { ...process.env, GLIBC_TUNABLES: tunables },
  });
  const m = /TIME ([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr ?? '');
  const lines = (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('TIME') && !/Command exited/.test(l));
  return {
    seconds: m ? Number(m[1]) : NaN,
    rssGB: m ? Number(m[2]) / 1024 / 1024 : NaN,
    cpu: m ? Number(m[3]) + Number(m[4]) : NaN,
    code: r.status,
    stdout: r.stdout,
    last: lines.at(-1) ?? '',
    stderr: lines,
  };
}

const noiseArgs = [
  '--sigma',
  sigma,
  ...(window ? ['--window', `${Math.floor((224 - Number(window)) / 2)},${Math.floor((224 - Number(window)) / 2)},${window},${window}`] : []),
];
console.log(
  `machine: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}; input ${input}; isotropic sigma ${sigma} on ${window ? `a ${window}x${window} window` : 'the whole image'}; ` +
    `Monte Carlo ${samples} samples; limit ${limit} s per run; diagnostics ${diagnostics}; GLIBC_TUNABLES=${tunables}`,
);
const describeRun = (r) =>
  r.code === 0
    ? `${r.seconds.toFixed(1)} s (${r.cpu.toFixed(1)} CPU s), peak ${r.rssGB.toFixed(2)} GB`
    : r.code === 124
      ? `did not finish in ${limit} s`
      : `exit ${r.code}: ${r.last.length > 500 ? `${r.last.slice(0, 250)} ... ${r.last.slice(-250)}` : r.last}`;
/** propagate's memory estimate (the one auto decides with) and the resident memory when it is made: a child process. */
if (opt('estimate-only') !== undefined) {
  const { loadModel } = await import('../dist/onnx/load.js');
  const { planPropagation, estimatePropagateMemory, propagateRank } = await import('../dist/method.js');
  const { memoryLimit } = await import('../dist/resources.js');
  const model = loadModel(opt('estimate-only'));
  const plan = await planPropagation(model, {});
  const rank = opt('rank') ? Number(opt('rank')) : propagateRank(plan, plan.input.size, memoryLimit(undefined));
  const e = estimatePropagateMemory(plan, rank, plan.input.size);
  console.log(
    JSON.stringify({ rank, bytes: e.total, rss: process.memoryUsage.rss(), parts: e.parts.map((x) => `${x.what} ${(x.bytes / 2 ** 30).toFixed(2)} GiB`) }),
  );
  process.exit(0);
}
const reference = opt('reference');
/** Top-5 logits (by reference mean): mean error in reference sd, sd ratio; then the same over all outputs (median, p95, max; sd ratio p1, median, p99). */
function compare(report, m) {
  const refFile = reference && join(reference, `mc10k-${m}.json`);
  if (!refFile || !existsSync(refFile)) return 'no reference';
  const ref = JSON.parse(readFileSync(refFile, 'utf8'));
  const res = report.results[0];
  const top = ref.mean
    .map((v, i) => [v, i])
    .sort((a, b) => b[0] - a[0])
    .slice(0, 5)
    .map(([, i]) => i);
  const err = top.map((i) => Math.abs(res.mean[i] - ref.mean[i]) / ref.sd[i]);
  const ratio = top.map((i) => Math.sqrt(res.variance[i]) / ref.sd[i]);
  // outputs that vary under the noise only (a class a Relu before the pooling keeps at 0 has no sd)
  const varying = [...ref.mean.keys()].filter((i) => ref.sd[i] > 0);
  const allErr = varying.map((i) => Math.abs(res.mean[i] - ref.mean[i]) / ref.sd[i]).sort((a, b) => a - b);
  const allRatio = varying.map((i) => Math.sqrt(res.variance[i]) / ref.sd[i]).sort((a, b) => a - b);
  const pct = (a, f) => a[Math.min(a.length - 1, Math.floor(f * a.length))].toFixed(3);
  return (
    `top-5 vs ${ref.samples}-sample Monte Carlo: |mean error| / sd ${err.map((v) => v.toFixed(3)).join(' ')} (max ${Math.max(...err).toFixed(3)}); ` +
    `sd / MC sd ${ratio.map((v) => v.toFixed(3)).join(' ')} (worst ${Math.max(...ratio.map((v) => Math.abs(v - 1))).toFixed(3)} off); ` +
    `all ${allErr.length}${allErr.length < ref.mean.length ? ` that vary (of ${ref.mean.length})` : ''}: |mean error| / sd median ${pct(allErr, 0.5)} p95 ${pct(allErr, 0.95)} max ${pct(allErr, 1)}, sd / MC sd p1 ${pct(allRatio, 0.01)} median ${pct(allRatio, 0.5)} p99 ${pct(allRatio, 0.99)}`
  );
}
for (const m of models) {
  const file = join(dir, `${m}.onnx`);
  if (flag('propagate')) {
    // the method's own cost, without analyze's default 256-sample Monte Carlo check of the trust
    // verdict (about a quarter of the 1,000-sample Monte Carlo it is compared with)
    const common = [bin, 'analyze', file, '--input', input, ...noiseArgs, '--trust-check', '0', '--quiet'];
    const est = timed('node', [new URL(import.meta.url).pathname, '--estimate-only', file, ...(opt('rank') ? ['--rank', opt('rank')] : [])]);
    const e = est.code === 0 ? JSON.parse(est.stdout.trim().split('\n').at(-1)) : undefined;
    process.env.NETMOMENTS_TRACE_PROPAGATE = '1';
    const method = opt('method', 'propagate');
    const prop = timed('node', [...common, '--method', method, ...(opt('rank') ? ['--rank', opt('rank')] : []), '--out', join(work, `${m}-prop.json`)]);
    delete process.env.NETMOMENTS_TRACE_PROPAGATE;
    const auto = flag('skip-auto') || method === 'auto' ? undefined : timed('node', [...common, '--out', join(work, `${m}-auto.json`)]);
    const mc = flag('skip-mc')
      ? undefined
      : timed('node', [
          new URL(import.meta.url).pathname,
          '--mc-only',
          file,
          '--input',
          input,
          '--sigma',
          sigma,
          '--samples',
          samples,
          ...(window ? ['--window', window] : []),
        ]);
    const steps = prop.stderr.filter((l) => l.startsWith('propagate step'));
    const slowest = steps
      .map((l) => [Number(/: ([\d.]+) s/.exec(l)?.[1]), l.replace(/^propagate step /, '')])
      .sort((a, b) => b[0] - a[0])
      .slice(0, 3)
      .map(([, l]) => l);
    console.log(`${m}:`);
    if (e)
      console.log(
        `  estimate at rank ${e.rank}: ${(e.bytes / 2 ** 30).toFixed(2)} GiB + ${(e.rss / 2 ** 30).toFixed(2)} GiB resident when made (${e.parts.join('; ')})`,
      );
    console.log(
      `  ${method === 'auto' ? 'auto' : 'propagate'}: ${describeRun(prop)}${e && prop.code === 0 ? `; estimate + resident / peak ${((e.bytes + e.rss) / 2 ** 30 / prop.rssGB).toFixed(2)}` : ''}; ${steps.length} steps, slowest: ${slowest.join(' | ')}`,
    );
    const pr = prop.code === 0 ? JSON.parse(readFileSync(join(work, `${m}-prop.json`), 'utf8')) : undefined;
    if (pr)
      console.log(
        `  ${method}${method === 'auto' ? ` chose ${pr.method}${pr.rank ? ` at rank ${pr.rank}` : ''} (${pr.methodReason})` : ''}: ${compare(pr, m)}`,
      );
    if (auto) {
      const a = auto.code === 0 ? JSON.parse(readFileSync(join(work, `${m}-auto.json`), 'utf8')) : undefined;
      console.log(`  auto${a ? ` (${a.method}${a.rank ? `, rank ${a.rank}` : ''})` : ''}: ${describeRun(auto)}`);
    }
    if (mc) {
      const mcSeconds = mc.code === 0 ? JSON.parse(mc.stdout.trim().split('\n').at(-1)).seconds : NaN;
      console.log(
        `  Monte Carlo ${samples} samples: ${mc.code === 0 ? `${mcSeconds.toFixed(1)} s sampling (${mc.seconds.toFixed(1)} s with the session), peak ${mc.rssGB.toFixed(2)} GB` : describeRun(mc)}`,
      );
      const ratio = (r) => (r && r.code === 0 && mc.code === 0 ? (r.seconds / mc.seconds).toFixed(2) : 'n/a');
      const cpu = (r) => (r && r.code === 0 && mc.code === 0 ? (r.cpu / mc.cpu).toFixed(2) : 'n/a');
      console.log(
        `  ratio ${method} / Monte Carlo (both with model loading): wall ${ratio(prop)}, CPU ${cpu(prop)}${auto ? `; auto: wall ${ratio(auto)}, CPU ${cpu(auto)}` : ''}`,
      );
    }
    continue;
  }
  const ins = spawnSync('node', [bin, 'inspect', file, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const relus = JSON.parse(ins.stdout).relus;
  const last = relus.at(-1);
  const common = [bin, 'analyze', file, '--input', input, ...noiseArgs, '--diagnostics', diagnostics, '--trust-check', '0', '--quiet'];
  const two = timed('node', [...common, '--method', 'two-stage', '--relu', String(last.index), '--out', join(work, `${m}-two.json`)]);
  const auto = timed('node', [...common, '--out', join(work, `${m}-auto.json`)]);
  const mc = timed('node', [
    new URL(import.meta.url).pathname,
    '--mc-only',
    file,
    '--input',
    input,
    '--sigma',
    sigma,
    '--samples',
    samples,
    ...(window ? ['--window', window] : []),
  ]);
  const mcSeconds = mc.code === 0 ? JSON.parse(mc.stdout.trim().split('\n').at(-1)).seconds : NaN;
  const method = auto.code === 0 ? JSON.parse(readFileSync(join(work, `${m}-auto.json`), 'utf8')) : undefined;
  console.log(`${m}:`);
  console.log(`  two-stage at ${last.op} ${last.index} '${last.node}' (p = ${last.width}): ${describeRun(two)}`);
  console.log(`  auto${method ? ` (${method.method}${method.rank ? `, rank ${method.rank}` : ''})` : ''}: ${describeRun(auto)}`);
  console.log(
    `  Monte Carlo ${samples} samples: ${mc.code === 0 ? `${mcSeconds.toFixed(1)} s sampling (${mc.seconds.toFixed(1)} s with the session), peak ${mc.rssGB.toFixed(2)} GB` : describeRun(mc)}`,
  );
  const ratio = (r) => (r.code === 0 && mc.code === 0 ? (r.seconds / mc.seconds).toFixed(2) : 'n/a');
  console.log(`  ratio analyze / Monte Carlo (wall, both with model loading): two-stage ${ratio(two)}, auto ${ratio(auto)}`);
}
