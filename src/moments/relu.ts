/**
 * Moments of ReLUs of Gaussians, in float64.
 *
 * Notation: z ~ N(m, s^2), a = m / s; for a pair, (z_u, z_v) jointly Gaussian with correlation
 * rho, r = sqrt(1 - rho^2). x, y are standard normals with corr(x, y) = rho, so
 * relu(z_u) = s_u relu(a_u + x). phi, Phi, Phi2 are from ./special.ts.
 *
 * Two scalar functions carry everything:
 *   psi(a) = E[relu(a + x)]   = phi(a) + a Phi(a)
 *   chi(a) = E[relu(a + x)^2] = (a^2 + 1) Phi(a) + a phi(a)
 * and for pairs the "correction"
 *   c(a, b; rho) = Cov(relu(a + x), relu(b + y)) - rho Phi(a) Phi(b),
 * which is what is left of the ReLU pair covariance after the linear (Stein) part. It obeys
 *   c(a, b; rho) = int_0^rho (rho - t) phi2(a, b; t) dt                                   (*)
 * (Price's theorem d/drho E[f(x)g(y)] = E[f'(x)g'(y)] applied twice: d/drho Cov = Phi2(a, b; rho),
 * d/drho Phi2 = phi2 (Plackett 1954), and c = 0, dc/drho = 0 at rho = 0), so
 *   c(a, b; rho) = c(-a, b; -rho) = c(a, -b; -rho) = c(-a, -b; rho),
 * c >= 0 (over t between 0 and rho the factor rho - t has the sign of the direction of integration),
 * c ~ phi(a) phi(b) rho^2 / 2 for small rho, and c vanishes when either unit is surely on or surely off
 * (|a| -> inf).
 */
import { GL_W, GL_X, Phi, Phi2, glRuleFor, millsComplement, phi } from './special.js';

const FOUR_PI = 4 * Math.PI;
const TWO_PI = 2 * Math.PI;

/**
 * psi(a) = E[relu(a + x)], x ~ N(0, 1).
 * Formula: psi(a) = phi(a) + a Phi(a) (Bibi et al. 2018, Theorem 1, standardized). For a < 0 the
 * two terms cancel (psi ~ phi(a)/a^2), so it is evaluated as psi(a) = phi(a) (1 - |a| R(|a|)) with
 * the Mills complement computed without cancellation (special.ts: millsComplement).
 */
export function reluPsi(a: number): number {
  if (a >= 0) return a === Infinity ? Infinity : a * Phi(a) + phi(a);
  if (a === -Infinity) return 0;
  return phi(a) * millsComplement(-a);
}

/**
 * chi(a) = E[relu(a + x)^2], x ~ N(0, 1).
 * Formula: chi(a) = (a^2 + 1) Phi(a) + a phi(a) (second moment of a truncated normal; the
 * standardized form of E[relu(z)^2] = (m^2 + s^2) Phi(a) + m s phi(a)). For a = -y < -1 it is
 * evaluated as phi(y) (1 - (y^2 + 1) g(y)) / y with g = millsComplement(y) = 1 - y R(y), which
 * loses only ~log10(y^2/2) digits (chi ~ 2 phi(y) / y^3).
 */
export function reluChi(a: number): number {
  if (a >= -1) return a === Infinity ? Infinity : (a * a + 1) * Phi(a) + a * phi(a);
  if (a === -Infinity) return 0;
  const y = -a;
  return (phi(y) * (1 - (y * y + 1) * millsComplement(y))) / y;
}

/**
 * Var(relu(a + x)) - Phi(a)^2 = c(a, a; 1), the diagonal of the correction, for any finite a.
 * Formula: with y = |a|, c(a, a; 1) = chi(-y) - psi(-y)^2 - Phi(-y)^2, by evenness in a: from
 * relu(t) = t + relu(-t) and Stein's lemma Cov(x, relu(-a - x)) = -Phi(-a),
 *   Var relu(a + x) = 1 - 2 Phi(-a) + Var relu(-a + x)   and   1 - 2 Phi(-a) - Phi(a)^2 = -Phi(-a)^2,
 * so Var relu(a + x) - Phi(a)^2 = Var relu(-a + x) - Phi(-a)^2.
 * All three terms are small when |a| is large, so no digits are lost there.
 */
export function reluVarianceCorrection(a: number): number {
  const y = -Math.abs(a);
  if (y === -Infinity) return 0;
  const P = Phi(y);
  const m = reluPsi(y);
  return reluChi(y) - m * m - P * P;
}

/**
 * E[relu(z)], z ~ N(m, s^2).
 * Formula (Bibi, Alfadly, Ghanem, CVPR 2018, Theorem 1): E[relu(z)] = m Phi(m/s) + s phi(m/s),
 * evaluated as s psi(m/s) (see reluPsi) for m < 0; s = 0 gives max(m, 0).
 */
