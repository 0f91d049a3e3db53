/**
 * Fooling rate of a given perturbation (the paper's Table 2): for each image x the input is
 * x + P + e, e ~ N(0, sigma^2 I), and the two-stage surrogate is linearized at the clean image x
 * (the perturbation enters as the mean offset P, as in the paper), or with method 'propagate' the
 * moments are propagated through every layer at the mean x + P (src/method.ts; 'auto' decides).
 *   predicted fooled: argmax E[g] != the clean class (argmax of the real model at x);
 *   real fooled:      argmax g(x + P) != the clean class, from a plain forward pass;
 *   expected rate:    the mean over images of P(argmax g != clean class) under N(E[g], Cov[g]);
 *   sampled rate:     with mc > 0, the fraction of mc samples of x + P + e through the real model
 *                     whose class differs from the clean class, averaged over images.
 * Top-k ordering accuracy (k = 1..5): the fraction of images whose k largest analytic means are,
 * in order, the k largest real logits at x + P (and, with mc > 0, the k largest Monte Carlo means).
 */
import { Analyzer } from '../analyze.js';
import type { Method, MethodChoice } from '../method.js';
import type { LinearizerOptions, TensorDescription } from '../linearize/linearizer.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { GaussianSampler, MomentAccumulator, Rng } from '../moments/montecarlo.js';
import { checkSigma } from '../noise.js';
import type { LoadedModel } from '../onnx/load.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { seedFor } from '../analyze.js';
import { argmax, topK } from '../util/argmax.js';

export interface FoolingOptions {
  relu?: number | string;
  output?: string;
  /** The Jacobian engine and onnxruntime provider (as analyze's --jacobian, --provider). */
  jacobian?: LinearizerOptions['jacobian'];
  provider?: LinearizerOptions['provider'];
  threads?: number;
  onWarning?: (m: string) => void;
  method?: MethodChoice;
  rank?: number;
  perturbation: Float64Array;
  sigma: number;
  mc?: number;
  seed?: number;
  linalg?: LinearAlgebra;
  onProgress?: (done: number, total: number) => void;
}

export interface FoolingImage {
  input: number;
  label: number | null;
  cleanClass: number;
  predictedClass: number;
  realClass: number;
  predictedFooled: boolean;
  realFooled: boolean;
  /** P(argmax g != clean class) under the analytic mean and exact covariance. */
  flipProbability: number;
  /** Fraction of Monte Carlo samples away from the clean class (mc > 0). */
  sampledFooling?: number;
  /** topK[k-1]: the ordered top-k of the analytic mean equals the real logits' at x + P. */
  topK: boolean[];
  topKMonteCarlo?: boolean[];
}

export interface FoolingResult {
  method: Method;
  methodReason: string;
  rank?: number;
  /** The two-stage split; null for propagate. */
  split: SplitPoint | null;
  output: TensorDescription;
  images: FoolingImage[];
  predictedFoolingRate: number;
  realFoolingRate: number;
  expectedFoolingRate: number;
  sampledFoolingRate: number | null;
  /** Fraction of images where predicted and real fooling agree. */
  agreement: number;
  /** Images fooled in reality but not predicted, and predicted but not fooled. */
  missed: number;
  falseAlarms: number;
  topK: { k: number; accuracy: number }[];
  topKMonteCarlo: { k: number; accuracy: number }[] | null;
}

