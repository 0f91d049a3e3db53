/**
 * The dataset report: closed-form moments, class and flip probabilities for every input of a
 * dataset, with a choice of linearization (`--linearize input | kmeans:K | bank:DIR`),
 * checkpoints and `--resume`, and deterministic shards.
 *
 * Work is cut into chunks of consecutive inputs (`chunk`, part of the run's fingerprint). A chunk
 * is the unit of everything: its inputs run through the model in one batch, are grouped by bank
 * centre, are checkpointed together, and a shard owns whole chunks (shard I of N: chunks
 * floor(I C / N) .. floor((I + 1) C / N) - 1 of C). So a chunk is computed the same way in an
 * unsharded, a sharded and a resumed run, and the outputs are built from the records in index
 * order by src/report/summary.ts: resumed == uninterrupted and merged == unsharded, byte for byte.
 *
 * Checkpoints (with an out dir): OUT/.netmoments-checkpoint/state.json (the fingerprint of every
 * option that changes a number) and one chunk-NNNNNN.ndjson per finished chunk, each written to a
 * temporary file and renamed. The outputs are written only at the end (staged, then renamed:
 * samples.csv, summary.md, [records.ndjson], summary.json last; summary.json holds the sha256 of
 * samples.csv), and the checkpoint is removed after that. A run killed at any point therefore
 * leaves the previous complete outputs, or a checkpoint that `--resume` continues.
 *
 * Moments per input (DESIGN.md section 2): with `input`, the two-stage linearization at mu (the
 * input plus the noise mean, as `analyze` does by default) through Linearizer.linearize and
 * surrogateMoments. With a bank, input i uses the centre c nearest to mu_i:
 * m = zb_c + A_c (mu_i - xb_c) and c2 = gb_c - B_c relu(zb_c) + D_c (mu_i - xb_c), with A_c F (the
 * noise directions) formed once per centre; A_c (mu - xb) for a chunk's inputs of one centre is one
 * matrix product. Mean only (`variance: 'none'`) needs s_v = |(A_c F)_v| per centre and nothing per
 * input beyond m. Class probabilities share one randomized-QMC point set (src/moments/sharedClassProbabilities.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Analyzer, VERSION, inputFailure, seedFor, surrogateMoments, type AnalyzeOptions } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import { imageGeometry } from '../data/layout.js';
import { DiskBank, MemoryBank, estimateBank, readBankManifest, type Bank, type BankCentre, type BankPoint } from '../linearize/bank.js';
import { availableMemory, formatBytes, memoryLimit } from '../resources.js';
import { topOffset, type Linearizer } from '../linearize/linearizer.js';
import { jsLinearAlgebra, rowDots, type LinearAlgebra } from '../moments/linalg.js';
import { monteCarloMoments } from '../moments/montecarlo.js';
import type { LoadedModel } from '../onnx/load.js';
import { SharedClassProbabilities } from '../moments/sharedClassProbabilities.js';
import { centreGram, inputMoments, useCentreGram, type CentreGram } from '../linearize/bankMoments.js';
import { REPORT_SCHEMA, reportFiles, type ReportHeader, type ReportSummary, type SampleRecord } from '../report/summary.js';
import { writeFileAtomic } from '../util/files.js';

export type LinearizeSpec = { kind: 'input' } | { kind: 'kmeans'; k: number } | { kind: 'bank'; path: string };

/** Parse `input`, `kmeans:K` or `bank:DIR`. */
export function parseLinearize(text: string): LinearizeSpec {
  if (text === 'input') return { kind: 'input' };
  const km = /^kmeans:(\d+)$/.exec(text);
  if (km) {
    const k = Number(km[1]);
    if (k < 1) throw new NetmomentsError(`--linearize kmeans:K needs K >= 1, got ${text}`, { code: 'BAD_USAGE' });
    return { kind: 'kmeans', k };
  }
  if (text.startsWith('bank:') && text.length > 5) return { kind: 'bank', path: text.slice(5) };
  throw new NetmomentsError(`--linearize expects 'input', 'kmeans:K' or 'bank:DIR', got '${text}'`, { code: 'BAD_USAGE' });
}

/** Parse `I/N` (0-based shard I of N). */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const bad = () => new NetmomentsError(`--shard expects I/N with 0 <= I < N (0-based, e.g. 0/4 .. 3/4), got '${text}'`, { code: 'BAD_USAGE' });
  if (!m) throw bad();
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (!(count >= 1 && index < count)) throw bad();
  return { index, count };
}

export interface ReportOptions extends Omit<AnalyzeOptions, 'variance' | 'covariance' | 'mc' | 'at' | 'flips'> {
  linearize: LinearizeSpec;
  /** k-means settings for kmeans:K. */
  kmeans?: { seed?: number; maxIterations?: number; point?: BankPoint };
  /** 'exact' (default): mean, exact variance, class and flip probabilities; 'none': mean only. */
  variance?: 'exact' | 'none';
  /** Per-logit mean and variance columns in samples.csv. */
  perLogit?: boolean;
  /** Monte Carlo samples per sampled input (0: none) and how many inputs get them. */
  mc?: number;
  mcInputs?: number;
  /** Points of the shared class-probability estimate (default 8192). */
  probabilitySamples?: number;
  /** Inputs per chunk (default 1024 with a bank, 16 with --linearize input). */
  chunk?: number;
  shard?: { index: number; count: number };
  /** Where the outputs (and the checkpoint) go; without it nothing is written. */
  outDir?: string;
  resume?: boolean;
  /** Names for the report. */
  dataFile: string;
  labelsFile?: string;
  noiseMeanFile?: string;
  /** Bytes a kmeans:K bank may take in memory (default half the available memory). */
  maxBankBytes?: number;
  onPhase?: (phase: 'bank' | 'inputs', total: number, done: number) => void;
  onProgress?: (done: number) => void;
  onWarning?: (m: string) => void;
}