export function reluMean(m: number, s: number): number {
  if (!(s > 0)) return m > 0 ? m : 0;
  const a = m / s;
  if (a >= 0) return m * Phi(a) + s * phi(a);
  return s * reluPsi(a);
}

/**
 * E[relu(z)^2], z ~ N(m, s^2).
 * Formula: E[relu(z)^2] = (m^2 + s^2) Phi(m/s) + m s phi(m/s) (truncated-normal second moment;
 * docs/ARCHITECTURE.md, section 3), evaluated as s^2 chi(m/s); s = 0 gives max(m, 0)^2.
 */
export function reluSecondMoment(m: number, s: number): number {
  if (!(s > 0)) return m > 0 ? m * m : 0;
  return s * s * reluChi(m / s);
}

/**
 * Var(relu(z)), z ~ N(m, s^2), without the cancellation of E[relu^2] - E[relu]^2.
 * Formula: Var relu(z) = s^2 (Phi(a)^2 + c(a, a; 1)) with c from reluVarianceCorrection.
 */
export function reluVariance(m: number, s: number): number {
  if (!(s > 0)) return 0;
  const a = m / s;
  const P = Phi(a);
  return s * s * (P * P + reluVarianceCorrection(a));
}

/**
 * The paper's zero-mean second moment: E[relu(z_u) relu(z_v)] for m_u = m_v = 0.
 * Formula (Bibi, Alfadly, Ghanem, CVPR 2018, Theorem 2):
 *   E[relu(z_u) relu(z_v)] = s_u s_v / (2 pi) (sqrt(1 - rho^2) + rho (pi - arccos rho)).
 */
export function reluCrossMomentPaper(su: number, sv: number, rho: number): number {
  const r = clampRho(rho);
  return ((su * sv) / TWO_PI) * (Math.sqrt((1 - r) * (1 + r)) + r * (Math.PI - Math.acos(r)));
}

/**
 * The paper's zero-mean pair correction c(0, 0; rho) (see the file comment).
 * Formula: with the paper's Theorem 2 moment, c(0, 0; rho) = E0 - 1/(2 pi) - rho / 4
 *   = (sqrt(1 - rho^2) + rho asin(rho) - 1) / (2 pi)
 *   = (rho asin(rho) - rho^2 / (1 + sqrt(1 - rho^2))) / (2 pi)       (no cancellation at small rho).
 * (pi - arccos rho = pi/2 + asin rho.)
 */
export function reluPairCorrectionPaper(rho: number): number {
  const r = clampRho(rho);
  const q = Math.sqrt((1 - r) * (1 + r));
  return (r * Math.asin(r) - (r * r) / (1 + q)) / TWO_PI;
}

/**
 * E[relu(a + x) relu(b + y)] for standard normals with correlation rho: the exact general-mean
 * second moment, literally as published.
 * Formula (Rosenbaum 1961, "Moments of a truncated bivariate normal distribution", JRSS B 23;
 * docs/ARCHITECTURE.md, section 3), r = sqrt(1 - rho^2):
 *   (a b + rho) Phi2(a, b; rho) + a phi(b) Phi((a - rho b)/r) + b phi(a) Phi((b - rho a)/r)
 *   + r phi(a) phi((b - rho a)/r).
 * Limits (r = 0): rho = 1: (a b + 1) Phi(min) + max(a, b) phi(min(a, b));
 *                 rho = -1: (a b - 1) max(0, Phi(a) + Phi(b) - 1) + [a + b > 0] (b phi(a) + a phi(b)).
 */
export function rosenbaumStd(a: number, b: number, rho: number): number {
  const r0 = clampRho(rho);
  const r = Math.sqrt((1 - r0) * (1 + r0));
  if (r === 0) {
    if (r0 > 0) {
      const lo = Math.min(a, b);
      return (a * b + 1) * Phi(lo) + Math.max(a, b) * phi(lo);
    }
    const pp = Phi(a) + Phi(b) - 1;
    return (a * b - 1) * Math.max(0, pp) + (a + b > 0 ? b * phi(a) + a * phi(b) : 0);
  }
  const ta = (a - r0 * b) / r;
  const tb = (b - r0 * a) / r;
  return (a * b + r0) * Phi2(a, b, r0) + a * phi(b) * Phi(ta) + b * phi(a) * Phi(tb) + r * phi(a) * phi(tb);
}

