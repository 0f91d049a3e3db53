/**
 * Fuzzing the inputs a user hands the tool (issue 7, docs/SECURITY.md): at least 2,000 mutated ONNX
 * files and 2,000 mutated .npy files, made by fast-check from the bytes of the real fixtures
 * (test/fuzz/mutate.mjs: bit flips, interesting bytes, truncation, splices, deletions, length
 * varints past the end, and well-formed protobuf with hostile contents), go through the code paths
 * of `inspect` and `analyze` (the CLI's main() in a few worker processes, test/fuzz/worker.mjs).
 * Every case must end in success or the tool's own error: exit 2 with one line on stderr and no
 * stack trace, no output file left behind. An exit 3 (an exception that is not a NetmomentsError),
 * a worker that dies, or a case that runs past the per-case watchdog is a failure, reported with
 * what is needed to reproduce it (the mutated file is kept under $TMPDIR/netmoments-fuzz-failures).
 *
 * Workers are recycled every WORKER_CASES cases (onnxruntime-node leaks memory when sessions are
 * created in one process). A sample of the cases that failed cleanly goes through the real CLI
 * (bin/netmoments.js) to check exit 2 and the one-line message there too.
 *
 * Knobs (environment): FUZZ_SEED (default 7), FUZZ_ONNX and FUZZ_NPY (cases, default 2000 each),
 * FUZZ_WORKERS (default 2), FUZZ_TIME_BOX_S (hard stop, default 300), FUZZ_CASE_TIMEOUT_S (60),
 * FUZZ_WORKER_VMEM_KB (each worker's address-space limit, default 6 GiB; 0 for none).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from '../helpers/cli.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';
import { encodeNpy, parseNpy } from '../../src/data/npy.js';
import { mutateNpy, mutateOnnx, NPY_OPS, ONNX_OPS } from './mutate.mjs';

const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const SEED = env('FUZZ_SEED', 7);
const ONNX_CASES = env('FUZZ_ONNX', 2000);
const NPY_CASES = env('FUZZ_NPY', 2000);
const WORKERS = env('FUZZ_WORKERS', 2);
const TIME_BOX_MS = env('FUZZ_TIME_BOX_S', 300) * 1000;
const CASE_TIMEOUT_MS = env('FUZZ_CASE_TIMEOUT_S', 60) * 1000;
/** Address space of a worker (ulimit -v, KiB; 0: none). */
const WORKER_VMEM_KB = env('FUZZ_WORKER_VMEM_KB', 6 * 1024 * 1024);
const WORKER_CASES = 250;
// 15 in npm test; `npm run test:slow` runs 30
const CLI_SAMPLE = env('FUZZ_CLI_SAMPLE', 15);

const FIX = join(ROOT, 'fixtures');

interface Op {
  op: string;
  a: number;
  b: number;
  c: number;
}
interface Step {
  name: string;
  args: string[];
  out?: string;
}
interface Case {
  id: number;
  kind: 'onnx' | 'npy';
  root: string;
  base: string;
  donors: string[];
  fileName: string;
  ops: Op[];
  steps: Step[];
}
interface Result {
  id: number;
  ok: boolean;
  problems: string[];
  results: Record<string, number>;
  messages?: Record<string, string>;
  ms?: number;
}

// ---------------------------------------------------------------------------------------------
// base files

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