export interface ReportResult {
  summary: ReportSummary;
  files: Record<string, string>;
  records: SampleRecord[];
  /** Inputs computed by this run (not taken from a checkpoint). */
  computed: number;
  /** Inputs taken from a checkpoint. */
  resumed: number;
  /** Seconds spent on the inputs (after sessions, data and bank were ready). */
  seconds: number;
  /** CPU seconds of the process (all threads, user + system) over the same phase. */
  cpuSeconds: number;
  /** The outputs were already complete (--resume of a finished run). */
  alreadyComplete: boolean;
}

export const CHECKPOINT_DIR = '.netmoments-checkpoint';
const CHECKPOINT_SCHEMA = 'netmoments.checkpoint/1';

function sha(data: string | Uint8Array | Float64Array | Float32Array | Int32Array): string {
  const h = createHash('sha256');
  if (typeof data === 'string') h.update(data);
  else h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return h.digest('hex');
}

function argmax(v: ArrayLike<number>, o = 0, d = v.length): number {
  let best = 0;
  for (let j = 1; j < d; j++) if (v[o + j] > v[o + best]) best = j;
  return best;
}

function finite(v: Float64Array, what: string, index: number, file: string): number[] {
  const out = Array.from(v);
  for (const x of out) if (!Number.isFinite(x)) throw new NetmomentsError(`the ${what} of input ${index} came out non-finite`, { file });
  return out;
}

/** The chunks of shard I of N among C chunks. */
export function shardChunks(chunks: number, shard?: { index: number; count: number }): number[] {
  if (!shard) return Array.from({ length: chunks }, (_, c) => c);
  const a = Math.floor((shard.index * chunks) / shard.count);
  const b = Math.floor(((shard.index + 1) * chunks) / shard.count);
  return Array.from({ length: b - a }, (_, t) => a + t);
}

/** The inputs that get Monte Carlo: m indices spread evenly over count. */
export function mcIndices(count: number, m: number): Set<number> {
  const k = Math.min(m, count);
  const out = new Set<number>();
  for (let j = 0; j < k; j++) out.add(Math.floor(((j + 0.5) * count) / k));
  return out;
}

/** Per-centre quantities for one noise (formed once, kept while memory allows). */
interface CentreWork {
  /** The bank's centre: A (p x n) and D (d x n) stay float32 and are widened inside the products. */
  c: BankCentre;
  /** s, B, zb, c2 and (variance with p <= r) S, P, Q: src/linearize/bankMoments.ts. */
  gram: CentreGram;
  /** A F and D F, kept when the engine runs on them (variance with p > r). */
  AF?: Float64Array;
  DF?: Float64Array;
  gb: Float64Array;
  bytes: number;
}

class CentreCache {
  private readonly map = new Map<number, CentreWork>();
  private bytes = 0;
  constructor(
    private readonly bank: Bank,
    private readonly F: Float64Array,
    private readonly r: number,
    private readonly n: number,
    private readonly p: number,
    private readonly d: number,
    private readonly la: LinearAlgebra,
    private readonly budget: number,
    /** 'mean': means only; 'gram': S per centre; 'engine': A F for the moments engine. */
    readonly mode: 'mean' | 'gram' | 'engine',
    private readonly sparse?: { support: Int32Array; sd: Float64Array },
  ) {}

  /**
   * X F (rows x r) for X (rows x n): with isotropic or diagonal noise F^T has one nonzero per row
   * (sd_k at support[k]), so X F is X's support columns scaled (no product); else one gemm.
   */
  private async project(X: Float32Array, rows: number): Promise<Float64Array> {
    const { n, r, F } = this;
    if (this.sparse) {
      const { support, sd } = this.sparse;
      const out = new Float64Array(rows * r);
      for (let u = 0; u < rows; u++) {
        const o = u * n;
        const q = u * r;
        for (let k = 0; k < r; k++) out[q + k] = X[o + support[k]] * sd[k];
      }
      return out;
    }
    return this.la.gemm(X, rows, n, F, r, n, { transB: true });
  }

  async get(i: number): Promise<CentreWork> {
    const hit = this.map.get(i);
    if (hit) {
      this.map.delete(i);
      this.map.set(i, hit);
      return hit;
    }
    const { p, d, r } = this;
    const c = this.bank.centre(i);
    const B = new Float64Array(c.B);
    const zb = new Float64Array(c.zb);
    const gb = new Float64Array(c.gb);
    let gram: CentreGram;
    let AF: Float64Array | undefined;
    let DF: Float64Array | undefined;
    if (this.mode === 'mean' && this.sparse) {
      // means only need s_v = |(A F)_v|: with one nonzero per row of F^T, no product is formed
      gram = { p, d, s: new Float64Array(p), B, zb, c2: topOffset(B, zb, gb, p, d) };
      const { support, sd } = this.sparse;
      const n = this.n;
      const A = c.A;
      if (r === n && sd.every((x) => x === sd[0])) {
        // isotropic noise on every element: s_v = sigma |A_v|
        const norms2 = rowDots(A, A, p, n);
        for (let v = 0; v < p; v++) gram.s[v] = sd[0] * Math.sqrt(norms2[v]);
      } else {
        const sd2 = Float64Array.from(sd, (x) => x * x);
        for (let v = 0; v < p; v++) {
          let t = 0;
          const o = v * n;
          for (let k = 0; k < r; k++) {
            const x = A[o + support[k]];
            t += x * x * sd2[k];
          }
          gram.s[v] = Math.sqrt(t);
        }
      }
    } else {
      AF = await this.project(c.A, p);
      DF = c.D ? await this.project(c.D, d) : undefined;
      gram = await centreGram(this.la, AF, DF, B, zb, gb, p, d, r, this.mode === 'gram');
    }
    const keep = this.mode === 'engine';
    const w: CentreWork = { c, gram, gb, AF: keep ? AF : undefined, DF: keep ? DF : undefined, bytes: 0 };
    w.bytes = 4 * (c.A.length + (c.D?.length ?? 0)) + 8 * ((gram.S?.length ?? 0) + B.length + (keep && AF ? AF.length + (DF?.length ?? 0) : 0));
    this.map.set(i, w);
    this.bytes += w.bytes;
    while (this.bytes > this.budget && this.map.size > 1) {
      const [k, v] = this.map.entries().next().value as [number, CentreWork];
      this.map.delete(k);
      this.bytes -= v.bytes;
    }
    return w;
  }
}

