/**
 * Gaussian special functions in float64: the standard normal density phi, its distribution
 * function Phi (with full relative accuracy far into both tails), the bivariate normal
 * distribution function Phi2, Mills-ratio helpers that the ReLU moments need without
 * cancellation, and the normal quantile function.
 *
 * Nothing here allocates; every function is safe to call in the inner pair loop.
 */

/** sqrt(2 pi) */
export const SQRT_2PI = 2.5066282746310002;
/** 1 / sqrt(2 pi) */
export const INV_SQRT_2PI = 0.3989422804014327;
const TWO_PI = 2 * Math.PI;
/** sqrt(32): Cody's boundary between the middle and the tail approximation. */
const SQRT_32 = 5.656854249492381;

/**
 * exp(-y^2 / 2) with relative accuracy ~1e-16 even for large |y|.
 *
 * Formula: y = y0 + (y - y0) with y0 = trunc(16 y) / 16, so y^2 = y0^2 + del with
 * del = (y - y0)(y + y0); y0^2 is exact in float64 (y0 has 4 fractional bits), so the rounding
 * error of y^2 (which exp would amplify by y^2 / 2) is avoided.
 * Source: W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
 * (1969), and the same splitting in his ANORM routine (Cody 1993, ACM TOMS Algorithm 715).
 */
function expHalfSquare(y: number): number {
  const y0 = Math.trunc(y * 16) / 16;
  const del = (y - y0) * (y + y0);
  return Math.exp(-0.5 * y0 * y0) * Math.exp(-0.5 * del);
}

/**
 * Standard normal density.
 *
 * Formula: phi(x) = exp(-x^2 / 2) / sqrt(2 pi), with the exponent split as in expHalfSquare so
 * the relative error stays ~1e-16 where the value is a normal double (|x| < 37.5).
 */
export function phi(x: number): number {
  const y = Math.abs(x);
  if (y < 1) return INV_SQRT_2PI * Math.exp(-0.5 * x * x);
  if (!(y < 40)) return Number.isNaN(y) ? Number.NaN : 0;
  return INV_SQRT_2PI * expHalfSquare(y);
}

// Coefficients of W. J. Cody's ANORM (ACM TOMS Algorithm 715, 1993): rational Chebyshev
// approximations of the normal distribution function, the Phi form of his erf/erfc
// approximations (Math. Comp. 23, 1969). Maximum relative error ~1e-16 in each range.
const ANORM_A = [2.2352520354606839287, 161.02823106855587881, 1067.6894854603709582, 18154.981253343561249, 0.065682337918207449113];
const ANORM_B = [47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956];
const ANORM_C = [
  0.39894151208813466764, 8.8831497943883759412, 93.506656132177855979, 597.27027639480026226, 2494.5375852903726711, 6848.1904505362823326,
  11602.651437647350124, 9842.7148383839780218, 1.0765576773720192317e-8,
];
const ANORM_D = [
  22.266688044328115691, 235.38790178262499861, 1519.377599407554805, 6485.558298266760755, 18615.571640885098091, 34900.952721145977266, 38912.003286093271411,
  19685.429676859990727,
];
const ANORM_P = [0.21589853405795699, 0.1274011611602473639, 0.022235277870649807, 0.001421619193227893466, 2.9112874951168792e-5, 0.02307344176494017303];
const ANORM_Q = [1.28426009614491121, 0.468238212480865118, 0.0659881378689285515, 0.00378239633202758244, 7.29751555083966205e-5];

/**
 * Cody's tail quantity for y > sqrt(32): returns t(y) such that
 *   Phi(-y) = exp(-y^2/2) (1/sqrt(2 pi) - t(y)) / y      and      1 - y R(y) = sqrt(2 pi) t(y),
 * where R(y) = Phi(-y) / phi(y) is Mills' ratio. t(y) = (1/y^2) P(1/y^2) / Q(1/y^2).
 * Source: Cody (1993), ACM TOMS 715, routine ANORM, third range.
 */
function codyTail(y: number): number {
  const xsq = 1 / (y * y);
  let xnum = ANORM_P[5] * xsq;
  let xden = xsq;
  for (let i = 0; i < 4; i++) {
    xnum = (xnum + ANORM_P[i]) * xsq;
    xden = (xden + ANORM_Q[i]) * xsq;
  }
  return (xsq * (xnum + ANORM_P[4])) / (xden + ANORM_Q[4]);
}