/** A small, fast model with LeNet's input [N, 1, 28, 28]: conv 2@4x4 stride 4, ReLU, max pool, fc 10, ReLU, fc 10. */
function mnistSmall(): Uint8Array {
  const r = rng(11);
  const w = (name: string, dims: number[], scale: number) =>
    makeTensor(
      name,
      DataType.FLOAT,
      dims,
      Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => r() * scale),
    );
  return encodeModel(
    makeModel(
      {
        name: 'mnist-small',
        node: [
          makeNode('Conv', ['input', 'W1', 'B1'], ['c1'], { name: 'conv', attributes: { kernel_shape: [4, 4], strides: [4, 4] } }),
          makeNode('Relu', ['c1'], ['r1'], { name: 'relu0' }),
          makeNode('MaxPool', ['r1'], ['p1'], { name: 'pool', attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
          makeNode('Flatten', ['p1'], ['f'], { name: 'flatten', attributes: { axis: 1 } }),
          makeNode('Gemm', ['f', 'W2', 'B2'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
          makeNode('Relu', ['h'], ['r2'], { name: 'relu1' }),
          makeNode('Gemm', ['r2', 'W3', 'B3'], ['logits'], { name: 'fc2', attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('input', DataType.FLOAT, ['N', 1, 28, 28])],
        output: [makeValueInfo('logits', DataType.FLOAT, ['N', 10])],
        initializer: [w('W1', [2, 1, 4, 4], 0.02), w('B1', [2], 0.1), w('W2', [10, 18], 0.3), w('B2', [10], 0.1), w('W3', [10, 10], 0.3), w('B3', [10], 0.1)],
      },
      { metadata: { 'netmoments.preprocessing': '{"scale":255,"offset":-127.5}' } },
    ),
  );
}

interface Bases {
  dir: string;
  model: string;
  small12: string;
  npy: Record<string, string>;
}

function writeBases(dir: string): Bases {
  const model = join(dir, 'mnist-small.onnx');
  writeFileSync(model, mnistSmall());
  const small12 = join(dir, 'affine-relu-affine.onnx');
  copyFileSync(join(FIX, 'affine-relu-affine.onnx'), small12);
  const all = parseNpy(new Uint8Array(readFileSync(join(FIX, 'mnist', 'digits-100.npy')))).data as Float32Array;
  const r = rng(5);
  const cov = new Float64Array(144);
  const F = Float64Array.from({ length: 144 }, () => r());
  for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) for (let k = 0; k < 12; k++) cov[i * 12 + j] += F[i * 12 + k] * F[j * 12 + k];
  const files: Record<string, Uint8Array> = {
    'digit.npy': new Uint8Array(readFileSync(join(FIX, 'mnist', 'digit-0.npy'))),
    'digits2.npy': encodeNpy(Float32Array.from(all.subarray(0, 2 * 784)), [2, 1, 28, 28]),
    'pixels.npy': encodeNpy(
      Uint8Array.from(all.subarray(0, 784), (v) => Math.round(v + 127.5)),
      [28, 28],
    ),
    'noisevar.npy': encodeNpy(
      Float64Array.from({ length: 784 }, (_, i) => (i % 7) * 3),
      [784],
    ),
    'noisemean.npy': encodeNpy(
      Float32Array.from({ length: 784 }, (_, i) => (i % 5) - 2),
      [1, 28, 28],
    ),
    'at.npy': encodeNpy(Float32Array.from(all.subarray(784, 2 * 784)), [784]),
    'input12.npy': encodeNpy(
      Float32Array.from({ length: 12 }, () => r()),
      [12],
    ),
    'cov12.npy': encodeNpy(cov, [12, 12]),
  };
  const npy: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    npy[name] = join(dir, name);
    writeFileSync(npy[name], bytes);
  }
  return { dir, model, small12, npy };
}

// ---------------------------------------------------------------------------------------------
// cases (fast-check)

const ONNX_FIXTURES: [string, number][] = [
  ['affine-relu-affine.onnx', 4],
  ['fc-2.onnx', 3],
  ['fc-3.onnx', 1],
  ['conv-2.onnx', 3],
  ['conv-4.onnx', 1],
  ['residual.onnx', 4],
  ['residual-torch.onnx', 3],
  ['batchnorm-avgpool.onnx', 3],
  ['lenet-batch1.onnx', 1],
  ['lenet.onnx', 1],
];

const opArb = (ops: string[]) => fc.record({ op: fc.constantFrom(...ops), a: fc.nat(), b: fc.nat(), c: fc.nat() });

/** analyze options for a mutated model: cheap most of the time, every branch some of the time. */
const analyzeArgsArb = fc
  .record({
    variance: fc.constantFrom('none', 'none', 'none', 'exact', 'paper', 'both'),
    sigma: fc.constantFrom('1', '1', '8', '0', '1e-3', '1e4'),
    mc: fc.constantFrom('0', '0', '0', '0', '12'),
    format: fc.constantFrom('json', 'json', 'json', 'csv'),
    relu: fc.constantFrom(undefined, undefined, undefined, '0', '1', '9', 'relu'),
    jacobian: fc.constantFrom('auto', 'auto', 'auto', 'auto', 'fd', 'jvp'),
    window: fc.constantFrom(undefined, undefined, '0,0,3,3', '0,0,2,2'),
    covariance: fc.boolean(),
  })
  .map((o) => {
    // --max-memory 1G: a mutation can make the split millions of units wide (a padding of 100000),
    // which the estimate then refuses instead of computing B through millions of JVP directions
    const args = ['--variance', o.variance, '--sigma', o.sigma, '--mc', o.mc, '--format', o.format, '--jacobian', o.jacobian, '--max-memory', '1G'];
    if (o.relu !== undefined) args.push('--relu', o.relu);
    if (o.window) args.push('--window', o.window);
    if (o.covariance) args.push('--covariance');
    return { args, ext: o.format };
  });

const onnxCaseArb = fc.record({
  fixture: fc.constantFrom(...ONNX_FIXTURES.flatMap(([f, w]) => Array<string>(w).fill(f))),
  ops: fc.array(opArb(ONNX_OPS), { minLength: 1, maxLength: 2 }),
  analyze: analyzeArgsArb,
});

type NpyRole = 'input' | 'batch' | 'pixels' | 'noise-var' | 'noise-mean' | 'at' | 'cov' | 'input12';
const NPY_ROLES: NpyRole[] = ['input', 'input', 'batch', 'pixels', 'noise-var', 'noise-mean', 'at', 'cov', 'input12'];

const npyCaseArb = fc.record({
  role: fc.constantFrom(...NPY_ROLES),
  ops: fc.array(opArb(NPY_OPS), { minLength: 1, maxLength: 3 }),
  variance: fc.constantFrom('none', 'none', 'exact', 'both'),
  mc: fc.constantFrom('0', '0', '0', '12'),
  // noise on an 8x8 patch most of the time: the cases are about the file, not the cost of wide noise
  window: fc.constantFrom('0,0,8,8', '0,0,8,8', '0,0,8,8', undefined),
});

function onnxCases(root: string, count: number): Case[] {
  const donors = ONNX_FIXTURES.map(([f]) => join(FIX, f)).filter((f) => !f.endsWith('lenet.onnx'));
  return fc.sample(onnxCaseArb, { seed: SEED, numRuns: count }).map((s, i) => ({
    id: i,
    kind: 'onnx' as const,
    root,
    base: join(FIX, s.fixture),
    donors,
    fileName: 'model.onnx',
    ops: s.ops,
    steps: [
      { name: 'inspect', args: ['inspect', '{file}', '--json', '--quiet'] },
      {
        name: 'analyze',
        // LeNet with noise on all 784 pixels costs seconds a case: a patch keeps it to a fraction
        args: [
          'analyze',
          '{file}',
          '--quiet',
          ...s.analyze.args,
          ...(s.fixture.startsWith('lenet') && !s.analyze.args.includes('--window') ? ['--window', '12,12,3,3'] : []),
        ],
        out: `report.${s.analyze.ext}`,
      },
    ],
  }));
}

function npyCases(root: string, bases: Bases, count: number, offset: number): Case[] {
  const n = bases.npy;
  const donors = Object.values(n);
  return fc.sample(npyCaseArb, { seed: SEED + 1, numRuns: count }).map((s, i) => {
    const common = ['--quiet', '--variance', s.variance, '--mc', s.mc, '--max-memory', '1G'];
    const win = s.window ? ['--window', s.window] : [];
    const on = (model: string, extra: string[]) => ['analyze', model, ...common, ...(model === bases.model ? win : []), ...extra];
    const roles: Record<NpyRole, { base: string; args: string[] }> = {
      input: { base: n['digit.npy'], args: on(bases.model, ['--input', '{file}', '--sigma', '8']) },
      batch: { base: n['digits2.npy'], args: on(bases.model, ['--input', '{file}', '--sigma', '8']) },
      pixels: { base: n['pixels.npy'], args: on(bases.model, ['--input', '{file}', '--sigma', '8']) },
      'noise-var': { base: n['noisevar.npy'], args: on(bases.model, ['--input', n['digit.npy'], '--noise-var', '{file}']) },
      'noise-mean': { base: n['noisemean.npy'], args: on(bases.model, ['--input', n['digit.npy'], '--sigma', '4', '--noise-mean', '{file}']) },
      at: { base: n['at.npy'], args: on(bases.model, ['--input', n['digit.npy'], '--sigma', '8', '--at', '{file}']) },
      cov: { base: n['cov12.npy'], args: on(bases.small12, ['--input', n['input12.npy'], '--noise-cov', '{file}']) },
      input12: { base: n['input12.npy'], args: on(bases.small12, ['--input', '{file}', '--noise-cov', n['cov12.npy']]) },
    };
    const r = roles[s.role];
    return {
      id: offset + i,
      kind: 'npy' as const,
      root,
      base: r.base,
      donors,
      fileName: 'data.npy',
      ops: s.ops,
      steps: [{ name: `analyze (${s.role})`, args: r.args, out: 'report.json' }],
    };
  });
}

// ---------------------------------------------------------------------------------------------
// the worker pool

interface Outcome {
  done: Map<number, Result & { case: Case }>;
  failures: (Result & { case: Case })[];
  timedOut: boolean;
  elapsedMs: number;
  workersStarted: number;
}

async function runPool(cases: Case[], deadline: number): Promise<Outcome> {
  const worker = join(import.meta.dirname, 'worker.mjs');
  const done = new Map<number, Result & { case: Case }>();
  const failures: (Result & { case: Case })[] = [];
  const queue = [...cases];
  const t0 = Date.now();
  let started = 0;
  let timedOut = false;

  const lane = async (): Promise<void> => {
    let child: ChildProcess | undefined;
    let served = 0;
    const start = async (): Promise<ChildProcess> => {
      started++;
      // Under an address-space limit (as docs/SECURITY.md advises for untrusted models) a model
      // whose activations would take 10 GiB fails to allocate, cleanly, instead of bringing the
      // operating system's OOM killer onto whatever else runs on the machine.
      const c =
        process.platform === 'linux' && WORKER_VMEM_KB > 0
          ? spawn('/bin/sh', ['-c', `ulimit -v ${WORKER_VMEM_KB} && exec "$0" "$@"`, process.execPath, worker], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
          : fork(worker, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
      c.stderr?.on('data', () => {});
      await new Promise<void>((resolve, reject) => {
        const onMsg = (m: { type: string }) => {
          if (m.type === 'ready') {
            c.off('message', onMsg);
            resolve();
          }
        };
        c.on('message', onMsg);
        c.once('exit', (code) => reject(new Error(`fuzz worker exited (${code}) before it was ready`)));
      });
      return c;
    };
    const stop = (c: ChildProcess | undefined, force = false) => {
      if (!c || c.exitCode !== null) return;
      if (force) c.kill('SIGKILL');
      else {
        c.send({ type: 'exit' });
        setTimeout(() => c.exitCode === null && c.kill('SIGKILL'), 5000).unref();
      }
    };
    try {
      while (queue.length > 0) {
        if (Date.now() > deadline) {
          timedOut = true;
          return;
        }
        const c = queue.shift()!;
        if (!child || served >= WORKER_CASES || child.exitCode !== null) {
          stop(child);
          child = await start();
          served = 0;
        }
        served++;
        const w = child;
        let killed = false;
        const res = await new Promise<Result>((resolve) => {
          let settled = false;
          const finish = (r: Result) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            w.off('message', onMsg);
            w.off('exit', onExit);
            resolve(r);
          };
          const onMsg = (m: { type: string } & Partial<Result> & { message?: string }) => {
            if (m.type === 'result' && m.id === c.id) finish(m as Result);
            if (m.type === 'crash') finish({ id: c.id, ok: false, problems: [`the worker crashed: ${m.message}`], results: {} });
          };
          const onExit = (code: number | null, signal: string | null) =>
            finish({ id: c.id, ok: false, problems: [`the worker died (exit ${code}, signal ${signal})`], results: {} });
          const timer = setTimeout(() => {
            stop(w, true);
            killed = true;
            finish({ id: c.id, ok: false, problems: [`hang: no answer within ${CASE_TIMEOUT_MS / 1000} s`], results: {} });
          }, CASE_TIMEOUT_MS);
          w.on('message', onMsg);
          w.once('exit', onExit);
          w.send({ type: 'case', case: c });
        });
        const rec = { ...res, case: c };
        done.set(c.id, rec);
        if (!res.ok) {
          failures.push(rec);
          // a worker the watchdog killed may not have exited yet: never hand it the next case
          if (killed || w.exitCode !== null || w.signalCode !== null) child = undefined;
        }
      }
    } finally {
      stop(child);
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, lane));
  return { done, failures, timedOut, elapsedMs: Date.now() - t0, workersStarted: started };
}

/** Keep a failing case's file and describe how to reproduce it. */
function report(f: Result & { case: Case }, keepDir: string): string {
  const c = f.case;
  const bytes: Uint8Array =
    c.kind === 'onnx'
      ? mutateOnnx(
          new Uint8Array(readFileSync(c.base)),
          c.ops,
          c.donors.map((d) => new Uint8Array(readFileSync(d))),
        )
      : mutateNpy(
          new Uint8Array(readFileSync(c.base)),
          c.ops,
          c.donors.map((d) => new Uint8Array(readFileSync(d))),
        );
  mkdirSync(keepDir, { recursive: true });
  const kept = join(keepDir, `case-${c.id}-${c.fileName}`);
  writeFileSync(kept, bytes);
  return [
    `case ${c.id} (${c.kind}, base ${c.base.replace(ROOT + '/', '')}, ops ${JSON.stringify(c.ops)})`,
    `  file kept at ${kept}`,
    ...c.steps.map((s) => `  netmoments ${s.args.map((a) => (a === '{file}' ? kept : a)).join(' ')}${s.out ? ` --out OUT` : ''}`),
    ...f.problems.map((p) => `  ${p.split('\n').slice(0, 12).join('\n    ')}`),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

function runCliAsync(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

describe('fuzz: mutated ONNX and .npy files through inspect and analyze', () => {
  let root: string;
  let bases: Bases;
  let outcome: Outcome;
  let cases: Case[];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'nm-fuzz-'));
    bases = writeBases(mkdtempSync(join(tmpdir(), 'nm-fuzz-bases-')));
    // interleave the two kinds so that a time box cuts both equally
    const a = onnxCases(root, ONNX_CASES);
    const b = npyCases(root, bases, NPY_CASES, ONNX_CASES);
    cases = [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i < a.length) cases.push(a[i]);
      if (i < b.length) cases.push(b[i]);
    }
    outcome = await runPool(cases, Date.now() + TIME_BOX_MS);
  }, TIME_BOX_MS + 180_000);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
    if (bases) rmSync(bases.dir, { recursive: true, force: true });
  });

  it('every case ends in success or exit 2 with one line, no hang, no crash, nothing left behind', () => {
    const { done, failures } = outcome;
    const count = (k: string) => [...done.values()].filter((r) => r.case.kind === k).length;
    const onnxDone = count('onnx');
    const npyDone = count('npy');
    const codes = new Map<string, number>();
    for (const r of done.values())
      for (const [k, v] of Object.entries(r.results)) codes.set(`${k.split(' ')[0]} exit ${v}`, (codes.get(`${k.split(' ')[0]} exit ${v}`) ?? 0) + 1);
    const slowest = [...done.values()].sort((x, y) => (y.ms ?? 0) - (x.ms ?? 0)).slice(0, 3);
    const summary =
      `fuzz: ${onnxDone} ONNX + ${npyDone} .npy cases in ${(outcome.elapsedMs / 1000).toFixed(0)} s on ${WORKERS} workers ` +
      `(${outcome.workersStarted} started), seed ${SEED}; ${[...codes]
        .sort()
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')}; ` +
      `slowest ${slowest.map((r) => `${r.case.id} ${((r.ms ?? 0) / 1000).toFixed(1)} s`).join(', ')}`;
    process.stderr.write(`${summary}\n`);
    if (process.env.FUZZ_VERBOSE) {
      const hist = new Map<string, number>();
      for (const r of done.values()) {
        for (const [k, m] of Object.entries(r.messages ?? {})) {
          const key = `${r.case.kind} ${k.split(' ')[0]}: ${m
            .replace(/^netmoments: [^:]*: /, '')
            .replace(/\d+(\.\d+)?(e[+-]?\d+)?/g, '#')
            .slice(0, 110)}`;
          hist.set(key, (hist.get(key) ?? 0) + 1);
        }
      }
      process.stderr.write(
        [...hist]
          .sort((x, y) => y[1] - x[1])
          .slice(0, 60)
          .map(([k, v]) => `${String(v).padStart(5)} ${k}`)
          .join('\n') + '\n',
      );
      const time = new Map<string, [number, number, number]>();
      for (const r of done.values()) {
        const k = `${r.case.base.split('/').pop()} ${r.case.steps.map((s) => s.name).join('+')}`;
        const t = time.get(k) ?? [0, 0, 0];
        t[0]++;
        t[1] += r.ms ?? 0;
        if (Object.values(r.results).some((v) => v === 0)) t[2] += r.ms ?? 0;
        time.set(k, t);
      }
      process.stderr.write(
        [...time]
          .sort((x, y) => y[1][1] - x[1][1])
          .map(([k, [n, ms, okMs]]) => `${k}: ${n} cases ${(ms / 1000).toFixed(1)} s (successes ${(okMs / 1000).toFixed(1)} s)`)
          .join('\n') + '\n',
      );
    }
    const keep = join(tmpdir(), 'netmoments-fuzz-failures');
    const details = failures.slice(0, 10).map((f) => report(f, keep));
    expect(failures.length, `${failures.length} failing cases:\n${details.join('\n')}`).toBe(0);
    expect(onnxDone, `the time box ended after ${onnxDone} ONNX cases`).toBeGreaterThanOrEqual(Math.min(ONNX_CASES, 2000));
    expect(npyDone, `the time box ended after ${npyDone} .npy cases`).toBeGreaterThanOrEqual(Math.min(NPY_CASES, 2000));
  });

  it(`a sample of ${CLI_SAMPLE} rejected cases through the real CLI: exit 2, one line naming the file, no stack trace, no output left`, async () => {
    const rejected = [...outcome.done.values()].filter((r) => r.ok && Object.values(r.results).some((v) => v === 2));
    const pickKind = (k: string, m: number) => {
      const all = rejected.filter((r) => r.case.kind === k);
      const step = Math.max(1, Math.floor(all.length / m));
      return all.filter((_, i) => i % step === 0).slice(0, m);
    };
    const sample = [...pickKind('onnx', CLI_SAMPLE / 2), ...pickKind('npy', CLI_SAMPLE / 2)];
    expect(sample.length).toBeGreaterThanOrEqual(Math.min(CLI_SAMPLE, 10));
    const dir = mkdtempSync(join(tmpdir(), 'nm-fuzz-cli-'));
    const problems: string[] = [];
    const one = async (r: (typeof sample)[number]) => {
      const c = r.case;
      const caseDir = join(dir, `case-${c.id}`);
      mkdirSync(caseDir);
      const donors = c.donors.map((d) => new Uint8Array(readFileSync(d)));
      const base = new Uint8Array(readFileSync(c.base));
      const file = join(caseDir, c.fileName);
      writeFileSync(file, c.kind === 'onnx' ? mutateOnnx(base, c.ops, donors) : mutateNpy(base, c.ops, donors));
      for (const s of c.steps) {
        const expected = r.results[s.name];
        const out = s.out ? join(caseDir, s.out) : undefined;
        const res = await runCliAsync([...s.args.map((a) => a.replaceAll('{file}', file)), ...(out ? ['--out', out] : [])], ROOT);
        const where = `case ${c.id} ${s.name}: exit ${res.code} (in-process ${expected}); stderr ${JSON.stringify(res.stderr.slice(0, 400))}`;
        if (res.code !== expected) problems.push(`${where}: the CLI and the in-process run disagree`);
        if (res.code === 2) {
          const lines = res.stderr.split('\n').filter((l) => l.length > 0);
          if (lines.length !== 1 || !lines[0].startsWith('netmoments: ')) problems.push(`${where}: not one 'netmoments: ' line`);
          if (/\bat .+:\d+:\d+/.test(res.stderr) || /internal error/.test(res.stderr)) problems.push(`${where}: stack trace`);
          const named = s.args.some((a) => a !== '{file}' && a.endsWith('.onnx') && res.stderr.includes(a)) || res.stderr.includes(file);
          if (!named && !/--\w/.test(res.stderr)) problems.push(`${where}: the message names neither a file nor an option`);
          const left = readdirSync(caseDir).filter((f) => f !== c.fileName);
          if (left.length > 0) problems.push(`${where}: left ${left.join(', ')} behind`);
        } else if (out && existsSync(out)) rmSync(out);
      }
    };
    const queue = [...sample];
    await Promise.all(
      Array.from({ length: 2 }, async () => {
        while (queue.length > 0) await one(queue.shift()!);
      }),
    );
    rmSync(dir, { recursive: true, force: true });
    expect(problems, problems.join('\n')).toEqual([]);
  }, 600_000);
});