/** The support and standard deviations of isotropic or diagonal noise (F^T has one nonzero per row), else undefined. */
function sparseDirections(analyzer: Analyzer): { support: Int32Array; sd: Float64Array } | undefined {
  const { noise } = analyzer;
  if (noise.sigma.kind === 'full') return undefined;
  const { F, r } = analyzer.directions;
  const n = analyzer.linearizer.n;
  const support = noise.support;
  if (support.length !== r) return undefined;
  return { support, sd: Float64Array.from(support, (j, k) => F[k * n + j]) };
}

/**
 * Nearest centre by |x - c|^2 = |x|^2 - 2 x.c + |c|^2 with the x.c of a chunk in one product
 * (ties to the lower index). Float64 throughout: for inputs of norm ~1e4 the rounding is ~1e-8,
 * far below any gap between two centres' distances that matters.
 */
function centreAssigner(bank: Bank, n: number, la: LinearAlgebra): (mus: Float64Array[]) => Promise<Int32Array> {
  const k = bank.k;
  const C = new Float64Array(bank.centres);
  const cc = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let t = 0;
    for (let j = 0; j < n; j++) t += C[c * n + j] * C[c * n + j];
    cc[c] = t;
  }
  return async (mus) => {
    const m = mus.length;
    const X = new Float64Array(m * n);
    mus.forEach((mu, t) => X.set(mu, t * n));
    const XC = await la.gemm(X, m, n, C, k, n, { transB: true });
    const out = new Int32Array(m);
    for (let t = 0; t < m; t++) {
      let best = 0;
      let bd = Infinity;
      for (let c = 0; c < k; c++) {
        const v = cc[c] - 2 * XC[t * k + c];
        if (v < bd) {
          bd = v;
          best = c;
        }
      }
      out[t] = best;
    }
    return out;
  };
}

interface Context {
  model: LoadedModel;
  analyzer: Analyzer;
  linearizer: Linearizer;
  n: number;
  p: number;
  d: number;
  dataset: Dataset;
  labels?: Int32Array;
  count: number;
  bank?: Bank;
  cache?: CentreCache;
  /** Nearest bank centre of each mu. */
  assign?: (mus: Float64Array[]) => Promise<Int32Array>;
  qmc?: SharedClassProbabilities;
  la: LinearAlgebra;
  options: ReportOptions;
  mcSet: Set<number>;
  chunk: number;
}