/**
 * Cody's middle-range rational for 0.674 < y <= sqrt(32): Phi(-y) = exp(-y^2/2) * mid(y).
 * Source: Cody (1993), ACM TOMS 715, routine ANORM, second range.
 */
function codyMiddle(y: number): number {
  let xnum = ANORM_C[8] * y;
  let xden = y;
  for (let i = 0; i < 7; i++) {
    xnum = (xnum + ANORM_C[i]) * y;
    xden = (xden + ANORM_D[i]) * y;
  }
  return (xnum + ANORM_C[7]) / (xden + ANORM_D[7]);
}

/**
 * Standard normal distribution function Phi(x) = P(Z <= x).
 *
 * Formula: Phi(x) = erfc(-x / sqrt 2) / 2, evaluated with W. J. Cody's rational Chebyshev
 * approximations written directly in x (ANORM, ACM TOMS Algorithm 715, 1993): |x| <= 0.674:
 * Phi = 1/2 + x A(x^2)/B(x^2); 0.674 < |x| <= sqrt(32): Phi(-|x|) = exp(-x^2/2) C(|x|)/D(|x|);
 * |x| > sqrt(32): Phi(-|x|) = exp(-x^2/2) (1/sqrt(2pi) - t(1/x^2)) / |x|. The lower tail is
 * computed directly (never as 1 - Phi(|x|)), so Phi keeps ~1e-16 relative accuracy down to
 * x = -37.5 (Phi ~ 1e-308) and degrades gracefully through the subnormal range; the upper side
 * is 1 - (small tail), accurate to 1e-16 absolute.
 */
export function Phi(x: number): number {
  const y = Math.abs(x);
  if (y <= 0.67448975) {
    let xnum = 0;
    let xden = 0;
    if (y > 1.1102230246251565e-16) {
      const xsq = x * x;
      xnum = ANORM_A[4] * xsq;
      xden = xsq;
      for (let i = 0; i < 3; i++) {
        xnum = (xnum + ANORM_A[i]) * xsq;
        xden = (xden + ANORM_B[i]) * xsq;
      }
    }
    return 0.5 + (x * (xnum + ANORM_A[3])) / (xden + ANORM_B[3]);
  }
  let tail: number;
  if (y <= SQRT_32) {
    tail = expHalfSquare(y) * codyMiddle(y);
  } else if (y < 40) {
    tail = (expHalfSquare(y) * (INV_SQRT_2PI - codyTail(y))) / y;
  } else if (y >= 40) {
    tail = 0;
  } else {
    return Number.NaN;
  }
  return x > 0 ? 1 - tail : tail;
}

/**
 * Complementary Mills quantity g(y) = 1 - y R(y) for y >= 0, R(y) = Phi(-y)/phi(y) Mills' ratio.
 * It is the factor in E[relu(x - y)] = phi(y) g(y) (x ~ N(0,1)), which for large y is
 * ~ 1/y^2: computing it as 1 - y R(y) would lose ~2 log10(y) digits. For y > sqrt(32) Cody's
 * tail rational gives it with no cancellation: g(y) = sqrt(2 pi) t(y) (see codyTail).
 * For 0.674 < y <= sqrt(32): g = 1 - y sqrt(2pi) mid(y) (cancellation at most ~33x, ~1e-15).
 * Source: Cody (1993) ANORM; R(y) asymptotics in Abramowitz & Stegun 26.2.12.
 */
export function millsComplement(y: number): number {
  if (y > SQRT_32) {
    if (!Number.isFinite(y)) return 0;
    return SQRT_2PI * codyTail(y);
  }
  if (y > 0.67448975) return 1 - y * SQRT_2PI * codyMiddle(y);
  return 1 - (y * Phi(-y)) / phi(y);
}

/**
 * Gauss-Legendre half-rules on [-1, 1] (nodes x > 0, each used as +x and -x) with 3, 6 and 10
 * nodes per half: the 6-, 12- and 20-point rules of Drezner and Wesolowsky (1990) as tabulated by
 * Genz (2004). Exported for the ReLU pair integrals, which use the same rules.
 */
