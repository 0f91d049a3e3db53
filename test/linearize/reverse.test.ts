/**
 * Reverse-mode (VJP) Jacobians of whole networks equal the forward-mode ones: on the bundled LeNet
 * (fixtures/lenet.onnx: the full model and both parts of the split at every ReLU) and on the
 * synthetic nets of nets.ts (LeNet in both export styles, the torch-style residual block), within
 * float32 rounding (1e-5 of max |J|). The two-stage linearization built with --jacobian reverse
 * (A F from p reverse passes, B from d) equals the forward one (A F, B, D F, A delta), including
 * the residual block's skip path, and auto picks the direction by cost.
 */
import { describe, expect, it } from 'vitest';
import { createJacobianEngine, type Point } from '../../src/linearize/jacobian.js';
import { Linearizer } from '../../src/linearize/linearizer.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { splitModelAt } from '../../src/onnx/split.js';
import type { NoiseFactor } from '../../src/noise.js';
import { maxAbs, maxAbsDiff, rng } from '../tangent/helpers.js';
import { digit, lenet, residualTorch } from './nets.js';

const LENET = new URL('../../fixtures/lenet.onnx', import.meta.url).pathname;

async function expectReverseEqualsForward(g: Graph, point: Point, varying?: string[]): Promise<void> {
  const fwd = await createJacobianEngine(g, { mode: 'forward', varying });
  const rev = await createJacobianEngine(g, { mode: 'reverse', varying });
  try {
    expect(await rev.reverseReady()).toBe(true);
    // at most 300 columns, spread over the input (forward mode costs one pass per column)
    const n = fwd.inputSize;
    const columns = n > 300 ? Int32Array.from({ length: 300 }, (_, i) => Math.floor((i * n) / 300)) : undefined;
    const Jf = await fwd.jacobian(point, { columns });
    const Jr = await rev.jacobian(point, { chunk: 7, columns });
    expect([Jr.rows, Jr.cols]).toEqual([Jf.rows, Jf.cols]);
    expect(maxAbs(Jf.J)).toBeGreaterThan(0);
    expect(maxAbsDiff(Jr.J, Jf.J)).toBeLessThanOrEqual(1e-5 * maxAbs(Jf.J));
  } finally {
    await fwd.release();
    await rev.release();
  }
}

/** The full model and both parts of the split at every ReLU (the top at the bottom's values). */
async function expectEverywhere(g: Graph, x: Float32Array): Promise<void> {
  await expectReverseEqualsForward(g, x);
  for (let k = 0; k < g.relus().length; k++) {
    const split = await splitModelAt(g, k);
    await expectReverseEqualsForward(split.bottom, x);
    const bottom = await createJacobianEngine(split.bottom, { mode: 'forward' });
    const top: Record<string, Float32Array> = {};
    try {
      const { outputValue } = await bottom.jvp(x, new Float32Array(0), 0);
      for (const o of bottom.outputs) top[o.name] = Float32Array.from(outputValue.subarray(o.offset, o.offset + o.size));
    } finally {
      await bottom.release();
    }
    const dither = rng(5 + k);
    const point: Record<string, Float32Array> = {};
    for (const inp of split.top.dataInputs) {
      const v =
        inp.name === split.relu.output ? Float32Array.from(top[split.relu.input], (z) => (z > 0 ? z : 0.01 + 0.1 * dither.uniform())) : (top[inp.name] ?? x);
      point[inp.name] = v;
    }
    await expectReverseEqualsForward(split.top, point);
  }
}

