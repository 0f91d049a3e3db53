/**
 * The beta and binomial functions behind exact (Clopper-Pearson) binomial confidence bounds, in
 * float64: log Gamma, the regularized incomplete beta function I_x(a, b), its inverse, and the
 * Clopper-Pearson bounds built on it. `certify` (randomized smoothing, Cohen et al. 2019) needs the
 * one-sided lower bound on the top class's probability; `sweep` the two-sided interval of a Monte
 * Carlo flip rate.
 *
 * Nothing here allocates.
 */

/** Lanczos coefficients for g = 7, n = 9 (Numerical Recipes 3rd ed., section 6.1; Godfrey's values). */
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7,
];
const HALF_LOG_2PI = 0.9189385332046728;

/**
 * log Gamma(x) for x > 0.
 *
 * Formula: for x >= 20, Stirling's series log Gamma(x) = (x - 1/2) log x - x + log(2 pi)/2
 * + 1/(12 x) - 1/(360 x^3) + 1/(1260 x^5) - 1/(1680 x^7) + 1/(1188 x^9) (Abramowitz and Stegun
 * 6.1.41; the truncation error is below the next term, 691/(360360 x^11) < 1e-17 at x = 20);
 * below 20, the Lanczos approximation Gamma(x) = sqrt(2 pi) t^(x - 1/2) e^(-t) A_g(x),
 * t = x + g - 1/2 (Lanczos 1964; Numerical Recipes 3rd ed., section 6.1; relative error < 1e-15),
 * with Gamma(x) = Gamma(x + 1) / x for x < 1/2 to stay on the approximation's accurate side.
 */
export function logGamma(x: number): number {
  if (!(x > 0)) return Number.NaN;
  if (x >= 20) {
    const r = 1 / x;
    const r2 = r * r;
    const series = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))));
    return (x - 0.5) * Math.log(x) - x + HALF_LOG_2PI + series;
  }
  if (x < 0.5) return logGamma(x + 1) - Math.log(x);
  const z = x - 1;
  let a = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i] / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return HALF_LOG_2PI + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** log B(a, b) = log Gamma(a) + log Gamma(b) - log Gamma(a + b). */
export function logBeta(a: number, b: number): number {
  return logGamma(a) + logGamma(b) - logGamma(a + b);
}

/**
 * The continued fraction of I_x(a, b), evaluated by the modified Lentz method (Numerical Recipes
 * 3rd ed., section 6.4, betacf): I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * 1/(1 + d1/(1 + d2/(1 + ...)))
 * with d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)), d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
 * Converges fast for x < (a + 1)/(a + b + 2), in O(sqrt(max(a, b))) terms.
 */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const TINY = 1e-300;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 100000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return h;
}

/**
 * The regularized incomplete beta function I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0,
 * 0 <= x <= 1: the distribution function of Beta(a, b) at x.
 *
 * Formula: the continued fraction above for x < (a + 1)/(a + b + 2), else the symmetry
 * I_x(a, b) = 1 - I_{1-x}(b, a) (Numerical Recipes 3rd ed., section 6.4, eq. 6.4.5 and betai).
 * The prefactor x^a (1 - x)^b / B(a, b) is formed in logs (log1p for log(1 - x)).
 */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0) || !(x >= 0 && x <= 1)) return Number.NaN;
  if (x === 0) return 0;
  if (x === 1) return 1;
  const logFront = a * Math.log(x) + b * Math.log1p(-x) - logBeta(a, b);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(logFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(logFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/**
 * The inverse of I_x(a, b) in x: the p-quantile of Beta(a, b), for 0 <= p <= 1.
 *
 * Method: bisection on [0, 1] (I_x is continuous and increasing in x), 200 halvings or until the
 * bracket stops shrinking in float64; the answer is within one ulp-scale bracket of the root. Slow
 * beside Newton's method but it cannot diverge, and certify calls it once per input.
 */
export function inverseRegularizedBeta(p: number, a: number, b: number): number {
  if (!(a > 0 && b > 0) || !(p >= 0 && p <= 1)) return Number.NaN;
  if (p === 0) return 0;
  if (p === 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 200; i++) {
    const mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    if (regularizedBeta(mid, a, b) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/**
 * One-sided Clopper-Pearson lower confidence bound at level 1 - alpha on a binomial proportion p,
 * from k successes in n trials: the p_L with P(Bin(n, p_L) >= k) = alpha, which is the alpha
 * quantile of Beta(k, n - k + 1) (Clopper and Pearson 1934; the Beta form by the identity
 * P(Bin(n, p) >= k) = I_p(k, n - k + 1)). 0 when k = 0; alpha^(1/n) when k = n (closed form).
 * This is Cohen, Rosenfeld and Kolter's (2019) LowerConfBound (statsmodels'
 * proportion_confint(k, n, alpha=2 alpha, method="beta")[0]).
 */
export function clopperPearsonLower(k: number, n: number, alpha: number): number {
  if (!(Number.isInteger(k) && Number.isInteger(n) && n >= 1 && k >= 0 && k <= n) || !(alpha > 0 && alpha < 1)) return Number.NaN;
  if (k === 0) return 0;
  if (k === n) return Math.exp(Math.log(alpha) / n);
  return inverseRegularizedBeta(alpha, k, n - k + 1);
}

/**
 * One-sided Clopper-Pearson upper bound at level 1 - alpha: the p_U with P(Bin(n, p_U) <= k) = alpha,
 * the 1 - alpha quantile of Beta(k + 1, n - k); by symmetry 1 - clopperPearsonLower(n - k, n, alpha).
 */
export function clopperPearsonUpper(k: number, n: number, alpha: number): number {
  return 1 - clopperPearsonLower(n - k, n, alpha);
}

/** Two-sided Clopper-Pearson interval at level 1 - alpha: each side at alpha / 2. */
export function clopperPearsonInterval(k: number, n: number, alpha: number): [number, number] {
  return [clopperPearsonLower(k, n, alpha / 2), clopperPearsonUpper(k, n, alpha / 2)];
}
