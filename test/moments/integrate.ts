/**
 * Independent numerical references for the moments tests: adaptive Gauss-Kronrod (7/15) quadrature
 * (QUADPACK's QK15 rule, Piessens et al. 1983), a test-local seeded normal generator (mulberry32 +
 * Box-Muller, deliberately not the library's xoshiro/polar code), and small dense helpers.
 */

// QK15: Kronrod nodes (descending) and weights; Gauss 7-point weights at the odd Kronrod nodes.
const XGK = [
  0.991455371120812639206854697526329, 0.949107912342758524526189684047851, 0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
  0.586087235467691130294144845693013, 0.405845151377397166906606412076961, 0.207784955007898467600689403773245, 0.0,
];
const WGK = [
  0.02293532201052922496373200805897, 0.063092092629978553290700663189204, 0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
  0.16900472663926790282658342659855, 0.190350578064785409913256402421014, 0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
];
const WG = [0.129484966168869693270611432679082, 0.27970539148927666790146777142378, 0.381830050505118944950369775488975, 0.417959183673469387755102040816327];

function qk15(f: (x: number) => number, a: number, b: number): [number, number] {
  const c = 0.5 * (a + b);
  const h = 0.5 * (b - a);
  const fc = f(c);
  let rk = fc * WGK[7];
  let rg = fc * WG[3];
  for (let j = 0; j < 7; j++) {
    const dx = h * XGK[j];
    const s = f(c - dx) + f(c + dx);
    rk += WGK[j] * s;
    if (j % 2 === 1) rg += WG[(j - 1) / 2] * s;
  }
  return [rk * h, Math.abs((rk - rg) * h)];
}

/**
 * int_a^b f by globally adaptive QK15 (QUADPACK QAG style): keep bisecting the interval with the
 * largest error estimate until the summed estimate is <= max(absTol, relTol |I|) or 4000 pieces.
 */
export function integrate(f: (x: number) => number, a: number, b: number, relTol = 1e-13, absTol = 0): number {
  if (!(b > a)) return 0;
  const lo: number[] = [a];
  const hi: number[] = [b];
  const [k0, e0] = qk15(f, a, b);
  const val: number[] = [k0];
  const err: number[] = [e0];
  let total = k0;
  let totalErr = e0;
  while (totalErr > Math.max(absTol, relTol * Math.abs(total)) && val.length < 4000) {
    let w = 0;
    for (let i = 1; i < err.length; i++) if (err[i] > err[w]) w = i;
    const m = 0.5 * (lo[w] + hi[w]);
    if (!(m > lo[w] && m < hi[w])) break;
    const [k1, e1] = qk15(f, lo[w], m);
    const [k2, e2] = qk15(f, m, hi[w]);
    total += k1 + k2 - val[w];
    totalErr += e1 + e2 - err[w];
    lo.push(m);
    hi.push(hi[w]);
    val.push(k2);
    err.push(e2);
    hi[w] = m;
    val[w] = k1;
    err[w] = e1;
  }
  return total;
}

/** Integrate over [a, b] split at the given interior points. */
export function integratePieces(f: (x: number) => number, points: number[], relTol = 1e-13, absTol = 0): number {
  const pts = [...points].sort((x, y) => x - y);
  let s = 0;
  for (let i = 0; i + 1 < pts.length; i++) s += integrate(f, pts[i], pts[i + 1], relTol, absTol);
  return s;
}

/** Standard normal density written out locally (no library code). */
export function npdf(x: number): number {
  return Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
}

/** mulberry32: a small seeded 32-bit generator, independent of the library's Rng. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Box-Muller normals from mulberry32 (uniforms from two 32-bit draws). */
export function normalGenerator(seed: number): () => number {
  const u = mulberry32(seed);
  let spare = 0;
  let has = false;
  return () => {
    if (has) {
      has = false;
      return spare;
    }
    const u1 = u() + u() / 4294967296 || 1e-300; // 53 random bits in (0, 1)
    const u2 = u();
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    has = true;
    return r * Math.cos(2 * Math.PI * u2);
  };
}

/** Naive C = A B for row-major A (m x k), B (k x n). */
export function naiveMatMul(A: Float64Array, B: Float64Array, m: number, k: number, n: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += A[i * k + t] * B[t * n + j];
      C[i * n + j] = s;
    }
  return C;
}

export function naiveTranspose(A: Float64Array, m: number, n: number): Float64Array {
  const T = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) T[j * m + i] = A[i * n + j];
  return T;
}

/** Smallest eigenvalue of a symmetric matrix by cyclic Jacobi rotations (small n only). */
export function minEigenvalue(M: Float64Array, n: number): number {
  const a = Float64Array.from(M);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  let mn = Infinity;
  for (let i = 0; i < n; i++) mn = Math.min(mn, a[i * n + i]);
  return mn;
}