export const GL_X: readonly Float64Array[] = [
  Float64Array.of(0.9324695142031522, 0.6612093864662647, 0.238619186083197),
  Float64Array.of(0.9815606342467191, 0.904117256370475, 0.769902674194305, 0.5873179542866171, 0.3678314989981802, 0.1252334085114692),
  Float64Array.of(
    0.9931285991850949,
    0.9639719272779138,
    0.9122344282513259,
    0.8391169718222188,
    0.7463319064601508,
    0.636053680726515,
    0.5108670019508271,
    0.3737060887154196,
    0.2277858511416451,
    0.07652652113349733,
  ),
];
export const GL_W: readonly Float64Array[] = [
  Float64Array.of(0.1713244923791705, 0.3607615730481384, 0.4679139345726904),
  Float64Array.of(0.04717533638651177, 0.1069393259953183, 0.1600783285433464, 0.2031674267230659, 0.2334925365383547, 0.2491470458134029),
  Float64Array.of(
    0.01761400713915212,
    0.04060142980038694,
    0.06267204833410906,
    0.08327674157670475,
    0.1019301198172404,
    0.1181945319615184,
    0.1316886384491766,
    0.1420961093183821,
    0.1491729864726037,
    0.1527533871307259,
  ),
];

/** Which Gauss-Legendre rule Genz uses for |rho|: 0 (6 points) below 0.3, 1 (12) below 0.75, else 2 (20). */
export function glRuleFor(absRho: number): 0 | 1 | 2 {
  return absRho < 0.3 ? 0 : absRho < 0.75 ? 1 : 2;
}

/**
 * Upper bivariate normal probability L(h, k; r) = P(X > h, Y > k), corr(X, Y) = r.
 *
 * Formula (Genz 2004, "Numerical computation of rectangular bivariate and trivariate normal and t
 * probabilities", Statistics and Computing 14, 251-260; the Drezner-Wesolowsky method):
 *  - |r| < 0.925: Plackett's identity dL/dr = phi2(h, k; r) integrated from 0 with t = sin(theta):
 *      L = Phi(-h) Phi(-k) + (1/2pi) int_0^{asin r} exp(-(h^2 + k^2 - 2hk sin t) / (2 cos^2 t)) dt,
 *    by 6/12/20-point Gauss-Legendre for |r| < 0.3 / < 0.75 / else.
 *  - |r| >= 0.925: the integral from r to +-1 after the substitution x = sqrt(1 - t^2), with the
 *    singular part (h - k)^2 / (2(1 - t^2)) removed and integrated in closed form (a two-term
 *    Taylor expansion) and the remainder by Gauss-Legendre; then L(h,k;1) = Phi(-max(h,k)) and
 *    L(h,k;-1) = max(0, Phi(-h) - Phi(k)) are added back.
 * Absolute error ~1e-16 (Genz 2004, Table 1). r = +-1 are handled exactly.
 */
function bvnUpper(h: number, k: number, r: number): number {
  if (h === Infinity || k === Infinity) return 0;
  if (h === -Infinity) return k === -Infinity ? 1 : Phi(-k);
  if (k === -Infinity) return Phi(-h);
  if (r === 0) return Phi(-h) * Phi(-k);
  const ar = Math.abs(r);
  const g = glRuleFor(ar);
  const xs = GL_X[g];
  const ws = GL_W[g];
  const lg = xs.length;
  let hk = h * k;
  let bvn = 0;
  if (ar < 0.925) {
    const hs = (h * h + k * k) / 2;
    const asr = Math.asin(r);
    for (let i = 0; i < lg; i++) {
      let sn = Math.sin((asr * (1 - xs[i])) / 2);
      bvn += ws[i] * Math.exp((sn * hk - hs) / (1 - sn * sn));
      sn = Math.sin((asr * (1 + xs[i])) / 2);
      bvn += ws[i] * Math.exp((sn * hk - hs) / (1 - sn * sn));
    }
    return Math.max(0, Math.min(1, (bvn * asr) / (2 * TWO_PI) + Phi(-h) * Phi(-k)));
  }
  if (r < 0) {
    k = -k;
    hk = -hk;
  }
  if (ar < 1) {
    const as = (1 - r) * (1 + r);
    let a = Math.sqrt(as);
    const bs = (h - k) * (h - k);
    const c = (4 - hk) / 8;
    const d = (12 - hk) / 16;
    let asr = -(bs / as + hk) / 2;
    if (asr > -100) bvn = a * Math.exp(asr) * (1 - (c * (bs - as) * (1 - (d * bs) / 5)) / 3 + (c * d * as * as) / 5);
    if (-hk < 100) {
      const b = Math.sqrt(bs);
      const sp = SQRT_2PI * Phi(-b / a);
      bvn -= Math.exp(-hk / 2) * sp * b * (1 - (c * bs * (1 - (d * bs) / 5)) / 3);
    }
    a /= 2;
    for (let i = 0; i < lg; i++) {
      for (let is = -1; is <= 1; is += 2) {
        const x = a * (is * xs[i] + 1);
        const xsq = x * x;
        const rs = Math.sqrt(1 - xsq);
        asr = -(bs / xsq + hk) / 2;
        if (asr > -100) {
          const sp = 1 + c * xsq * (1 + d * xsq);
          const ep = Math.exp((-hk * (1 - rs)) / (2 * (1 + rs))) / rs;
          bvn += a * ws[i] * Math.exp(asr) * (ep - sp);
        }
      }
    }
    bvn = -bvn / TWO_PI;
  }
  if (r > 0) bvn += Phi(-Math.max(h, k));
  else bvn = -bvn + Math.max(0, Phi(-h) - Phi(-k));
  return Math.max(0, Math.min(1, bvn));
}