/** Records of chunk `ci` (inputs ci*chunk .. min(count, (ci+1)*chunk) - 1). */
async function computeChunk(ctx: Context, ci: number, onInput?: (doneInChunk: number) => void): Promise<SampleRecord[]> {
  const { n, p, d, linearizer, analyzer, la, options: o } = ctx;
  const file = ctx.model.file;
  const i0 = ci * ctx.chunk;
  const i1 = Math.min(ctx.count, i0 + ctx.chunk);
  const m = i1 - i0;
  const xs = ctx.dataset.getBatch(Array.from({ length: m }, (_, t) => i0 + t));
  const cleanOut = await linearizer.evaluate(xs, m);
  const inputName = (t: number) => `input ${i0 + t} of ${o.dataFile}`;
  for (let k = 0; k < m * d; k++) {
    if (!Number.isFinite(cleanOut[k])) {
      const t = Math.floor(k / d);
      throw new NetmomentsError(
        `${inputName(t)}: the model's output ${k - t * d} is ${cleanOut[k]} (the model overflows float32 here: its weights or the input are out of range)`,
        { file },
      );
    }
  }
  const mus: Float64Array[] = [];
  for (let t = 0; t < m; t++) {
    const mu = new Float64Array(xs.subarray(t * n, (t + 1) * n));
    if (o.noiseMean) for (let j = 0; j < n; j++) mu[j] += o.noiseMean[j];
    mus.push(mu);
  }
  const wantVar = (o.variance ?? 'exact') !== 'none';
  const means: Float64Array[] = new Array(m);
  const covs: (Float64Array | undefined)[] = new Array(m);
  const vars: (Float64Array | undefined)[] = new Array(m);
  const uncertain: (number | null)[] = new Array(m).fill(null);
  const centre: (number | null)[] = new Array(m).fill(null);
  const dist: (number | null)[] = new Array(m).fill(null);
  const { F, r } = analyzer.directions;

  if (!ctx.bank) {
    for (let t = 0; t < m; t++) {
      const mu = mus[t];
      const xb = new Float32Array(mu);
      const delta = new Float64Array(n);
      for (let j = 0; j < n; j++) delta[j] = mu[j] - xb[j];
      try {
        const lin = await linearizer.linearize(xb, F, r, delta);
        if (wantVar) {
          const mo = await surrogateMoments(lin, p, d, 'exact', la);
          means[t] = mo.mean;
          covs[t] = mo.covariance;
          vars[t] = mo.variance;
          uncertain[t] = mo.units.uncertain;
        } else {
          const g = await centreGram(la, lin.AF, undefined, lin.B, lin.zb, lin.gb, p, d, r, false);
          means[t] = (await inputMoments(la, g, lin.Adelta ?? new Float64Array(p), lin.Ddelta, false)).mean;
        }
      } catch (e) {
        throw inputFailure(e, inputName(t), file);
      }
      // a linearization per input is slow enough to show progress input by input
      onInput?.(t + 1);
    }
  } else {
    const bank = ctx.bank;
    const groups = new Map<number, number[]>();
    const nearest = await ctx.assign!(mus);
    for (let t = 0; t < m; t++) {
      centre[t] = nearest[t];
      const g = groups.get(nearest[t]);
      if (g) g.push(t);
      else groups.set(nearest[t], [t]);
    }
    for (const c of [...groups.keys()].sort((a, b) => a - b)) {
      const members = groups.get(c)!;
      const w = await ctx.cache!.get(c);
      const g = members.length;
      const Delta = new Float64Array(g * n);
      members.forEach((t, k) => {
        let s2 = 0;
        for (let j = 0; j < n; j++) {
          const v = mus[t][j] - w.c.point[j];
          Delta[k * n + j] = v;
          s2 += v * v;
        }
        dist[t] = Math.sqrt(s2);
      });
      // A (mu - xb) for the group as A Delta^T (p x g): A is the left operand, so the product
      // costs one pass over A however few inputs the group has
      const AD = await la.gemm(w.c.A, p, n, Delta, g, n, { transB: true });
      const DD = w.c.D ? await la.gemm(w.c.D, d, n, Delta, g, n, { transB: true }) : undefined; // d x g
      for (let k = 0; k < g; k++) {
        const t = members[k];
        const Adelta = new Float64Array(p);
        for (let u = 0; u < p; u++) Adelta[u] = AD[u * g + k];
        let Ddelta: Float64Array | undefined;
        if (DD) {
          Ddelta = new Float64Array(d);
          for (let i = 0; i < d; i++) Ddelta[i] = DD[i * g + k];
        }
        if (ctx.cache!.mode === 'engine') {
          const mo = await surrogateMoments({ zb: w.gram.zb, gb: w.gb, AF: w.AF!, Adelta, B: w.gram.B, DF: w.DF, Ddelta, r }, p, d, 'exact', la);
          means[t] = mo.mean;
          covs[t] = mo.covariance;
          vars[t] = mo.variance;
          uncertain[t] = mo.units.uncertain;
        } else {
          const mo = await inputMoments(la, w.gram, Adelta, Ddelta, wantVar);
          means[t] = mo.mean;
          covs[t] = mo.covariance;
          vars[t] = mo.variance;
          uncertain[t] = mo.uncertain;
        }
      }
    }
  }

  const records: SampleRecord[] = [];
  for (let t = 0; t < m; t++) {
    const i = i0 + t;
    const clean = argmax(cleanOut, t * d, d);
    const mean = finite(means[t], 'mean', i, file);
    let margin = Infinity;
    for (let j = 0; j < d; j++) if (j !== clean) margin = Math.min(margin, mean[clean] - mean[j]);
    if (d === 1) margin = mean[0];
    let probs: number[] | null = null;
    let flip: number | null = null;
    if (covs[t] && ctx.qmc) {
      const est = await ctx.qmc.estimate(means[t], covs[t]!, clean);
      probs = finite(est.probabilities, 'class probabilities', i, file);
      flip = est.flip;
    }
    const rec: SampleRecord = {
      i,
      label: ctx.labels ? ctx.labels[i] : null,
      clean,
      pred: argmax(mean),
      margin,
      flip,
      probs,
      mean,
      var: vars[t] ? finite(vars[t]!, 'variance', i, file) : null,
      centre: centre[t],
      dist: dist[t],
      uncertain: uncertain[t],
    };
    if (ctx.mcSet.has(i) && (o.mc ?? 0) > 0) {
      let flips = 0;
      const res = await monteCarloMoments(
        async (x, b) => {
          const y = await linearizer.evaluate(x, b);
          for (let k = 0; k < b; k++) if (argmax(y, k * d, d) !== clean) flips++;
          return y;
        },
        d,
        mus[t],
        analyzer.fullNoise(),
        { samples: o.mc!, batchSize: 1000, seed: seedFor(o.seed ?? 0, i) },
      );
      rec.mc = {
        samples: res.samples,
        mean: finite(res.mean, 'Monte Carlo mean', i, file),
        var: finite(res.variance, 'Monte Carlo variance', i, file),
        flip: flips / res.samples,
      };
    }
    records.push(rec);
  }
  return records;
}

interface CheckpointState {
  schema: typeof CHECKPOINT_SCHEMA;
  fingerprint: string;
  shard: { index: number; count: number } | null;
  chunk: number;
  chunks: number;
}

function chunkFile(ci: number): string {
  return `chunk-${String(ci).padStart(6, '0')}.ndjson`;
}

