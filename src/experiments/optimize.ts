/**
 * Box-constrained minimization by the spectral projected gradient method (SPG2 of Birgin,
 * Martinez and Raydan, "Nonmonotone spectral projected gradient methods on convex sets",
 * SIAM J. Optim. 10(4), 2000): steps along the projected gradient P(x - lambda g) - x with the
 * Barzilai-Borwein step lambda = s's / s'y, a nonmonotone Armijo line search against the largest
 * of the last M objective values, and safeguarded quadratic backtracking. The projection onto a box
 * is a clamp, so every iterate is feasible. The best iterate seen is returned (the nonmonotone
 * search may accept a step that increases f).
 */

export interface SpgOptions {
  maxIter: number;
  /** Nonmonotone memory M (default 10). */
  memory?: number;
  /** Stop when ||P(x - g) - x||_inf < tol (default 1e-8). */
  tol?: number;
  /** Armijo parameter (default 1e-4). */
  gamma?: number;
  lambdaMin?: number;
  lambdaMax?: number;
  /** Stop as soon as the objective is at or below this value. */
  target?: number;
}

export interface SpgResult {
  x: Float64Array;
  f: number;
  iterations: number;
  /** Objective evaluations (with and without gradient). */
  evaluations: number;
  converged: boolean;
  /** Objective after each iteration. */
  history: number[];
}

export type ValueAndGradient = (x: Float64Array) => Promise<{ f: number; g: Float64Array }>;
export type ValueOnly = (x: Float64Array) => Promise<number>;

function project(x: Float64Array, lo: Float64Array, hi: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i] < lo[i] ? lo[i] : x[i] > hi[i] ? hi[i] : x[i];
}

function clean(g: Float64Array): Float64Array {
  for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) g[i] = 0;
  return g;
}

/** Minimize f over the box lo <= x <= hi from x0 (projected first). */
export async function spgMinimize(
  fg: ValueAndGradient,
  fOnly: ValueOnly,
  x0: Float64Array,
  lo: Float64Array,
  hi: Float64Array,
  options: SpgOptions,
): Promise<SpgResult> {
  const n = x0.length;
  const M = options.memory ?? 10;
  const tol = options.tol ?? 1e-8;
  const gamma = options.gamma ?? 1e-4;
  const lmin = options.lambdaMin ?? 1e-10;
  const lmax = options.lambdaMax ?? 1e10;
  let x = Float64Array.from(x0);
  project(x, lo, hi);
  let { f, g } = await fg(x);
  g = clean(g);
  let evaluations = 1;
  const history: number[] = [f];
  let best = { x: Float64Array.from(x), f };
  const pgNorm = (xx: Float64Array, gg: Float64Array, lambda: number): number => {
    let m = 0;
    for (let i = 0; i < n; i++) {
      let t = xx[i] - lambda * gg[i];
      t = t < lo[i] ? lo[i] : t > hi[i] ? hi[i] : t;
      m = Math.max(m, Math.abs(t - xx[i]));
    }
    return m;
  };
  let pg = pgNorm(x, g, 1);
  let lambda = pg > 0 ? Math.min(lmax, Math.max(lmin, 1 / pg)) : 1;
  let iterations = 0;
  let converged = false;
  const d = new Float64Array(n);
  const xn = new Float64Array(n);
  while (iterations < options.maxIter) {
    if (options.target !== undefined && f <= options.target) break;
    if (pg < tol) {
      converged = true;
      break;
    }
    let gtd = 0;
    for (let i = 0; i < n; i++) {
      let t = x[i] - lambda * g[i];
      t = t < lo[i] ? lo[i] : t > hi[i] ? hi[i] : t;
      d[i] = t - x[i];
      gtd += g[i] * d[i];
    }
    if (!(gtd < 0)) {
      converged = true;
      break;
    }
    const fmax = Math.max(...history.slice(-M));
    let alpha = 1;
    let fn = Infinity;
    let accepted = false;
    for (let ls = 0; ls < 40; ls++) {
      for (let i = 0; i < n; i++) xn[i] = x[i] + alpha * d[i];
      project(xn, lo, hi);
      fn = await fOnly(xn);
      evaluations++;
      if (Number.isFinite(fn) && fn <= fmax + gamma * alpha * gtd) {
        accepted = true;
        break;
      }
      const denom = 2 * (fn - f - alpha * gtd);
      const at = Number.isFinite(denom) && denom > 0 ? (-gtd * alpha * alpha) / denom : -1;
      alpha = at >= 0.1 * alpha && at <= 0.9 * alpha ? at : alpha / 2;
    }
    iterations++;
    if (!accepted) break;
    const next = await fg(xn);
    evaluations++;
    const gn = clean(next.g);
    let sts = 0,
      sty = 0;
    for (let i = 0; i < n; i++) {
      const s = xn[i] - x[i];
      sts += s * s;
      sty += s * (gn[i] - g[i]);
    }
    lambda = sty > 0 ? Math.min(lmax, Math.max(lmin, sts / sty)) : lmax;
    x = Float64Array.from(xn);
    f = next.f;
    g = gn;
    history.push(f);
    if (f < best.f) best = { x: Float64Array.from(x), f };
    pg = pgNorm(x, g, 1);
  }
  return { x: best.x, f: best.f, iterations, evaluations, converged, history };
}
