/**
 * bench/moments: cost of the moments engine, measured in one run.
 *   - pair terms per second of the exact and the paper's pair kernels (plain TypeScript);
 *   - exact variance + covariance vs the paper's variance for p = 500, d = 10 and p = 4096, d = 1000
 *     (n = 784 inputs, isotropic noise), for a realistic mix of unit states and for the worst case
 *     where every unit is uncertain, with dense products on onnxruntime's float64 Gemm;
 *   - B K B^T for d = 1000, p = 4096 on onnxruntime vs plain TypeScript loops.
 * Usage: npm run bench:moments   (compiles this file, the sources it imports and the pair worker
 * script to dist/bench/; the engine uses the available cores for pair terms, see pairThreads)
 */
import { cpus, loadavg } from 'node:os';
import { type LinearAlgebra, jsLinearAlgebra } from '../src/moments/linalg.js';
import { Rng } from '../src/moments/montecarlo.js';
import { type ShallowNetwork, networkMoments, pairPanel } from '../src/moments/network.js';
import { reluVarianceCorrection } from '../src/moments/relu.js';
import { sharedOrtLinearAlgebra } from '../src/runtime/linalg.js';

const N_IN = 784;
const rng = new Rng(2024);
const gauss = (k: number, scale = 1) => Float64Array.from({ length: k }, () => scale * rng.normal());

/**
 * Rows of A share a 4-dimensional component with unit-specific weight, so correlations between
 * units spread out (independent random rows would make almost every pair |rho| < 0.1, the cheapest
 * case of the pair kernel); the |rho| bands are printed.
 */
function correlatedA(p: number, n: number): Float64Array {
  const k = 4;
  const W = gauss(k * n, 1 / Math.sqrt(n));
  const A = new Float64Array(p * n);
  for (let v = 0; v < p; v++) {
    const z = gauss(k);
    const w = 0.3 + 3.7 * rng.nextDouble();
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += z[t] * W[t * n + j];
      A[v * n + j] = (w * s) / Math.sqrt(k) + rng.normal() / Math.sqrt(n);
    }
  }
  return A;
}

/** A net whose units have a = m / s drawn from the given mix (fractions off, on; the rest uncertain with |a| < 3). */
function makeNet(p: number, d: number, off: number, on: number): ShallowNetwork {
  const A = correlatedA(p, N_IN);
  const m = new Float64Array(p);
  for (let v = 0; v < p; v++) {
    let s2 = 0;
    for (let j = 0; j < N_IN; j++) s2 += A[v * N_IN + j] ** 2;
    const u = rng.nextDouble();
    const a = u < off ? -20 : u < off + on ? 20 : -3 + 6 * rng.nextDouble();
    m[v] = a * Math.sqrt(s2); // sigma = 1
  }
  return { A: { data: A, rows: p, cols: N_IN }, B: { data: gauss(d * p), rows: d, cols: p }, m, c2: new Float64Array(d) };
}

/** Wall seconds, result, and CPU seconds of this process (all its threads, onnxruntime's included). */
async function time<T>(f: () => Promise<T>): Promise<[number, T, number]> {
  const c = process.cpuUsage();
  const t = performance.now();
  const r = await f();
  const cu = process.cpuUsage(c);
  return [(performance.now() - t) / 1000, r, (cu.user + cu.system) / 1e6];
}

function pairKernelRate(paper: boolean): number {
  const q = 2000;
  const s = new Float64Array(q).fill(1);
  const a = Float64Array.from({ length: q }, () => -3 + 6 * rng.nextDouble());
  const diag = Float64Array.from(a, (x) => reluVarianceCorrection(x));
  const rows = 200;
  const panel = new Float64Array(rows * q);
  let pairs = 0;
  const t = performance.now();
  for (let rep = 0; rep < 4; rep++) {
    // correlations spread over (-1, 1)
    for (let i = 0; i < panel.length; i++) panel[i] = Math.tanh(1.2 * rng.normal());
    pairPanel(panel, rows, q, 0, s, a, diag, paper);
    pairs += (rows * (rows + 1)) / 2 + rows * (q - rows);
  }
  return pairs / ((performance.now() - t) / 1000);
}

const fmt = (x: number) => (x < 10 ? x.toFixed(3) : x.toFixed(1));