/**
 * E[relu(z_u) relu(z_v)] for z ~ N((m_u, m_v), [[s_u^2, rho s_u s_v], [., s_v^2]]), by Rosenbaum's
 * formula (rosenbaumStd) scaled: s_u s_v E[relu(a_u + x) relu(a_v + y)]. s = 0 makes that factor
 * the constant max(m, 0).
 */
export function reluCrossMoment(mu: number, su: number, mv: number, sv: number, rho: number): number {
  if (!(su > 0)) return (mu > 0 ? mu : 0) * reluMean(mv, sv);
  if (!(sv > 0)) return (mv > 0 ? mv : 0) * reluMean(mu, su);
  return su * sv * rosenbaumStd(mu / su, mv / sv, rho);
}

/**
 * c(a, b; rho) by Gauss-Legendre on the integral (*) of the file comment, written with t = sin(theta)
 * as Genz writes Plackett's integral:
 *   c = (1/2pi) int_0^{asin rho} (rho - sin th) exp(-(a^2 + b^2 - 2ab sin th) / (2 cos^2 th)) dth,
 * with Genz's 6/12/20-point rules for |rho| < 0.3 / 0.75 / else. Valid for |rho| < 0.925, where
 * the integrand is smooth; all its terms have one sign, so there is no cancellation and
 * the result is accurate relative to sqrt(c(a,a;1) c(b,b;1)) to ~2e-13 (measured against 40-digit
 * quadrature for |a|, |b| <= 8.5).
 */
export function pairCorrectionQuadrature(a: number, b: number, rho: number): number {
  if (rho === 0) return 0;
  const g = glRuleFor(Math.abs(rho));
  const xs = GL_X[g];
  const ws = GL_W[g];
  const asr = Math.asin(rho);
  const hs = (a * a + b * b) / 2;
  const hk = a * b;
  let sum = 0;
  for (let i = 0; i < xs.length; i++) {
    let sn = Math.sin((asr * (1 - xs[i])) / 2);
    let f = (rho - sn) * Math.exp((sn * hk - hs) / (1 - sn * sn));
    sn = Math.sin((asr * (1 + xs[i])) / 2);
    f += (rho - sn) * Math.exp((sn * hk - hs) / (1 - sn * sn));
    sum += ws[i] * f;
  }
  return (sum * asr) / FOUR_PI;
}

/**
 * c(a, b; rho) for |rho| >= 0.925 (where the quadrature's integrand has a boundary layer) from
 * Rosenbaum's closed form: c = E[relu(a+x) relu(b+y)] - psi(a) psi(b) - rho Phi(a) Phi(b), after
 * the symmetries c(a, b; rho) = c(-a, b; -rho) = c(a, -b; -rho) have made a, b <= 0 (the side
 * where every term is small, so the subtraction does not lose the digits it would for a, b > 0).
 */
export function pairCorrectionClosedForm(a: number, b: number, rho: number): number {
  let r = clampRho(rho);
  if (a > 0) {
    a = -a;
    r = -r;
  }
  if (b > 0) {
    b = -b;
    r = -r;
  }
  return rosenbaumStd(a, b, r) - reluPsi(a) * reluPsi(b) - r * Phi(a) * Phi(b);
}

/**
 * c(a, b; rho) = Cov(relu(a + x), relu(b + y)) - rho Phi(a) Phi(b) for finite a, b (see the file
 * comment): quadrature of (*) for |rho| < 0.925, Rosenbaum's closed form otherwise. a = b with
 * rho = 1 is the variance case (reluVarianceCorrection).
 */
export function reluPairCorrection(a: number, b: number, rho: number): number {
  const r = clampRho(rho);
  if (r === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return 0;
  if (Math.abs(r) < 0.925) return pairCorrectionQuadrature(a, b, r);
  if (r === 1 && a === b) return reluVarianceCorrection(a);
  return pairCorrectionClosedForm(a, b, r);
}

/**
 * Cov(relu(z_u), relu(z_v)) in the centred form used by the network engine:
 *   K_uv = s_u s_v (rho Phi(a_u) Phi(a_v) + c(a_u, a_v; rho)),
 * i.e. Stein's lemma (Cov(relu(z_u), z_v) = Phi(a_u) S_uv) for the linear part plus the correction.
 * Exact for any means (it is Rosenbaum's formula minus the product of the means, rearranged).
 * s = 0 makes relu(z) a constant, so K = 0.
 */
export function reluCovariance(mu: number, su: number, mv: number, sv: number, rho: number): number {
  if (!(su > 0) || !(sv > 0)) return 0;
  const a = mu / su;
  const b = mv / sv;
  const r = clampRho(rho);
  return su * sv * (r * Phi(a) * Phi(b) + reluPairCorrection(a, b, r));
}

export function clampRho(rho: number): number {
  return rho > 1 ? 1 : rho < -1 ? -1 : rho;
}
