/**
 * The one seeded pseudorandom generator of the tool: xoshiro128** (Blackman and Vigna,
 * "Scrambled linear pseudorandom number generators", ACM TOMS 47, 2021) with its 128-bit state
 * seeded through a splitmix32-style mixer (golden-ratio increment, murmur3 finalizer), uniforms
 * with 53 random bits, and the two normal transforms the callers rely on: Marsaglia's polar
 * method (Marsaglia and Bray 1964; Monte Carlo, src/moments/montecarlo.ts) and Box-Muller
 * (Box and Muller 1958; the synthetic fixtures, src/synthetic/rng.ts). Integer arithmetic plus
 * Math.log/sqrt/cos/sin (V8's fdlibm port), so a seed gives the same stream on every platform.
 */
import { NetmomentsError } from '../errors.js';

export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** The second value of the last polar pair. */
  private polarSpare: number | undefined;
  /** The second value of the last Box-Muller pair. */
  private boxMullerSpare: number | undefined;

  /**
   * @param seed any finite number: its integer part's low and high 32-bit words are folded
   *   together (x = floor(seed) xor floor(seed / 2^32)), so every seed in [0, 2^32) is its own stream
   */
  constructor(seed = 1) {
    if (!Number.isFinite(seed)) throw new NetmomentsError(`the random seed must be a finite number, got ${seed}`, { code: 'BAD_USAGE' });
    let x = (Math.floor(seed) ^ Math.floor(seed / 4294967296)) | 0;
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32 random bits as an unsigned integer (xoshiro128**: result = rotl(s1 * 5, 7) * 9). */
  uint32(): number {
    const s1 = this.s1;
    const r5 = Math.imul(s1, 5);
    const result = Math.imul((r5 << 7) | (r5 >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits: (27 high bits * 2^26 + 26 bits) / 2^53. */
  double(): number {
    const hi = this.uint32() >>> 5; // 27 bits
    const lo = this.uint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * Standard normal by Marsaglia's polar method: (u, v) uniform in the unit disc (rejection from
   * the square), s = u^2 + v^2, then u f and v f with f = sqrt(-2 ln s / s) are independent
   * N(0, 1); the second is kept for the next call.
   */
  polarNormal(): number {
    if (this.polarSpare !== undefined) {
      const z = this.polarSpare;
      this.polarSpare = undefined;
      return z;
    }
    let u: number, v: number, s: number;
    do {
      u = 2 * this.double() - 1;
      v = 2 * this.double() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.polarSpare = v * f;
    return u * f;
  }

  /**
   * Standard normal by the Box-Muller transform: u in (0, 1), v in [0, 1),
   * r = sqrt(-2 ln u), then r cos(2 pi v) and r sin(2 pi v) are independent N(0, 1); the second
   * is kept for the next call.
   */
  boxMullerNormal(): number {
    if (this.boxMullerSpare !== undefined) {
      const z = this.boxMullerSpare;
      this.boxMullerSpare = undefined;
      return z;
    }
    let u = 0;
    while (u === 0) u = this.double();
    const v = this.double();
    const r = Math.sqrt(-2 * Math.log(u));
    this.boxMullerSpare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}