function parseChunk(text: string, ci: number, chunk: number, count: number): SampleRecord[] | undefined {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const i0 = ci * chunk;
  const want = Math.min(count, i0 + chunk) - i0;
  if (lines.length !== want) return undefined;
  try {
    const recs = lines.map((l) => JSON.parse(l) as SampleRecord);
    if (recs.some((r, t) => r.i !== i0 + t)) return undefined;
    return recs;
  } catch {
    return undefined;
  }
}

/** Read a finished report's summary.json when it matches `fingerprint` and its samples.csv. */
function completeOutputs(outDir: string, fingerprint: string, shard?: { index: number; count: number }): Record<string, string> | undefined {
  const sp = join(outDir, 'summary.json');
  const cp = join(outDir, 'samples.csv');
  if (!existsSync(sp) || !existsSync(cp)) return undefined;
  try {
    const s = JSON.parse(readFileSync(sp, 'utf8')) as ReportSummary;
    if (s.schema !== REPORT_SCHEMA || s.run?.fingerprint !== fingerprint) return undefined;
    if ((s.shard?.index ?? null) !== (shard?.index ?? null) || (s.shard?.count ?? null) !== (shard?.count ?? null)) return undefined;
    const csv = readFileSync(cp, 'utf8');
    if (sha(csv) !== s.files['samples.csv'].sha256) return undefined;
    const files: Record<string, string> = { 'samples.csv': csv, 'summary.json': readFileSync(sp, 'utf8') };
    for (const f of ['summary.md', 'records.ndjson']) if (existsSync(join(outDir, f))) files[f] = readFileSync(join(outDir, f), 'utf8');
    return files;
  } catch {
    return undefined;
  }
}

/**
 * Write the outputs: staged in OUT/.staging-PID, renamed into place with summary.json last, a
 * stale records.ndjson removed, then the checkpoint removed.
 */