async function scenario(name: string, p: number, d: number, off: number, on: number, la: LinearAlgebra): Promise<void> {
  const net = makeNet(p, d, off, on);
  const noise = { kind: 'isotropic' as const, sigma: 1 };
  const [tExact, exact, cExact] = await time(() => networkMoments(net, noise, { paper: false, linalg: la }));
  const [tPaper, paper, cPaper] = await time(() => networkMoments(net, noise, { variance: false, covariance: false, paper: true, linalg: la }));
  const u = exact.units;
  // |rho| bands of the pair kernel's rules (6/12/20-point quadrature, closed form), on 20000 random pairs
  const bands = [0, 0, 0, 0];
  for (let t = 0; t < 20000; t++) {
    const x = Math.floor(rng.nextDouble() * p);
    const y = Math.floor(rng.nextDouble() * p);
    let sxy = 0,
      sxx = 0,
      syy = 0;
    for (let j = 0; j < N_IN; j++) {
      const ax = net.A.data[x * N_IN + j],
        ay = net.A.data[y * N_IN + j];
      sxy += ax * ay;
      sxx += ax * ax;
      syy += ay * ay;
    }
    const r = Math.abs(sxy) / Math.sqrt(sxx * syy);
    bands[r < 0.3 ? 0 : r < 0.75 ? 1 : r < 0.925 ? 2 : 3]++;
  }
  console.log(
    `${name.padEnd(34)} p=${String(p).padStart(4)} d=${String(d).padStart(4)}  units on/off/uncertain ${u.on}/${u.off}/${u.uncertain}` +
      `  pair threads ${exact.pairThreads}` +
      `  |rho| <.3/<.75/<.925/>=.925 ${bands.map((b) => ((100 * b) / 20000).toFixed(0) + '%').join('/')}` +
      `\n    exact var+cov ${fmt(tExact)} s wall, ${fmt(cExact)} s CPU (${exact.pairTerms} pair terms)` +
      `  paper var ${fmt(tPaper)} s wall, ${fmt(cPaper)} s CPU (${paper.paperPairTerms} pair terms)  exact/paper ${(tExact / tPaper).toFixed(2)} wall, ${(cExact / cPaper).toFixed(2)} CPU`,
  );
}

async function main(): Promise<void> {
  const ort = sharedOrtLinearAlgebra();
  console.log(
    `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  console.log(
    `pair kernel (TypeScript, one core, rho = tanh(1.2 z): 18% of pairs |rho| >= 0.925): ` +
      `exact ${(pairKernelRate(false) / 1e6).toFixed(2)} M pair terms/s, paper ${(pairKernelRate(true) / 1e6).toFixed(2)} M pair terms/s`,
  );

  // warm up onnxruntime's sessions
  await networkMoments(makeNet(64, 4, 0.3, 0.3), { kind: 'isotropic', sigma: 1 }, { linalg: ort });
  await scenario('realistic mix (40% off, 35% on)', 500, 10, 0.4, 0.35, ort);
  await scenario('worst case (all uncertain)', 500, 10, 0, 0, ort);
  await scenario('realistic mix (40% off, 35% on)', 4096, 1000, 0.4, 0.35, ort);
  await scenario('worst case (all uncertain)', 4096, 1000, 0, 0, ort);
  await scenario('p=500 on plain TypeScript, worst', 500, 10, 0, 0, jsLinearAlgebra);

  // B K B^T for d = 1000, p = 4096: onnxruntime vs plain TypeScript (the 0.2 s vs 21 s)
  const d = 1000,
    p = 4096;
  const B = gauss(d * p);
  const K = gauss(p * p, 1e-2);
  const bkbt = async (la: LinearAlgebra) => {
    const KB = await la.gemm(K, p, p, B, d, p, { transB: true }); // p x d
    return la.gemm(B, d, p, KB, p, d); // d x d
  };
  const [tOrt, , cOrt] = await time(() => bkbt(ort));
  const [tJs, , cJs] = await time(() => bkbt(jsLinearAlgebra));
  console.log(
    `B K B^T, d=1000 p=4096: onnxruntime ${fmt(tOrt)} s wall (${fmt(cOrt)} s CPU), plain TypeScript ${fmt(tJs)} s wall (${fmt(cJs)} s CPU): ${(tJs / tOrt).toFixed(0)}x`,
  );
  await ort.release();
}

await main();