/**
 * Bivariate standard normal distribution function Phi2(h, k; rho) = P(X <= h, Y <= k) with
 * corr(X, Y) = rho, to ~1e-15 absolute (Genz 2004; see bvnUpper): Phi2(h, k; rho) = L(-h, -k; rho).
 * Limits: h or k = -Infinity gives 0, +Infinity reduces to Phi of the other; rho = 1 gives
 * Phi(min(h, k)) and rho = -1 gives max(0, Phi(h) + Phi(k) - 1) (exactly, through Genz's branch).
 * rho is clamped to [-1, 1] (callers form it as a ratio that can round past +-1); NaN in, NaN out.
 */
export function Phi2(h: number, k: number, rho: number): number {
  if (Number.isNaN(h) || Number.isNaN(k) || Number.isNaN(rho)) return Number.NaN;
  const r = rho > 1 ? 1 : rho < -1 ? -1 : rho;
  return bvnUpper(-h, -k, r);
}

// Wichura's AS 241 (PPND16) coefficients, Applied Statistics 37 (1988) 477-484.
const AS241_A = [
  3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
  33430.575583588128105, 2509.0809287301226727,
];
const AS241_B = [
  1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867, 39307.89580009271061, 28729.085735721942674,
  5226.495278852854561,
];
const AS241_C = [
  1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177,
  0.0227238449892691845833, 7.7454501427834140764e-4,
];
const AS241_D = [
  1, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4,
  1.05075007164441684324e-9,
];
const AS241_E = [
  6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123, 0.026532189526576123093, 0.0012426609473880784386,
  2.71155556874348757815e-5, 2.01033439929228813265e-7,
];
const AS241_F = [
  1, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7,
  2.04426310338993978564e-15,
];

function horner(c: readonly number[], x: number): number {
  let v = c[c.length - 1];
  for (let i = c.length - 2; i >= 0; i--) v = v * x + c[i];
  return v;
}

/**
 * Normal quantile Phi^{-1}(p) for 0 < p < 1 (-Infinity at 0, +Infinity at 1, NaN outside).
 * Formula: Wichura (1988), Algorithm AS 241 (PPND16), relative accuracy ~1e-16: a rational in
 * (p - 1/2)^2 for |p - 1/2| <= 0.425, else rationals in r = sqrt(-log(min(p, 1-p))).
 */
export function PhiInv(p: number): number {
  if (!(p >= 0 && p <= 1)) return Number.NaN;
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (q * horner(AS241_A, r)) / horner(AS241_B, r);
  }
  let r = q < 0 ? p : 1 - p;
  r = Math.sqrt(-Math.log(r));
  let v: number;
  if (r <= 5) {
    r -= 1.6;
    v = horner(AS241_C, r) / horner(AS241_D, r);
  } else {
    r -= 5;
    v = horner(AS241_E, r) / horner(AS241_F, r);
  }
  return q < 0 ? -v : v;
}