export function writeReportOutputs(outDir: string, files: Record<string, string>): void {
  mkdirSync(outDir, { recursive: true });
  const staging = join(outDir, `.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging);
  try {
    const order = Object.keys(files).filter((f) => f !== 'summary.json');
    order.push('summary.json');
    for (const f of order) writeFileSync(join(staging, f), files[f]);
    for (const f of order) renameSync(join(staging, f), join(outDir, f));
    if (!files['records.ndjson']) rmSync(join(outDir, 'records.ndjson'), { force: true });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function noiseHeader(o: ReportOptions, analyzer: Analyzer): ReportHeader['noise'] {
  const spec = o.noise ?? { kind: 'isotropic' as const, sigma: 1 };
  const base: ReportHeader['noise'] = { kind: spec.kind, meanFile: o.noiseMeanFile ?? null, window: null, support: analyzer.noise.support.length };
  if (spec.kind === 'isotropic') base.sigma = spec.sigma;
  else {
    base.file = o.noiseFile;
    base.sha256 = sha(spec.kind === 'diagonal' ? spec.variance : spec.cov);
  }
  if (o.window) {
    base.window = [o.window.row, o.window.col, o.window.height, o.window.width];
    base.layout = imageGeometry(analyzer.linearizer.input.shape, o.layout)!.layout;
  }
  return base;
}

/** Run (or resume, or finish) a dataset report. */
export async function runReport(model: LoadedModel, dataset: Dataset, options: ReportOptions): Promise<ReportResult> {
  const o = options;
  const warn = o.onWarning ?? (() => {});
  const count = dataset.size;
  if (count === 0) throw new NetmomentsError('holds no inputs', { file: o.dataFile });
  const variance = o.variance ?? 'exact';
  const mc = o.mc ?? 0;
  if (!(Number.isInteger(mc) && mc >= 0) || mc === 1) throw new NetmomentsError(`--mc must be 0 or a whole number >= 2, got ${mc}`, { code: 'BAD_USAGE' });
  const mcInputs = o.mcInputs ?? 10;
  if (!(Number.isInteger(mcInputs) && mcInputs >= 1))
    throw new NetmomentsError(`--mc-inputs must be a whole number >= 1, got ${mcInputs}`, { code: 'BAD_USAGE' });
  const probabilitySamples = o.probabilitySamples ?? 8192;
  const chunk = o.chunk ?? (o.linearize.kind === 'input' ? 16 : 1024);
  if (!(Number.isInteger(chunk) && chunk >= 1)) throw new NetmomentsError(`--chunk must be a whole number >= 1, got ${chunk}`, { code: 'BAD_USAGE' });
  if (o.shard && o.linearize.kind === 'kmeans') {
    throw new NetmomentsError(
      `--shard with --linearize kmeans:${o.linearize.k} would cluster in every shard; build the bank once (netmoments bank MODEL --data ${o.dataFile} --k ${o.linearize.k} --out-dir BANK) and give every shard --linearize bank:BANK`,
      { code: 'BAD_USAGE' },
    );
  }
  if (variance === 'none' && mc > 0) warn('--variance none: the Monte Carlo columns compare means only');
  const la = o.linalg ?? jsLinearAlgebra;

  // the bank's split comes first: without --relu a bank decides it
  let relu = o.relu;
  let output = o.output;
  if (o.linearize.kind === 'bank') {
    const { manifest } = readBankManifest(o.linearize.path);
    if (relu === undefined) relu = manifest.split.index;
    if (output === undefined) output = manifest.output.name;
  }
  const analyzer = await Analyzer.create(model, {
    ...o,
    relu,
    output,
    variance: variance === 'none' ? 'none' : 'exact',
    flips: false,
    mc: 0,
    probabilitySamples,
  });
  try {
    const linearizer = analyzer.linearizer;
    const { n, p, d } = linearizer;
    // one pass over the data: finiteness and the sha256 of the inputs in model units (float32)
    const hash = createHash('sha256');
    for (let i0 = 0; i0 < count; i0 += 1024) {
      const i1 = Math.min(count, i0 + 1024);
      const xs = dataset.getBatch(Array.from({ length: i1 - i0 }, (_, t) => i0 + t));
      for (let k = 0; k < xs.length; k++) {
        if (!Number.isFinite(xs[k]))
          throw new NetmomentsError(`input ${i0 + Math.floor(k / n)} holds a non-finite value at element ${k % n}`, { file: o.dataFile });
      }
      hash.update(new Uint8Array(xs.buffer, xs.byteOffset, xs.byteLength));
    }
    const dataSha = hash.digest('hex');
    const labels = dataset.labels;
    if (labels) {
      if (labels.length !== count) throw new NetmomentsError(`${labels.length} labels for ${count} inputs`, { file: o.labelsFile ?? o.dataFile });
      for (let i = 0; i < count; i++) {
        if (labels[i] >= d)
          throw new NetmomentsError(`label ${labels[i]} of input ${i} is not one of the ${d} output classes`, { file: o.labelsFile ?? o.dataFile });
      }
    }
    if (o.linearize.kind === 'kmeans') {
      // refuse a K that cannot be clustered or whose bank would not fit, before any other work
      const k = o.linearize.k;
      if (k > count)
        throw new NetmomentsError(`--linearize kmeans:${k} needs at least ${k} inputs to cluster, the data holds ${count}`, {
          file: o.dataFile,
          code: 'BAD_USAGE',
        });
      const est = estimateBank({ n, p, d, skip: linearizer.skip.length > 0 }, k);
      const limit = o.maxBankBytes ?? (o.maxMemory !== undefined ? memoryLimit(o.maxMemory).bytes : Math.floor(availableMemory() * 0.5));
      if (est.total > limit) {
        throw new NetmomentsError(
          `a bank of ${est.text} does not fit in the ${formatBytes(limit)} of memory this run may use${o.maxMemory !== undefined ? ' (--max-memory)' : ''}; lower K, or build it on disk once with \`netmoments bank\` and pass --linearize bank:DIR`,
          { code: 'RESOURCE', file: model.file },
        );
      }
    }

    let bank: Bank | undefined;
    let bankHeader: ReportHeader['linearization'] = { mode: 'input', k: null, bank: null, bankId: null, point: null, seed: null };
    if (o.linearize.kind === 'bank') {
      bank = DiskBank.open(o.linearize.path, {
        modelSha256: model.sha256,
        modelFile: model.file,
        relu: linearizer.split.index,
        output: linearizer.output.name,
        inputSize: n,
      });
      bankHeader = { mode: 'bank', k: bank.k, bank: o.linearize.path, bankId: bank.id, point: bank.manifest.point, seed: bank.manifest.kmeans.seed };
    } else if (o.linearize.kind === 'kmeans') {
      const seed = o.kmeans?.seed ?? 0;
      bankHeader = { mode: 'kmeans', k: o.linearize.k, bank: null, bankId: null, point: o.kmeans?.point ?? 'centroid', seed };
    }

    const qmc = variance === 'exact' ? new SharedClassProbabilities(d, probabilitySamples, o.seed ?? 0, 8, la) : undefined;
    const header: ReportHeader = {
      model: model.file,
      data: { file: o.dataFile, labels: labels ? (o.labelsFile ?? o.dataFile) : null, count, sha256: dataSha },
      split: linearizer.split,
      output: { name: linearizer.output.name, shape: linearizer.output.shape, size: d },
      noise: noiseHeader(o, analyzer),
      linearization: bankHeader,
      run: {
        version: VERSION,
        modelSha256: model.sha256,
        seed: o.seed ?? 0,
        fingerprint: '',
        variance,
        perLogit: !!o.perLogit,
        probabilitySamples: qmc ? qmc.samples : 0,
        mc: mc > 0 ? { samples: mc, inputs: Math.min(mcInputs, count) } : null,
        chunk,
        jacobian: linearizer.jacobianMode,
      },
    };
    const fpInput = {
      schema: REPORT_SCHEMA,
      version: VERSION,
      model: model.sha256,
      data: dataSha,
      labels: labels ? sha(labels) : null,
      split: linearizer.split.index,
      output: header.output.name,
      noise: { ...header.noise, file: undefined, meanFile: undefined, meanSha256: o.noiseMean ? sha(o.noiseMean) : null },
      linearization: { ...bankHeader, bank: undefined, maxIterations: o.linearize.kind === 'kmeans' ? (o.kmeans?.maxIterations ?? 100) : undefined },
      run: { ...header.run, fingerprint: undefined },
    };
    header.run.fingerprint = sha(JSON.stringify(fpInput));

    const chunks = Math.ceil(count / chunk);
    const mine = shardChunks(chunks, o.shard);
    if (o.shard) {
      header.shard = { index: o.shard.index, count: o.shard.count, chunks: mine };
      if (mine.length === 0)
        warn(
          `shard ${o.shard.index}/${o.shard.count} has no inputs: ${count} inputs make ${chunks} chunk(s) of ${chunk}; lower --chunk to spread them over ${o.shard.count} shards`,
        );
    }

    // checkpoint
    const done = new Map<number, SampleRecord[]>();
    let ckDir: string | undefined;
    let freshCheckpoint = false;
    const madeOutDir = o.outDir !== undefined && !existsSync(o.outDir);
    if (o.outDir) {
      if (existsSync(o.outDir) && !statSync(o.outDir).isDirectory())
        throw new NetmomentsError('exists and is not a folder', { file: o.outDir, code: 'BAD_USAGE' });
      ckDir = join(o.outDir, CHECKPOINT_DIR);
      const statePath = join(ckDir, 'state.json');
      const state: CheckpointState = { schema: CHECKPOINT_SCHEMA, fingerprint: header.run.fingerprint, shard: o.shard ?? null, chunk, chunks };
      let reuse = false;
      if (existsSync(statePath)) {
        let old: CheckpointState | undefined;
        try {
          old = JSON.parse(readFileSync(statePath, 'utf8')) as CheckpointState;
        } catch {
          old = undefined;
        }
        const same =
          old && old.schema === CHECKPOINT_SCHEMA && old.fingerprint === state.fingerprint && JSON.stringify(old.shard) === JSON.stringify(state.shard);
        if (o.resume) {
          if (!same) {
            throw new NetmomentsError(
              `the checkpoint here belongs to a run with other options or data (${old?.shard ? `shard ${old.shard.index}/${old.shard.count}, ` : ''}fingerprint ${old?.fingerprint?.slice(0, 12) ?? 'unreadable'}..., this run ${state.fingerprint.slice(0, 12)}...); run without --resume to start over`,
              { file: o.outDir, code: 'BAD_USAGE' },
            );
          }
          reuse = true;
        } else {
          warn(`discarding the checkpoint of an earlier interrupted run in ${o.outDir} (pass --resume to continue it instead)`);
        }
      } else if (o.resume) {
        const complete = completeOutputs(o.outDir, header.run.fingerprint, o.shard);
        if (complete) {
          const summary = JSON.parse(complete['summary.json']) as ReportSummary;
          warn(`${o.outDir} already holds the complete report of this run; nothing to resume`);
          return { summary, files: complete, records: [], computed: 0, resumed: summary.inputs, seconds: 0, cpuSeconds: 0, alreadyComplete: true };
        }
        warn(`no checkpoint in ${o.outDir}: starting from the beginning`);
      }
      if (reuse) {
        for (const ci of mine) {
          const f = join(ckDir, chunkFile(ci));
          if (!existsSync(f)) continue;
          const recs = parseChunk(readFileSync(f, 'utf8'), ci, chunk, count);
          if (recs) done.set(ci, recs);
        }
        for (const e of readdirSync(ckDir)) if (e.endsWith('.tmp')) rmSync(join(ckDir, e), { force: true });
      } else {
        rmSync(ckDir, { recursive: true, force: true });
        mkdirSync(ckDir, { recursive: true });
        writeFileAtomic(statePath, `${JSON.stringify(state, null, 2)}\n`);
        freshCheckpoint = true;
      }
    }
    try {
      const todo = mine.filter((ci) => !done.has(ci));
      if (todo.length > 0 && o.linearize.kind === 'kmeans') {
        const k = o.linearize.k;
        o.onPhase?.('bank', k, 0);
        bank = await MemoryBank.build(linearizer, dataset.getBatch(Array.from({ length: count }, (_, i) => i)), count, {
          k,
          seed: o.kmeans?.seed ?? 0,
          maxIterations: o.kmeans?.maxIterations,
          point: o.kmeans?.point,
          dataFile: o.dataFile,
          version: VERSION,
          maxBytes: Number.MAX_SAFE_INTEGER, // checked above
          onProgress: (stage, dn) => {
            if (stage === 'centre') o.onProgress?.(dn);
          },
        });
      }
      const ctx: Context = {
        model,
        analyzer,
        linearizer,
        n,
        p,
        d,
        dataset,
        labels,
        count,
        bank,
        cache: bank
          ? new CentreCache(
              bank,
              analyzer.directions.F,
              analyzer.directions.r,
              n,
              p,
              d,
              la,
              Math.max(64 << 20, Math.floor(Math.min(2 ** 31, availableMemory() * 0.25))),
              variance === 'none' ? 'mean' : useCentreGram(p, analyzer.directions.r) ? 'gram' : 'engine',
              sparseDirections(analyzer),
            )
          : undefined,
        assign: bank ? centreAssigner(bank, n, la) : undefined,
        qmc,
        la,
        options: o,
        mcSet: mc > 0 ? mcIndices(count, mcInputs) : new Set(),
        chunk,
      };
      const inputsOf = (ci: number) => Math.min(count, (ci + 1) * chunk) - ci * chunk;
      const resumed = [...done.keys()].reduce((a, ci) => a + inputsOf(ci), 0);
      const total = mine.reduce((a, ci) => a + inputsOf(ci), 0);
      o.onPhase?.('inputs', total, resumed);
      let progress = resumed;
      // onnxruntime's Gemm sessions are made on first use: make them now, with the other sessions
      for (const opts of [{ transB: true }, {}]) await la.gemm(new Float64Array(64 * 64), 64, 64, new Float64Array(64 * 64), 64, 64, opts);
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      let computed = 0;
      for (const ci of todo) {
        const recs = await computeChunk(ctx, ci, (k) => o.onProgress?.(progress + k));
        if (ckDir) writeFileAtomic(join(ckDir, chunkFile(ci)), recs.map((r) => JSON.stringify(r)).join('\n') + '\n');
        done.set(ci, recs);
        computed += recs.length;
        progress += recs.length;
        o.onProgress?.(progress);
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      const records: SampleRecord[] = [];
      for (const ci of mine) records.push(...done.get(ci)!);
      const { files, summary } = reportFiles(header, records);
      if (o.outDir) {
        writeReportOutputs(o.outDir, files);
        if (ckDir) {
          // state.json first: a checkpoint without it is never resumed
          rmSync(join(ckDir, 'state.json'), { force: true });
          rmSync(ckDir, { recursive: true, force: true });
        }
      }
      return { summary, files, records, computed, resumed, seconds, cpuSeconds, alreadyComplete: false };
    } catch (e) {
      // A bad input met mid-run (an input that overflows the model) fails the same way under
      // --resume, since the data are part of the run's fingerprint: a checkpoint this run started
      // would only be litter, so it goes, with an out dir this run made. Resource errors keep it.
      if (ckDir && freshCheckpoint && e instanceof NetmomentsError && e.code === 'BAD_INPUT') {
        rmSync(ckDir, { recursive: true, force: true });
        if (madeOutDir && readdirSync(o.outDir!).length === 0) rmSync(o.outDir!, { recursive: true, force: true });
      }
      throw e;
    }
  } finally {
    await analyzer.release();
  }
}

