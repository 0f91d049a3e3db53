import { afterAll, describe, expect, it } from 'vitest';
import { gemmSync, jsLinearAlgebra, matTVec, matVec, rowDots, transpose } from '../../src/moments/linalg.js';
import { OrtLinearAlgebra, sharedOrtLinearAlgebra } from '../../src/runtime/linalg.js';
import { mulberry32, naiveMatMul, naiveTranspose } from './integrate.js';

function rand(n: number, seed: number): Float64Array {
  const u = mulberry32(seed);
  return Float64Array.from({ length: n }, () => 2 * u() - 1);
}

/** Stored operands for op(A) m x k and op(B) k x n. */
function operands(m: number, k: number, n: number, transA: boolean, transB: boolean, seed: number) {
  const A = rand(m * k, seed); // op(A) as m x k
  const B = rand(k * n, seed + 1); // op(B) as k x n
  const a = transA ? naiveTranspose(A, m, k) : A;
  const b = transB ? naiveTranspose(B, k, n) : B;
  const [aRows, aCols] = transA ? [k, m] : [m, k];
  const [bRows, bCols] = transB ? [n, k] : [k, n];
  return { a, aRows, aCols, b, bRows, bCols, ref: naiveMatMul(A, B, m, k, n) };
}

function maxRel(x: Float64Array, y: Float64Array): number {
  let scale = 1e-300;
  for (const v of y) scale = Math.max(scale, Math.abs(v));
  let e = 0;
  for (let i = 0; i < x.length; i++) e = Math.max(e, Math.abs(x[i] - y[i]));
  return e / scale;
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 2],
  [7, 130, 9],
  [13, 257, 515],
  [64, 64, 64],
  [0, 4, 3],
  [5, 0, 4],
];

describe('jsLinearAlgebra', () => {
  it('equals the naive triple loop for every transpose combination and awkward shapes', async () => {
    for (const [m, k, n] of shapes)
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          const o = operands(m, k, n, tA, tB, m * 31 + k * 7 + n);
          const c = await jsLinearAlgebra.gemm(o.a, o.aRows, o.aCols, o.b, o.bRows, o.bCols, { transA: tA, transB: tB });
          expect(c.length).toBe(m * n);
          expect(maxRel(c, o.ref), `${m}x${k}x${n} tA=${tA} tB=${tB}`).toBeLessThan(1e-14);
        }
  });

  it('rejects inconsistent shapes', () => {
    expect(() => gemmSync(new Float64Array(6), 2, 3, new Float64Array(6), 2, 3)).toThrow(/inner dimensions/);
    expect(() => gemmSync(new Float64Array(5), 2, 3, new Float64Array(6), 3, 2)).toThrow(/elements/);
  });

  it('helpers: transpose, rowDots, matVec, matTVec', () => {
    const A = rand(12, 5);
    expect([...transpose(A, 3, 4)]).toEqual([...naiveTranspose(A, 3, 4)]);
    const x = rand(4, 6);
    const y = rand(3, 7);
    expect(maxRel(matVec(A, 3, 4, x), naiveMatMul(A, x, 3, 4, 1))).toBeLessThan(1e-15);
    expect(maxRel(matTVec(A, 3, 4, y), naiveMatMul(naiveTranspose(A, 3, 4), y, 4, 3, 1))).toBeLessThan(1e-15);
    const d = rowDots(A, A, 3, 4);
    for (let i = 0; i < 3; i++) expect(d[i]).toBeCloseTo(A[i * 4] ** 2 + A[i * 4 + 1] ** 2 + A[i * 4 + 2] ** 2 + A[i * 4 + 3] ** 2, 15);
  });
});

describe('onnxruntime float64 Gemm (src/runtime/linalg.ts)', () => {
  const ort = new OrtLinearAlgebra({ minFlops: 0, threads: 2 });
  afterAll(() => ort.release());

  it('equals the plain TypeScript products (every transpose combination, float64 throughout)', async () => {
    for (const [m, k, n] of shapes)
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          const o = operands(m, k, n, tA, tB, m * 17 + k + n * 3);
          const c = await ort.gemm(o.a, o.aRows, o.aCols, o.b, o.bRows, o.bCols, { transA: tA, transB: tB });
          const js = gemmSync(o.a, o.aRows, o.aCols, o.b, o.bRows, o.bCols, { transA: tA, transB: tB });
          expect(c).toBeInstanceOf(Float64Array);
          // float32 arithmetic anywhere would show as ~1e-7
          expect(maxRel(c, js), `${m}x${k}x${n} tA=${tA} tB=${tB}`).toBeLessThan(1e-13);
        }
  });

  it('widens float32 operands exactly: the product equals the float64 product of the widened values', async () => {
    // values that float32 holds exactly would hide a float32 product; these need all 24 bits and the
    // products' sums need float64 (a float32 Gemm would be off by ~1e-7 relative)
    for (const [m, k, n] of [
      [3, 5, 2],
      [13, 257, 515],
      [64, 64, 64],
    ] as [number, number, number][])
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          const o = operands(m, k, n, tA, tB, m + k * 5 + n * 11);
          const a32 = Float32Array.from(o.a);
          const b32 = Float32Array.from(o.b);
          const ref = gemmSync(Float64Array.from(a32), o.aRows, o.aCols, Float64Array.from(b32), o.bRows, o.bCols, { transA: tA, transB: tB });
          for (const [a, b] of [
            [a32, o.b],
            [o.a, b32],
            [a32, b32],
          ] as const) {
            const aRef = a instanceof Float32Array ? Float64Array.from(a) : a;
            const bRef = b instanceof Float32Array ? Float64Array.from(b) : b;
            const want = a === a32 && b === b32 ? ref : gemmSync(aRef, o.aRows, o.aCols, bRef, o.bRows, o.bCols, { transA: tA, transB: tB });
            const c = await ort.gemm(a, o.aRows, o.aCols, b, o.bRows, o.bCols, { transA: tA, transB: tB });
            const js = await jsLinearAlgebra.gemm(a, o.aRows, o.aCols, b, o.bRows, o.bCols, { transA: tA, transB: tB });
            const tag = `${m}x${k}x${n} tA=${tA} tB=${tB} a ${a.constructor.name} b ${b.constructor.name}`;
            expect(maxRel(c, want), tag).toBeLessThan(1e-13);
            expect(maxRel(js, want), tag).toBeLessThan(1e-14);
          }
        }
  });

  it('accepts subarray views (the engine passes row panels of larger buffers)', async () => {
    const big = rand(40 * 30, 99);
    const view = big.subarray(10 * 30, 25 * 30); // rows 10..24
    const b = rand(30 * 6, 100);
    const c = await ort.gemm(view, 15, 30, b, 30, 6);
    expect(maxRel(c, naiveMatMul(big.slice(10 * 30, 25 * 30), b, 15, 30, 6))).toBeLessThan(1e-13);
  });

  it('reuses its sessions across calls and shares instances per configuration', async () => {
    const la = sharedOrtLinearAlgebra({ minFlops: 0, threads: 1 });
    expect(sharedOrtLinearAlgebra({ minFlops: 0, threads: 1 })).toBe(la);
    const sessionsOf = (x: OrtLinearAlgebra) => (x as unknown as { sessions: Map<string, unknown> }).sessions;
    const a = rand(20, 3);
    for (let i = 0; i < 50; i++) await la.gemm(a, 4, 5, a, 4, 5, { transB: true });
    expect(sessionsOf(la).size).toBe(1);
    await la.gemm(a, 4, 5, a, 4, 5, { transA: true });
    expect(sessionsOf(la).size).toBe(2);
  });
});