describe('reverse-mode Jacobians of whole networks equal forward mode', () => {
  it('the bundled LeNet at a real digit (with dither), full model and every split', async () => {
    const r = rng(77);
    await expectEverywhere(
      loadModel(LENET).graph,
      Float32Array.from(digit(), (v) => v + r.normal()),
    );
  });

  it('the synthetic LeNets (dynamic batch; torch-style fixed batch 1) and the residual block', async () => {
    await expectEverywhere(lenet('dynamic'), rng(1).normals(784, 60));
    await expectEverywhere(lenet('torch-batch1'), rng(2).normals(784, 60));
    await expectEverywhere(residualTorch(), rng(3).normals(3 * 64));
  });

  it('auto picks reverse when the rows are fewer than the columns, forward otherwise', async () => {
    const g = lenet('dynamic');
    const e = await createJacobianEngine(g, { mode: 'auto' });
    try {
      expect(e.prefersReverse(784)).toBe(true); // 10 rows, 784 columns
      expect(e.prefersReverse(5)).toBe(false);
      await e.jacobian(rng(4).normals(784, 60), { columns: Int32Array.from([1, 2, 3]) });
      expect(e.description).toBe('forward-mode JVPs');
      await e.jacobian(rng(4).normals(784, 60));
      expect(e.description).toMatch(/^reverse-mode VJPs/);
    } finally {
      await e.release();
    }
    const f = await createJacobianEngine(g, { mode: 'forward' });
    try {
      expect(f.prefersReverse(784)).toBe(false);
      expect(await f.reverseReady()).toBe(false);
    } finally {
      await f.release();
    }
  });
});

describe('two-stage linearization by reverse mode', () => {
  const axes = (n: number, sd: number): NoiseFactor => ({
    kind: 'axes',
    n,
    r: n,
    support: Int32Array.from({ length: n }, (_, i) => i),
    sd: new Float64Array(n).fill(sd),
  });

  async function compare(bytes: Uint8Array, relu: number, x: Float32Array, factor: NoiseFactor, delta?: Float64Array, skip = false): Promise<void> {
    const model = loadModelBytes(bytes, 'net.onnx');
    const fwd = await Linearizer.create(model, { relu, jacobian: 'forward', flips: false });
    const rev = await Linearizer.create(model, { relu, jacobian: 'reverse', flips: false });
    try {
      const a = await fwd.linearize(x, factor, delta);
      const b = await rev.linearize(x, factor, delta);
      expect(rev.jacobianDescription).toMatch(/bottom: reverse-mode VJPs.*top: reverse-mode VJPs/);
      expect(fwd.jacobianDescription).toBe('bottom: forward-mode JVPs; top: forward-mode JVPs');
      const close = (u: ArrayLike<number> | undefined, v: ArrayLike<number> | undefined) => {
        expect(u === undefined).toBe(v === undefined);
        if (u && v) expect(maxAbsDiff(u, v)).toBeLessThanOrEqual(1e-5 * Math.max(1e-6, maxAbs(v)));
      };
      expect(a.D !== undefined).toBe(skip); // the residual block's skip tensor crosses the cut at ReLU 1
      close(b.A, a.A);
      close(b.B, a.B);
      close(b.D, a.D);
      close(b.Adelta, a.Adelta);
      close(b.Ddelta, a.Ddelta);
      close(b.zb, a.zb);
      close(b.gb, a.gb);
    } finally {
      await fwd.release();
      await rev.release();
    }
  }

  it('LeNet (isotropic and diagonal noise on the whole input, with an offset) at two splits', async () => {
    const bytes = loadModel(LENET).graph.toBytes();
    const r = rng(8);
    const x = Float32Array.from(digit(), (v) => v + r.normal());
    const diag: NoiseFactor = { ...axes(784, 1), sd: Float64Array.from({ length: 784 }, () => 1 + 7 * r.uniform()) };
    await compare(bytes, 2, x, axes(784, 8));
    await compare(
      bytes,
      1,
      x,
      diag,
      Float64Array.from({ length: 784 }, () => r.normal()),
    );
  });

  it('the residual block: the skip path (D F) and a dense noise factor', async () => {
    const bytes = residualTorch().toBytes();
    const r = rng(9);
    const n = 3 * 64;
    const support = Int32Array.from({ length: 50 }, (_, i) => 2 * i);
    const dense: NoiseFactor = { kind: 'dense', n, r: 60, support, factor: Float64Array.from({ length: 50 * 60 }, () => 0.3 * r.normal()) };
    await compare(bytes, 0, r.normals(n), axes(n, 0.5));
    await compare(bytes, 1, r.normals(n), axes(n, 0.5), undefined, true);
    await compare(
      bytes,
      1,
      r.normals(n),
      dense,
      Float64Array.from({ length: n }, () => r.normal()),
      true,
    );
  });
});