/** Read one shard's outputs for `merge`. */
function readShard(dir: string): { summary: ReportSummary; records: SampleRecord[] } {
  const sp = join(dir, 'summary.json');
  if (!existsSync(dir)) throw new NetmomentsError('no such folder', { file: dir });
  if (existsSync(join(dir, CHECKPOINT_DIR)) && !existsSync(sp)) {
    throw new NetmomentsError('this shard has not finished (it holds a checkpoint); finish it with --resume before merging', { file: dir });
  }
  if (!existsSync(sp)) throw new NetmomentsError('no summary.json: not a report folder', { file: dir });
  let summary: ReportSummary;
  try {
    summary = JSON.parse(readFileSync(sp, 'utf8')) as ReportSummary;
  } catch (e) {
    throw new NetmomentsError(`is not valid JSON (${(e as Error).message})`, { file: sp });
  }
  if (summary.schema !== REPORT_SCHEMA) throw new NetmomentsError(`has schema ${JSON.stringify(summary.schema)}, expected "${REPORT_SCHEMA}"`, { file: sp });
  if (!summary.shard) throw new NetmomentsError('is the report of a whole run, not of a shard (run report with --shard I/N to make shards)', { file: sp });
  if (existsSync(join(dir, CHECKPOINT_DIR))) {
    throw new NetmomentsError('this shard has a checkpoint newer than its outputs (a later run was interrupted); finish it with --resume before merging', {
      file: dir,
    });
  }
  const rp = join(dir, 'records.ndjson');
  if (!existsSync(rp)) throw new NetmomentsError('no records.ndjson: the shard is incomplete', { file: dir });
  const text = readFileSync(rp, 'utf8');
  const csv = existsSync(join(dir, 'samples.csv')) ? readFileSync(join(dir, 'samples.csv'), 'utf8') : '';
  if (sha(csv) !== summary.files?.['samples.csv']?.sha256)
    throw new NetmomentsError('samples.csv does not match summary.json: the shard is damaged or half-written; run it again', { file: dir });
  const records: SampleRecord[] = [];
  text.split('\n').forEach((line, k) => {
    if (line.length === 0) return;
    try {
      records.push(JSON.parse(line) as SampleRecord);
    } catch {
      throw new NetmomentsError(`line ${k + 1} is not valid JSON`, { file: rp });
    }
  });
  if (records.length !== summary.inputs) throw new NetmomentsError(`holds ${records.length} records, summary.json says ${summary.inputs}`, { file: rp });
  return { summary, records };
}

