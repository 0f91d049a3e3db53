/**
 * One chunk of a dataset report: its inputs through the model in one batch, their moments (a
 * linearization per input, or the nearest bank centre's quantities shared by a group), class and
 * flip probabilities from the shared QMC point set, and Monte Carlo for the chosen inputs. A chunk
 * is computed the same way in an unsharded, a sharded and a resumed run.
 */
import { inputFailure, seedFor, TRUST_CHECK_BATCH, type Analyzer } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import type { Bank } from '../linearize/bank.js';
import { inputMoments, surrogateGram } from '../linearize/bankMoments.js';
import type { LayerFlips, Linearizer } from '../linearize/linearizer.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { surrogateMoments } from '../moments/surrogate.js';
import { monteCarloMoments } from '../moments/montecarlo.js';
import type { SharedClassProbabilities } from '../moments/sharedClassProbabilities.js';
import type { LoadedModel } from '../onnx/load.js';
import type { SampleRecord } from '../report/summary.js';
import { assessTrust, compareSurrogate, surrogateOutputAt } from '../trust.js';
import { argmax } from '../util/argmax.js';
import type { CentreCache } from './centres.js';
import type { ReportOptions } from './options.js';

/** The values as numbers, or a BAD_INPUT error naming the input when one is not finite. */
function finite(v: Float64Array, what: string, index: number, file: string): number[] {
  const out = Array.from(v);
  for (const x of out) if (!Number.isFinite(x)) throw new NetmomentsError(`the ${what} of input ${index} came out non-finite`, { file });
  return out;
}

/** The inputs that get Monte Carlo: m indices spread evenly over count. */
export function mcIndices(count: number, m: number): Set<number> {
  const k = Math.min(m, count);
  const out = new Set<number>();
  for (let j = 0; j < k; j++) out.add(Math.floor(((j + 0.5) * count) / k));
  return out;
}

/** Everything a chunk needs, made once per run. */
export interface ChunkContext {
  model: LoadedModel;
  analyzer: Analyzer;
  /** Two-stage only (propagate has no linearizer). */
  linearizer?: Linearizer;
  n: number;
  p: number;
  d: number;
  dataset: Dataset;
  labels?: Int32Array;
  count: number;
  bank?: Bank;
  cache?: CentreCache;
  /** Nearest bank centre of each mu among the centres of its class (-1: none of that class). */
  assign?: (mus: Float64Array[], classes: ArrayLike<number>) => Promise<Int32Array>;
  qmc?: SharedClassProbabilities;
  la: LinearAlgebra;
  options: ReportOptions;
  /** The inputs that get Monte Carlo: --mc's samples, or else the trustCheck's. */
  mcSet: Set<number>;
  /** Without --mc: the samples behind the verdicts of the mcSet inputs (ReportOptions.trustCheck), 0 for none. */
  trustCheck: number;
  chunk: number;
}

