/**
 * The synthetic fixtures' flavour of the one generator (src/util/rng.ts): xoshiro128** with
 * Box-Muller normals, float32 batches, integers and permutations. Deterministic across runs and
 * platforms, so fixtures built from a seed are byte-identical every time.
 */
import { Xoshiro128 } from '../util/rng.js';

export class Rng extends Xoshiro128 {
  /** @param seed taken modulo 2^32 (seed >>> 0; NaN and infinities are 0) */
  constructor(seed: number) {
    super(seed >>> 0);
  }

  /** Uniform in [0, 1) with 53 random bits. */
  float(): number {
    return this.double();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.double() * n);
  }

  /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    return this.boxMullerNormal();
  }

  /** n i.i.d. N(mean, std^2) values as float32. */
  normals(n: number, std = 1, mean = 0): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.boxMullerNormal();
    return out;
  }

  /** n i.i.d. uniform values in [lo, hi) as float32. */
  uniforms(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.double();
    return out;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
