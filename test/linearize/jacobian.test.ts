/**
 * The Jacobian engine: identity-chunked JVP Jacobians (column subsets, chunk sizes, jvp() with
 * arbitrary directions), one session reused across points (the point is an input of the tangent
 * model, not a constant), several varying inputs and outputs, and --jacobian auto|jvp|fd: auto falls
 * back to central finite differences with a warning naming the op, jvp refuses.
 */
import { describe, expect, it } from 'vitest';
import {
  createJacobianEngine,
  denseRows,
  factorColumns,
  finiteDifferenceJacobian,
  scaledAxes,
  withExtraDirection,
  type DirectionBatches,
} from '../../src/linearize/jacobian.js';
import { buildTangentModel } from '../../src/onnx/tangent/build.js';
import { isLinearizable, linearizableOps } from '../../src/onnx/ops/registry.js';
import { MissingTangentRuleError } from '../../src/onnx/tangent/types.js';
import { buildGraph, expectJvpMatchesFd, intInit, makeNode, maxAbs, maxAbsDiff, randomInit, rng } from '../tangent/helpers.js';

function smallNet(seed = 1) {
  const r = rng(seed);
  return buildGraph({
    inputs: [['x', ['N', 2, 4, 4]]],
    outputs: ['y'],
    nodes: [
      makeNode('Conv', ['x', 'w', 'b'], ['c'], { attributes: { pads: [1, 1, 1, 1] } }),
      makeNode('Relu', ['c'], ['r']),
      makeNode('MaxPool', ['r'], ['p'], { attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
      makeNode('Flatten', ['p'], ['f']),
      makeNode('Gemm', ['f', 'w2', 'b2'], ['y'], { attributes: { transB: 1 } }),
    ],
    initializers: [randomInit(r, 'w', [3, 2, 3, 3]), randomInit(r, 'b', [3]), randomInit(r, 'w2', [5, 12]), randomInit(r, 'b2', [5])],
  });
}

describe('JacobianEngine', () => {
  it('column subsets and chunk sizes give the same columns as the full Jacobian', async () => {
    const e = await createJacobianEngine(smallNet(), { mode: 'jvp' });
    try {
      const x = rng(2).normals(32);
      const full = await e.jacobian(x);
      expect([full.rows, full.cols]).toEqual([5, 32]);
      for (const chunk of [1, 3, 32, 100]) {
        const again = await e.jacobian(x, { chunk });
        expect(maxAbsDiff(again.J, full.J)).toBe(0);
      }
      const cols = Int32Array.from([31, 0, 7, 7, 12]);
      const sub = await e.jacobian(x, { columns: cols, chunk: 2 });
      expect([sub.rows, sub.cols]).toEqual([5, 5]);
      for (let r = 0; r < 5; r++) for (let c = 0; c < 5; c++) expect(sub.J[r * 5 + c]).toBe(full.J[r * 32 + cols[c]]);
      expect(Array.from(sub.outputValue)).toEqual(Array.from(full.outputValue));
      await expect(e.jacobian(x, { columns: Int32Array.from([32]) })).rejects.toThrow(/outside/);
    } finally {
      await e.release();
    }
  });

  it('jvp() with arbitrary directions equals J d (and FD mode agrees)', async () => {
    const g = smallNet();
    const e = await createJacobianEngine(g, { mode: 'jvp' });
    const f = await createJacobianEngine(g, { mode: 'fd', fdStep: 1e-3 });
    try {
      const x = rng(3).normals(32);
      const { J } = await e.jacobian(x);
      const k = 7;
      const d = rng(4).normals(k * 32);
      const out = await e.jvp(x, d, k, { chunk: 3 });
      const outFd = await f.jvp(x, d, k);
      for (let i = 0; i < k; i++) {
        for (let r = 0; r < 5; r++) {
          let s = 0;
          for (let c = 0; c < 32; c++) s += J[r * 32 + c] * d[i * 32 + c];
          expect(out.tangents[i * 5 + r]).toBeCloseTo(s, 4);
          expect(outFd.tangents[i * 5 + r]).toBeCloseTo(s, 2);
        }
      }
      await expect(e.jvp(x, d, k + 1)).rejects.toThrow(/directions/);
    } finally {
      await e.release();
      await f.release();
    }
  });

  it('one engine serves many points: the point is a model input, never a constant', async () => {
    const g = smallNet(5);
    const e = await createJacobianEngine(g, { mode: 'jvp' });
    const f = await createJacobianEngine(g, { mode: 'fd', fdStep: 1e-3 });
    try {
      const tm = e.tangentModel!;
      expect(tm.primalInputs.map((p) => p.name)).toEqual(['x']);
      // No initializer of the tangent model holds the point's 32 values.
      for (const t of tm.graph.initializers.values()) expect(t.dims.reduce((a, b) => a * b, 1) === 32 && t.name.includes('x')).toBe(false);
      const results = [];
      for (const seed of [10, 11, 12]) {
        const x = rng(seed).normals(32);
        const a = await e.jacobian(x);
        const b = await f.jacobian(x);
        expect(maxAbsDiff(a.J, b.J)).toBeLessThanOrEqual(2e-3 * maxAbs(b.J) + 1e-3);
        results.push(a.J);
      }
      expect(maxAbsDiff(results[0], results[1])).toBeGreaterThan(1e-3);
    } finally {
      await e.release();
      await f.release();
    }
  });

  it('several varying inputs (a top part with a skip tensor) and several outputs', async () => {
    const r = rng(21);
    const g = buildGraph({
      inputs: [
        ['y', ['N', 6]],
        ['skip', ['N', 4]],
      ],
      outputs: ['o1', 'o2'],
      nodes: [
        makeNode('Gemm', ['y', 'w', 'b'], ['h'], { attributes: { transB: 1 } }),
        makeNode('Add', ['h', 'skip'], ['s']),
        makeNode('Relu', ['s'], ['o1']),
        makeNode('Mul', ['s', 'skip'], ['o2']),
      ],
      initializers: [randomInit(r, 'w', [4, 6]), randomInit(r, 'b', [4])],
    });
    const { jvp } = await expectJvpMatchesFd(g);
    expect([jvp.rows, jvp.cols]).toEqual([8, 10]);
    // Only one of the two inputs varying: the other is fed as part of the point.
    const e = await createJacobianEngine(g, { mode: 'jvp', varying: ['skip'], outputs: ['o2'] });
    try {
      expect(e.inputs.map((s) => s.name)).toEqual(['skip']);
      expect(e.primalInputs.map((s) => s.name)).toEqual(['y', 'skip']);
      const point = { y: rng(1).normals(6), skip: rng(2).normals(4) };
      const res = await e.jacobian(point);
      expect([res.rows, res.cols]).toEqual([4, 4]);
      await expect(e.jacobian({ y: new Float32Array(6) })).rejects.toThrow(/skip/);
      await expect(e.jacobian(new Float32Array(9))).rejects.toThrow(/9 values/);
    } finally {
      await e.release();
    }
  });
});

/** All directions of a batch source, made in batches of `m` into a buffer that holds stale values first. */
function materialize(dirs: DirectionBatches, m: number): Float64Array {
  const out = new Float64Array(dirs.count * dirs.size);
  const buf = new Float64Array(m * dirs.size).fill(Number.NaN);
  for (let k0 = 0; k0 < dirs.count; k0 += m) {
    const b = Math.min(m, dirs.count - k0);
    dirs.fill(buf, k0, b);
    out.set(buf.subarray(0, b * dirs.size), k0 * dirs.size);
  }
  return out;
}

describe('direction batches (noise factor columns made batch by batch)', () => {
  const n = 32;
  const support = Int32Array.of(1, 4, 5, 20, 31);
  const sd = Float64Array.of(0.5, 2, 1.5, 0.25, 3);
  const factor = rng(9).normals(support.length * 3); // support x 3

  it('scaled axes, factor columns and an extra direction are the dense rows they stand for, in any batch size', () => {
    const axes = new Float64Array(support.length * n);
    support.forEach((i, k) => (axes[k * n + i] = sd[k]));
    const cols = new Float64Array(3 * n);
    for (let k = 0; k < 3; k++) support.forEach((i, t) => (cols[k * n + i] = factor[t * 3 + k]));
    const extra = rng(10).normals(n);
    for (const m of [1, 2, 5, 7]) {
      expect(Array.from(materialize(scaledAxes(n, support, sd), m))).toEqual(Array.from(axes));
      expect(Array.from(materialize(factorColumns(n, support, factor, 3), m))).toEqual(Array.from(cols));
      const both = materialize(withExtraDirection(scaledAxes(n, support, sd), extra), m);
      expect(Array.from(both)).toEqual([...axes, ...extra]);
      expect(Array.from(materialize(denseRows(cols, 3, n), m))).toEqual(Array.from(cols));
    }
  });

  it('jvpBatches gives the tangents jvp gives for the dense directions, batch by batch', async () => {
    const e = await createJacobianEngine(smallNet(), { mode: 'jvp' });
    try {
      const x = rng(11).normals(32);
      const dirs = withExtraDirection(scaledAxes(n, support, sd), rng(12).normals(n));
      const dense = materialize(dirs, dirs.count);
      const want = await e.jvp(x, dense, dirs.count);
      const got = new Float64Array(dirs.count * e.outputSize);
      const seen: number[] = [];
      await e.jvpBatches(x, dirs, 2, (k0, m, t, batch) => {
        seen.push(m);
        expect(Array.from(batch)).toEqual(Array.from(Float32Array.from(dense.subarray(k0 * n, (k0 + m) * n))));
        for (let k = 0; k < m * e.outputSize; k++) got[k0 * e.outputSize + k] = t.y[k];
      });
      expect(seen).toEqual([2, 2, 2]);
      expect(maxAbsDiff(got, want.tangents)).toBe(0);
    } finally {
      await e.release();
    }
  });
});

describe('--jacobian auto | jvp | fd', () => {
  const withAsinh = () => {
    const r = rng(31);
    return buildGraph({
      inputs: [['x', ['N', 5]]],
      outputs: ['y'],
      nodes: [makeNode('MatMul', ['x', 'w'], ['h']), makeNode('Asinh', ['h'], ['c']), makeNode('Relu', ['c'], ['y'])],
      initializers: [randomInit(r, 'w', [5, 3])],
    });
  };

  it('auto falls back to central finite differences with a warning naming the op', async () => {
    const warnings: string[] = [];
    const e = await createJacobianEngine(withAsinh(), { mode: 'auto', onWarning: (m) => warnings.push(m), fdStep: 1e-3 });
    try {
      expect(e.mode).toBe('fd');
      expect(e.fallback?.opType).toBe('Asinh');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/Asinh/);
      expect(warnings[0]).toMatch(/finite differences/);
      const x = rng(1).normals(5);
      const { J, rows, cols } = await e.jacobian(x);
      expect([rows, cols]).toEqual([3, 5]);
      // d relu(asinh(x W)) / dx = mask * (1 + (x W)^2)^(-1/2) * W^T
      const w = e.tangentModel; // none in fd mode
      expect(w).toBeUndefined();
      expect(maxAbs(J)).toBeGreaterThan(0);
    } finally {
      await e.release();
    }
  });

  it('jvp mode refuses with an error naming the op', async () => {
    await expect(createJacobianEngine(withAsinh(), { mode: 'jvp' })).rejects.toSatisfy(
      (e: unknown) => e instanceof MissingTangentRuleError && e.opType === 'Asinh' && e.code === 'UNSUPPORTED' && /Asinh/.test(e.message),
    );
  });

  it('a rule that declines one use of its op (a Reshape that merges the batch, a Conv with varying weights) falls back too', async () => {
    const merge = buildGraph({
      inputs: [['x', ['N', 2, 3]]],
      outputs: ['y'],
      nodes: [makeNode('Reshape', ['x', 's'], ['y'])],
      initializers: [intInit('s', [-1, 3])],
    });
    const warnings: string[] = [];
    const e = await createJacobianEngine(merge, { mode: 'auto', onWarning: (m) => warnings.push(m) });
    await e.release();
    expect(e.mode).toBe('fd');
    expect(warnings[0]).toMatch(/Reshape/);
    expect(warnings[0]).toMatch(/batch/);
    const convW = buildGraph({
      inputs: [
        ['x', ['N', 1, 4, 4]],
        ['w', [2, 1, 3, 3]],
      ],
      outputs: ['y'],
      nodes: [makeNode('Conv', ['x', 'w'], ['y'])],
    });
    expect(() => buildTangentModel(convW, { varying: ['x', 'w'], outputs: ['y'] })).toThrow(/Conv.*weights/);
    // Only x varying: fine (w is then a primal input without a batch axis, fed with the point).
    const tm = buildTangentModel(convW, { varying: ['x'], outputs: ['y'] });
    expect(tm.primalInputs.map((p) => [p.name, p.batched, p.dims])).toEqual([
      ['x', true, [1, 4, 4]],
      ['w', false, [2, 1, 3, 3]],
    ]);
    await expectJvpMatchesFd(convW, { varying: ['x'] });
  });

  it('rules decline uses that move the batch axis, naming the op', () => {
    const one = (node: ReturnType<typeof makeNode>, inits = [] as ReturnType<typeof intInit>[]) =>
      buildGraph({ inputs: [['x', ['N', 2, 3]]], outputs: ['y'], nodes: [node], initializers: inits });
    const cases: [string, ReturnType<typeof buildGraph>][] = [
      ['Transpose', one(makeNode('Transpose', ['x'], ['y'], { attributes: { perm: [1, 0, 2] } }))],
      ['Concat', one(makeNode('Concat', ['x', 'x'], ['y'], { attributes: { axis: 0 } }))],
      ['Gather', one(makeNode('Gather', ['x', 'i'], ['y'], { attributes: { axis: 0 } }), [intInit('i', [0])])],
      ['Softmax', one(makeNode('Softmax', ['x'], ['y'], { attributes: { axis: 0 } }))],
      ['ReduceSum', one(makeNode('ReduceSum', ['x'], ['y']))],
    ];
    for (const [op, g] of cases) {
      let error: unknown;
      try {
        buildTangentModel(g, { varying: ['x'], outputs: ['y'] });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(MissingTangentRuleError);
      expect((error as MissingTangentRuleError).opType).toBe(op);
      expect((error as Error).message).toMatch(/batch/);
    }
  });

  it('fd mode computes the same Jacobian as jvp on a model both can do', async () => {
    const g = smallNet(7);
    const f = await createJacobianEngine(g, { mode: 'fd', fdStep: 1e-3 });
    const j = await createJacobianEngine(g, { mode: 'auto' });
    try {
      expect(f.mode).toBe('fd');
      expect(j.mode).toBe('jvp');
      const x = rng(8).normals(32);
      const a = await j.jacobian(x);
      const b = await f.jacobian(x);
      expect(maxAbsDiff(a.J, b.J)).toBeLessThanOrEqual(2e-3 * maxAbs(b.J) + 1e-3);
    } finally {
      await f.release();
      await j.release();
    }
  });

  it('finiteDifferenceJacobian works on any batch function', async () => {
    // f(x) = [x0 * x1, sin(x2)]
    const fn = async (pts: Float32Array, count: number) => {
      const out = new Float64Array(2 * count);
      for (let i = 0; i < count; i++) {
        out[2 * i] = pts[3 * i] * pts[3 * i + 1];
        out[2 * i + 1] = Math.sin(pts[3 * i + 2]);
      }
      return out;
    };
    const { J, rows, cols, outputValue } = await finiteDifferenceJacobian(fn, [2, 3, 0.5], 1e-3, { chunk: 2 });
    expect([rows, cols]).toEqual([2, 3]);
    expect(outputValue[0]).toBeCloseTo(6, 5);
    const expected = [3, 2, 0, 0, 0, Math.cos(0.5)];
    for (let i = 0; i < 6; i++) expect(J[i]).toBeCloseTo(expected[i], 3);
  });
});

describe('registry', () => {
  it('isLinearizable is derived from the rules (inspect reads it)', () => {
    for (const op of ['Conv', 'Gemm', 'MatMul', 'Relu', 'MaxPool', 'Reshape', 'Softmax', 'Shape', 'Gather', 'Constant', 'Cast']) {
      expect(isLinearizable(op)).toBe(true);
    }
    expect(isLinearizable('Asinh')).toBe(false);
    expect(isLinearizable('LSTM')).toBe(false);
    expect(linearizableOps()).toContain('BatchNormalization');
  });
});