/** Records of chunk `ci` (inputs ci*chunk .. min(count, (ci+1)*chunk) - 1). */
export async function computeChunk(ctx: ChunkContext, ci: number, onInput?: (doneInChunk: number) => void): Promise<SampleRecord[]> {
  const { n, p, d, linearizer, analyzer, la, options: o } = ctx;
  const file = ctx.model.file;
  const i0 = ci * ctx.chunk;
  const i1 = Math.min(ctx.count, i0 + ctx.chunk);
  const m = i1 - i0;
  const xs = ctx.dataset.getBatch(Array.from({ length: m }, (_, t) => i0 + t));
  const cleanOut = await analyzer.evaluate(xs, m);
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
  const cleanClass = Int32Array.from({ length: m }, (_, t) => argmax(cleanOut, t * d, d));
  // the surrogate is checked where the noise is centred: mu, the input itself unless a noise mean shifts it
  let modelAtMu = cleanOut;
  if (o.noiseMean) {
    const xm = new Float32Array(m * n);
    mus.forEach((mu, t) => xm.set(mu, t * n));
    modelAtMu = await analyzer.evaluate(xm, m);
  }
  const modelAt = (t: number) => modelAtMu.subarray(t * d, (t + 1) * d);
  const surrogateAt: (Float64Array | undefined)[] = new Array(m);
  const layers: (LayerFlips[] | undefined)[] = new Array(m);
  const fallback: boolean[] = new Array(m).fill(false);
  const wantVar = (o.variance ?? 'exact') !== 'none';
  const means: Float64Array[] = new Array(m);
  const covs: (Float64Array | undefined)[] = new Array(m);
  const vars: (Float64Array | undefined)[] = new Array(m);
  const uncertain: (number | null)[] = new Array(m).fill(null);
  const centre: (number | null)[] = new Array(m).fill(null);
  const dist: (number | null)[] = new Array(m).fill(null);
  const factor = analyzer.factor;
  // the exact variance and covariance, without the paper's Theorem 2 (the report does not show it)
  const moments = { variance: true, covariance: true, paper: false, linalg: la } as const;

  /** Input t linearized at mu itself (two-stage at the input). */
  const linearizeAtInput = async (t: number) => {
    const mu = mus[t];
    const xb = new Float32Array(mu);
    const delta = new Float64Array(n);
    for (let j = 0; j < n; j++) delta[j] = mu[j] - xb[j];
    try {
      const lin = await linearizer!.linearize(xb, factor, delta);
      surrogateAt[t] = surrogateOutputAt(lin.B, lin.zb, lin.gb, lin.Adelta, lin.Ddelta);
      layers[t] = lin.flips;
      if (wantVar) {
        const mo = await surrogateMoments(lin, factor, { offset: { A: lin.Adelta, D: lin.Ddelta }, ...moments });
        means[t] = mo.mean;
        covs[t] = mo.covariance;
        vars[t] = mo.variance;
        uncertain[t] = mo.units.uncertain;
      } else {
        const g = await surrogateGram(la, lin, false);
        means[t] = (await inputMoments(la, g, lin.Adelta ?? new Float64Array(p), lin.Ddelta, false)).mean;
      }
    } catch (e) {
      throw inputFailure(e, inputName(t), file);
    }
  };

  if (!ctx.bank) {
    for (let t = 0; t < m; t++) {
      if (!linearizer) {
        // moments propagated through every layer at mu (no linearization point)
        try {
          const pm = await analyzer.propagatedMoments(mus[t]);
          means[t] = pm.mean;
          if (wantVar) {
            covs[t] = pm.covariance;
            vars[t] = pm.variance;
          }
        } catch (e) {
          throw inputFailure(e, inputName(t), file);
        }
      } else await linearizeAtInput(t);
      // a linearization per input is slow enough to show progress input by input
      onInput?.(t + 1);
    }
  } else {
    const bank = ctx.bank;
    const groups = new Map<number, number[]>();
    // each input takes the nearest centre of its own (clean) class; with none, it is linearized at itself
    const nearest = await ctx.assign!(mus, cleanClass);
    for (let t = 0; t < m; t++) {
      if (nearest[t] < 0) {
        fallback[t] = true;
        continue;
      }
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
        // the centre's surrogate must reproduce the model at the input (its class, its logits to
        // within TRUST.surrogateFar of their spread); otherwise the input is linearized at itself
        const gs = surrogateOutputAt(w.c.B, w.c.zb, w.c.gb, Adelta, Ddelta);
        if (o.bankFallback !== false && compareSurrogate(gs, modelAt(t)).far) {
          fallback[t] = true;
          centre[t] = null;
          dist[t] = null;
          continue;
        }
        surrogateAt[t] = gs;
        if (ctx.cache!.mode === 'engine') {
          const mo = await surrogateMoments(w.projected!, factor, { offset: { A: Adelta, D: Ddelta }, ...moments });
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
    for (let t = 0; t < m; t++) if (fallback[t]) await linearizeAtInput(t);
  }

  const records: SampleRecord[] = [];
  for (let t = 0; t < m; t++) {
    const i = i0 + t;
    const clean = cleanClass[t];
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
      ...(ctx.bank ? { fallback: fallback[t] } : {}),
      trust: { verdict: 'ok', reasons: [] }, // judged below, once Monte Carlo has run
    };
    // Monte Carlo through the real model: --mc's (kept in the record), or else the trust check's
    // (behind the verdict only), in its small batches (src/analyze.ts TRUST_CHECK_BATCH)
    const asked = o.mc ?? 0;
    const samples = asked > 0 ? asked : ctx.trustCheck;
    let checked: { samples: number; mean: number[]; var: number[]; flip: number } | undefined;
    if (ctx.mcSet.has(i) && samples > 0) {
      let flips = 0;
      const res = await monteCarloMoments(
        async (x, b) => {
          const y = await analyzer.evaluate(x, b);
          for (let k = 0; k < b; k++) if (argmax(y, k * d, d) !== clean) flips++;
          return y;
        },
        d,
        mus[t],
        analyzer.fullNoise(),
        { samples, batchSize: asked > 0 ? 1000 : TRUST_CHECK_BATCH, seed: seedFor(o.seed ?? 0, i) },
      );
      checked = {
        samples: res.samples,
        mean: finite(res.mean, 'Monte Carlo mean', i, file),
        var: finite(res.variance, 'Monte Carlo variance', i, file),
        flip: flips / res.samples,
      };
      if (asked > 0) rec.mc = checked;
    }
    rec.trust = assessTrust({
      mean: rec.mean,
      variance: rec.var,
      flip: rec.flip,
      mc: checked && { samples: checked.samples, mean: checked.mean, variance: checked.var, flip: checked.flip },
      layers: layers[t],
      surrogate: surrogateAt[t] && { surrogate: surrogateAt[t]!, model: modelAt(t) },
      smoothOps: linearizer?.smoothOps,
      propagateSteps: analyzer.propagateSteps,
    });
    records.push(rec);
  }
  return records;
}