function sameOrder(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export async function foolingRate(
  model: LoadedModel,
  data: { get(i: number): Float32Array; labels?: Int32Array },
  indices: number[],
  options: FoolingOptions,
): Promise<FoolingResult> {
  checkSigma(options.sigma);
  const analyzer = await Analyzer.create(model, {
    relu: options.relu,
    output: options.output,
    jacobian: options.jacobian,
    provider: options.provider,
    threads: options.threads,
    onWarning: options.onWarning,
    noise: { kind: 'isotropic', sigma: options.sigma },
    noiseMean: options.perturbation,
    at: 'input',
    variance: 'exact',
    seed: options.seed ?? 0,
    probabilitySamples: 1024,
    linalg: options.linalg,
    flips: false,
    method: options.method,
    rank: options.rank,
  });
  try {
    const { n, d } = analyzer;
    const K = Math.min(5, d);
    const mc = options.mc ?? 0;
    const images: FoolingImage[] = [];
    for (let t = 0; t < indices.length; t++) {
      const idx = indices[t];
      const x = data.get(idx);
      const res = await analyzer.analyzeInput(x, idx);
      const xp = Float32Array.from(x, (v, i) => v + options.perturbation[i]);
      const real = Array.from(await analyzer.evaluate(xp, 1));
      const realClass = argmax(real);
      const top = topK(res.mean, K);
      const topReal = topK(real, K);
      const im: FoolingImage = {
        input: idx,
        label: data.labels ? data.labels[idx] : null,
        cleanClass: res.cleanPredicted,
        predictedClass: res.predicted,
        realClass,
        predictedFooled: res.predicted !== res.cleanPredicted,
        realFooled: realClass !== res.cleanPredicted,
        flipProbability: res.flipProbability ?? (res.predicted !== res.cleanPredicted ? 1 : 0),
        topK: Array.from({ length: K }, (_, k) => sameOrder(top.slice(0, k + 1), topReal.slice(0, k + 1))),
      };
      if (mc > 0) {
        const mean = Float64Array.from(xp);
        const sampler = new GaussianSampler(mean, { kind: 'isotropic', sigma: options.sigma });
        const rng = new Rng(seedFor(options.seed ?? 0, idx));
        const acc = new MomentAccumulator(d);
        let away = 0;
        for (let done = 0; done < mc;) {
          const b = Math.min(1000, mc - done);
          const xs = new Float32Array(b * n);
          sampler.sample(rng, xs, b);
          const y = await analyzer.evaluate(xs, b);
          for (let k = 0; k < b; k++) if (argmax(y, k * d, d) !== res.cleanPredicted) away++;
          acc.addBatch(y, b);
          done += b;
        }
        im.sampledFooling = away / mc;
        const topMc = topK(acc.mean, K);
        im.topKMonteCarlo = Array.from({ length: K }, (_, k) => sameOrder(top.slice(0, k + 1), topMc.slice(0, k + 1)));
      }
      images.push(im);
      options.onProgress?.(t + 1, indices.length);
    }
    const N = images.length;
    const frac = (f: (im: FoolingImage) => boolean | number) => (N > 0 ? images.reduce((a, im) => a + Number(f(im)), 0) / N : Number.NaN);
    return {
      method: analyzer.method,
      methodReason: analyzer.decision.reason,
      ...(analyzer.decision.rank !== undefined ? { rank: analyzer.decision.rank } : {}),
      split: analyzer.split,
      output: analyzer.output,
      images,
      predictedFoolingRate: frac((im) => im.predictedFooled),
      realFoolingRate: frac((im) => im.realFooled),
      expectedFoolingRate: frac((im) => im.flipProbability),
      sampledFoolingRate: mc > 0 ? frac((im) => im.sampledFooling ?? 0) : null,
      agreement: frac((im) => im.predictedFooled === im.realFooled),
      missed: images.filter((im) => im.realFooled && !im.predictedFooled).length,
      falseAlarms: images.filter((im) => im.predictedFooled && !im.realFooled).length,
      topK: Array.from({ length: K }, (_, k) => ({ k: k + 1, accuracy: frac((im) => im.topK[k]) })),
      topKMonteCarlo: mc > 0 ? Array.from({ length: K }, (_, k) => ({ k: k + 1, accuracy: frac((im) => im.topKMonteCarlo![k]) })) : null,
    };
  } finally {
    await analyzer.release();
  }
}