/** `netmoments merge`: the unsharded report from shard folders (checked to be one run, complete, disjoint). */
export function mergeReports(dirs: string[]): { files: Record<string, string>; summary: ReportSummary } {
  if (dirs.length === 0) throw new NetmomentsError('name the shard folders to merge', { code: 'BAD_USAGE' });
  const shards = dirs.map((d) => ({ dir: d, ...readShard(d) }));
  const first = shards[0];
  const N = first.summary.shard!.count;
  const seen = new Map<number, string>();
  for (const s of shards) {
    if (s.summary.run.fingerprint !== first.summary.run.fingerprint) {
      throw new NetmomentsError(
        `is a shard of another run than ${first.dir} (fingerprint ${s.summary.run.fingerprint.slice(0, 12)}... vs ${first.summary.run.fingerprint.slice(0, 12)}...): model, data or options differ`,
        { file: s.dir },
      );
    }
    if (s.summary.shard!.count !== N)
      throw new NetmomentsError(`is shard ${s.summary.shard!.index}/${s.summary.shard!.count}, ${first.dir} is one of ${N}`, { file: s.dir });
    const prev = seen.get(s.summary.shard!.index);
    if (prev !== undefined) throw new NetmomentsError(`is shard ${s.summary.shard!.index}/${N}, and so is ${prev}`, { file: s.dir });
    seen.set(s.summary.shard!.index, s.dir);
  }
  const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0)
    throw new NetmomentsError(`shard(s) ${missing.map((i) => `${i}/${N}`).join(', ')} missing: give all ${N} shard folders`, { code: 'BAD_USAGE' });
  const records = shards.flatMap((s) => s.records).sort((a, b) => a.i - b.i);
  const count = first.summary.data.count;
  if (records.length !== count || records.some((r, k) => r.i !== k)) {
    throw new NetmomentsError(`the shards hold ${records.length} records for ${count} inputs, or some inputs twice`, { file: first.dir });
  }
  const s = first.summary;
  const header: ReportHeader = { model: s.model, data: s.data, split: s.split, output: s.output, noise: s.noise, linearization: s.linearization, run: s.run };
  return reportFiles(header, records);
}
