/**
 * Unit-wise composites (src/propagate/rules/composite.ts) and the unit-wise ops with attributes:
 * each scalar function against onnxruntime running the op or the fused nodes; propagate through
 * Swish, GELU (erf form), ReLU6 (Relu then Clip) and Mish as torch exports them, against Monte
 * Carlo through the real model; and a product of two noisy tensors that are not functions of one
 * tensor, refused by name.
 */
import { describe, expect, it } from 'vitest';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, type NodeProto, type TensorProto } from '../../src/onnx/proto.js';
import { loadModelBytes } from '../../src/onnx/load.js';
import { fuseUnitComposites, unitFunction, COMPOSITE_OP } from '../../src/propagate/rules/index.js';
import { createPropagator, propagationSupport } from '../../src/propagate/index.js';
import { ModelSession, float32Tensor } from '../../src/runtime/session.js';
import { ModelEvaluator } from '../../src/linearize/evaluator.js';
import { monteCarloMoments } from '../../src/moments/montecarlo.js';
import { NetmomentsError } from '../../src/errors.js';
import { randn, rng } from '../onnx/models.js';
import { cli } from '../helpers/cli.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const scalar = (name: string, v: number): TensorProto => makeTensor(name, DataType.FLOAT, [], Float32Array.from([v]));

/** x [N, 1] -> nodes -> y [N, 1] at `opset`: the function the nodes compute, run by onnxruntime. */
async function ortFunction(nodes: NodeProto[], inits: TensorProto[], opset: number, xs: number[]): Promise<Float32Array> {
  const bytes = encodeModel(
    makeModel(
      {
        name: 'f',
        node: nodes,
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 1])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 1])],
        initializer: inits,
      },
      { opset },
    ),
  );
  const s = await ModelSession.create(bytes, { file: 'f.onnx' });
  const out = await s.run({ x: float32Tensor(Float32Array.from(xs), [xs.length, 1]) });
  await s.release();
  return out.y.data as Float32Array;
}

const GRID = Array.from({ length: 81 }, (_, i) => -8 + i * 0.2);

describe("unit-wise ops with attributes: the scalar function is onnxruntime's (float32: 2e-6 relative)", () => {
  const cases: [string, NodeProto, number][] = [
    ['Elu alpha 0.7', makeNode('Elu', ['x'], ['y'], { attributes: { alpha: 0.7 }, floatAttributes: ['alpha'] }), 13],
    ['Selu (defaults)', makeNode('Selu', ['x'], ['y']), 13],
    ['Celu alpha 1.5', makeNode('Celu', ['x'], ['y'], { attributes: { alpha: 1.5 }, floatAttributes: ['alpha'] }), 13],
    ['Softsign', makeNode('Softsign', ['x'], ['y']), 13],
    [
      'HardSigmoid alpha 0.3 beta 0.4',
      makeNode('HardSigmoid', ['x'], ['y'], { attributes: { alpha: 0.3, beta: 0.4 }, floatAttributes: ['alpha', 'beta'] }),
      13,
    ],
    ['HardSwish', makeNode('HardSwish', ['x'], ['y']), 14],
    ['Mish', makeNode('Mish', ['x'], ['y']), 18],
    ['Gelu', makeNode('Gelu', ['x'], ['y']), 20],
    ['Gelu tanh', makeNode('Gelu', ['x'], ['y'], { attributes: { approximate: 'tanh' } }), 20],
  ];
  for (const [name, node, opset] of cases) {
    it(name, async () => {
      const g = loadModelBytes(
        encodeModel(
          makeModel(
            { name: 'f', node: [node], input: [makeValueInfo('x', DataType.FLOAT, ['N', 1])], output: [makeValueInfo('y', DataType.FLOAT, ['N', 1])] },
            { opset },
          ),
        ),
        'f.onnx',
      ).graph;
      const f = unitFunction(g.nodes[0], g)!;
      const ys = await ortFunction([node], [], opset, GRID);
      GRID.forEach((x, i) => expect(Math.abs(f(x) - ys[i])).toBeLessThan(2e-6 * (1 + Math.abs(ys[i]))));
    });
  }
});

/** The activation of each test net: its nodes from 'h' to 'a' (torch's exports) and their constants. */
/** `fused`: the composite's output (its function f); `plan`: the propagation's steps. */
const ACTIVATIONS: Record<string, { nodes: NodeProto[]; inits: TensorProto[]; label: string; fused: string; f: (x: number) => number; plan: string[] }> = {
  swish: {
    nodes: [makeNode('Sigmoid', ['h'], ['s']), makeNode('Mul', ['h', 's'], ['a'])],
    inits: [],
    label: 'Sigmoid*Mul',
    fused: 'a',
    f: (x) => x / (1 + Math.exp(-x)),
    plan: ['affine[Gemm]', 'Sigmoid*Mul', 'affine[Gemm]'],
  },
  // torch.nn.functional.gelu before opset 20: Div, Erf, Add, Mul, Mul
  gelu: {
    nodes: [
      makeNode('Div', ['h', 'sqrt2'], ['d']),
      makeNode('Erf', ['d'], ['e']),
      makeNode('Add', ['e', 'one'], ['p']),
      makeNode('Mul', ['h', 'p'], ['q']),
      makeNode('Mul', ['q', 'half'], ['a']),
    ],
    inits: [scalar('sqrt2', Math.SQRT2), scalar('one', 1), scalar('half', 0.5)],
    label: 'Div*Erf*Add*Mul',
    // the last Mul (by 0.5) has one noisy input: it stays, an affine op
    fused: 'q',
    f: (x) => x * (1 + erfRef(x / Math.SQRT2)),
    plan: ['affine[Gemm]', 'Div*Erf*Add*Mul', 'affine[Mul,Gemm]'],
  },
  // torch's F.relu6 (1.13, opset 13): Relu, then Clip(0, 6); the Gemm before is scaled up so that
  // units cross 6
  relu6: {
    nodes: [makeNode('Mul', ['h', 'four'], ['h4']), makeNode('Relu', ['h4'], ['r']), makeNode('Clip', ['r', 'zero', 'six'], ['a'])],
    inits: [scalar('four', 4), scalar('zero', 0), scalar('six', 6)],
    label: 'Mul*Relu*Clip',
    fused: 'a',
    f: (x) => Math.min(6, Math.max(0, 4 * x)),
    plan: ['affine[Gemm]', 'Mul*Relu*Clip', 'affine[Gemm]'],
  },
  mish: {
    nodes: [makeNode('Softplus', ['h'], ['sp']), makeNode('Tanh', ['sp'], ['t']), makeNode('Mul', ['h', 't'], ['a'])],
    inits: [],
    label: 'Softplus*Tanh*Mul',
    fused: 'a',
    f: (x) => x * Math.tanh(Math.log1p(Math.exp(x))),
    plan: ['affine[Gemm]', 'Softplus*Tanh*Mul', 'affine[Gemm]'],
  },
};

/** erf by its Maclaurin series (|x| <= 2) or the continued fraction of erfc: independent of src/moments. */
function erfRef(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a <= 2) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let cf = 0;
    for (let n = 60; n >= 1; n--) cf = n / 2 / (a + cf);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + cf);
  }
  return x < 0 ? -r : r;
}

/** x [N, 6] -> Gemm (8) -> h -> activation -> a -> Gemm (3) -> y, seeded weights. */
function activationNet(kind: string, seed = 11): Uint8Array {
  const r = rng(seed);
  const act = ACTIVATIONS[kind];
  return encodeModel(
    makeModel({
      name: kind,
      node: [
        makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { attributes: { transB: 1 } }),
        ...act.nodes,
        makeNode('Gemm', ['a', 'W2', 'b2'], ['y'], { attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 6])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
      initializer: [
        makeTensor('W1', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
        makeTensor('b1', DataType.FLOAT, [8], randn(r, 8, 0.5)),
        makeTensor('W2', DataType.FLOAT, [3, 8], randn(r, 24, 0.6)),
        makeTensor('b2', DataType.FLOAT, [3], randn(r, 3, 0.5)),
        ...act.inits,
      ],
    }),
  );
}

describe('unit-wise composites as torch exports them (Swish, GELU before opset 20, ReLU6, Mish)', () => {
  for (const kind of Object.keys(ACTIVATIONS)) {
    it(`${kind}: fused into one unit-wise step whose function is onnxruntime's (2e-6 relative)`, async () => {
      const act = ACTIVATIONS[kind];
      const g = loadModelBytes(activationNet(kind), `${kind}.onnx`).graph;
      g.sortTopologically();
      const variable = new Set(['x', 'h', ...act.nodes.flatMap((n) => n.output), 'y']);
      const fused = fuseUnitComposites(g, (t) => variable.has(t));
      expect(fused.size).toBe(1);
      const [[name, composite]] = [...fused];
      expect(composite.label).toBe(act.label);
      // the graph: Gemm, the composite (reading h), what is left of the activation, Gemm
      expect(g.nodes[1]).toMatchObject({ name, opType: COMPOSITE_OP, inputs: ['h'], outputs: [act.fused] });
      expect(g.nodes.length).toBe(3 + act.nodes.length - composite.nodes.length);
      const upTo = act.nodes.findIndex((n) => n.output[0] === act.fused) + 1;
      const ys = await ortFunction(
        act.nodes
          .slice(0, upTo)
          .map((n) => ({ ...n, input: n.input.map((x) => (x === 'h' ? 'x' : x)), output: n.output.map((o) => (o === act.fused ? 'y' : o)) })),
        act.inits,
        13,
        GRID,
      );
      // a chain of piecewise-linear ops is composed into one piecewise-linear function
      if (kind === 'relu6') expect(composite.piecewiseLinear).toEqual({ kinks: [0, 1.5], slopes: [0, 4, 0], intercepts: [0, 0, 6] });
      else expect(composite.piecewiseLinear).toBeUndefined();
      GRID.forEach((x, i) => {
        expect(Math.abs(composite.f(x) - ys[i])).toBeLessThan(2e-6 * (1 + Math.abs(ys[i])));
        // (GELU's constant sqrt 2 is a float32 in the model: 3e-8 relative)
        expect(Math.abs(composite.f(x) - act.f(x))).toBeLessThan(1e-7 * (1 + Math.abs(x)));
      });
    });
  }

  // one smooth unit layer between two Gemms: the mean is exact (each output is linear in the
  // units, each unit's moments integrated); the covariance between units is the closure's (slope
  // plus the exact Hermite parts of orders 2 and 3 on a layer this small, hermiteExact), so only
  // Mehler's orders >= 4 are taken as independent. Monte Carlo: 40,000 samples, standard error of
  // a mean 0.005 output sd, of a variance ratio 0.007. Bounds: 4 standard errors on the mean,
  // 0.97-1.03 on the variance (measured 0.994-1.004 over the three nets and both sigmas; with
  // the Hermite rows sketched from 128 columns, Swish's was 0.955 at sigma 0.3).
  for (const kind of Object.keys(ACTIVATIONS)) {
    it(`${kind}: propagate against 40,000-sample Monte Carlo through the real model (sigma 0.3 and 1)`, async () => {
      const model = loadModelBytes(activationNet(kind), `${kind}.onnx`);
      expect(propagationSupport(model.graph)).toEqual({ supported: true, missing: [] });
      const prop = await createPropagator(model, { threads: 1 });
      expect(prop.plan).toEqual(ACTIVATIONS[kind].plan);
      const evaluator = await ModelEvaluator.create(model.graph, { name: 'x', shape: [6], size: 6 }, { name: 'y', shape: [3], size: 3 }, { file: kind });
      const mu = Float64Array.from([0.3, -0.8, 1.1, 0.2, -0.4, 0.9]);
      for (const sigma of [0.3, 1]) {
        const noise = { kind: 'isotropic' as const, sigma };
        const p = await prop.moments(mu, noise);
        const mc = await monteCarloMoments((b, c) => evaluator.evaluate(b, c), 3, mu, noise, { samples: 40_000, batchSize: 4000, seed: 5 });
        for (let i = 0; i < 3; i++) {
          const sd = Math.sqrt(mc.variance[i]);
          expect(Math.abs(p.mean[i] - mc.mean[i]) / sd, `sigma ${sigma} output ${i} mean`).toBeLessThan(4 / Math.sqrt(40_000));
          expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance`).toBeGreaterThan(0.97);
          expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance`).toBeLessThan(1.03);
        }
      }
      await prop.release();
      await evaluator.release();
    }, 60_000);
  }

  // maxout: Max of two Gemms, and Min of a third with a per-unit constant, rewritten as Relus of
  // differences (rules/maxmin.ts): each is exact per unit (the max of two jointly Gaussian
  // tensors is Clark's; a Min with a constant is a Relu of a Gaussian), and the output Gemm's
  // covariance between units goes through the closure: the Relus' Mehler orders >= 4 are taken as
  // independent between units. Monte Carlo as above; bounds: 4 standard errors on the mean,
  // 0.95-1.08 on the variance (measured: mean errors up to 0.005 sd, variances 0.982-1.055). (A
  // Max of three folds into a max with a non-Gaussian operand: bench/export-corpus's max of three
  // Linear layers gave variances 0.89-1.09 of Monte Carlo's.)
  it('maxout (Max of two Gemms) and Min with a per-unit constant: propagate against 40,000-sample Monte Carlo', async () => {
    const r = rng(21);
    const bytes = encodeModel(
      makeModel({
        name: 'maxout',
        node: [
          makeNode('Gemm', ['x', 'W1', 'b1'], ['a'], { attributes: { transB: 1 } }),
          makeNode('Gemm', ['x', 'W2', 'b2'], ['b'], { attributes: { transB: 1 } }),
          makeNode('Gemm', ['x', 'W3', 'b3'], ['c'], { attributes: { transB: 1 } }),
          makeNode('Max', ['a', 'b'], ['m']),
          makeNode('Min', ['c', 'cap'], ['k']),
          makeNode('Concat', ['m', 'k'], ['mk'], { attributes: { axis: 1 } }),
          makeNode('Gemm', ['mk', 'W4', 'b4'], ['y'], { attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 6])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
        initializer: [
          makeTensor('W1', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
          makeTensor('b1', DataType.FLOAT, [8], randn(r, 8, 0.5)),
          makeTensor('W2', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
          makeTensor('b2', DataType.FLOAT, [8], randn(r, 8, 0.5)),
          makeTensor('W3', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
          makeTensor('b3', DataType.FLOAT, [8], randn(r, 8, 0.5)),
          makeTensor(
            'cap',
            DataType.FLOAT,
            [8],
            Float32Array.from({ length: 8 }, (_, i) => -0.5 + 0.25 * i),
          ),
          makeTensor('W4', DataType.FLOAT, [3, 16], randn(r, 48, 0.6)),
          makeTensor('b4', DataType.FLOAT, [3], randn(r, 3, 0.5)),
        ],
      }),
    );
    const model = loadModelBytes(bytes, 'maxout.onnx');
    expect(propagationSupport(model.graph)).toEqual({ supported: true, missing: [] });
    const prop = await createPropagator(model, { threads: 1 });
    // max(a, b) = a + relu(b - a), min(c, cap) = c - relu(c - cap)
    expect(prop.plan.filter((s) => s === 'Relu')).toHaveLength(2);
    const evaluator = await ModelEvaluator.create(model.graph, { name: 'x', shape: [6], size: 6 }, { name: 'y', shape: [3], size: 3 }, { file: 'maxout' });
    const mu = Float64Array.from([0.3, -0.8, 1.1, 0.2, -0.4, 0.9]);
    for (const sigma of [0.3, 1]) {
      const noise = { kind: 'isotropic' as const, sigma };
      const p = await prop.moments(mu, noise);
      const mc = await monteCarloMoments((b, c) => evaluator.evaluate(b, c), 3, mu, noise, { samples: 40_000, batchSize: 4000, seed: 6 });
      for (let i = 0; i < 3; i++) {
        const sd = Math.sqrt(mc.variance[i]);
        expect(Math.abs(p.mean[i] - mc.mean[i]) / sd, `sigma ${sigma} output ${i} mean`).toBeLessThan(4 / Math.sqrt(40_000));
        expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance`).toBeGreaterThan(0.95);
        expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance`).toBeLessThan(1.08);
      }
    }
    await prop.release();
    await evaluator.release();
  }, 60_000);

  it('a gated product of two different noisy tensors (GLU-like) is not fused, and propagate names it', async () => {
    const r = rng(3);
    const bytes = encodeModel(
      makeModel({
        name: 'glu',
        node: [
          makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { attributes: { transB: 1 } }),
          makeNode('Gemm', ['x', 'W2', 'b2'], ['k'], { attributes: { transB: 1 } }),
          makeNode('Sigmoid', ['k'], ['s']),
          makeNode('Mul', ['h', 's'], ['a']),
          makeNode('Gemm', ['a', 'W3', 'b3'], ['y'], { attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 6])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
        initializer: [
          makeTensor('W1', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
          makeTensor('b1', DataType.FLOAT, [8], randn(r, 8)),
          makeTensor('W2', DataType.FLOAT, [8, 6], randn(r, 48, 0.6)),
          makeTensor('b2', DataType.FLOAT, [8], randn(r, 8)),
          makeTensor('W3', DataType.FLOAT, [3, 8], randn(r, 24, 0.6)),
          makeTensor('b3', DataType.FLOAT, [3], randn(r, 3)),
        ],
      }),
    );
    const model = loadModelBytes(bytes, 'glu.onnx');
    expect(propagationSupport(model.graph)).toEqual({ supported: false, missing: ['Mul (a product of two noisy tensors)'] });
    await expect(createPropagator(model)).rejects.toThrow(NetmomentsError);
    await expect(createPropagator(model)).rejects.toThrow(/Mul \(a product of two noisy tensors\)/);
  });

  it('a unit that can be 0 as a divisor is not fused: 1 / tanh(x) has no moments, and propagate says so', async () => {
    const r = rng(4);
    const bytes = encodeModel(
      makeModel({
        name: 'recip',
        node: [
          makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { attributes: { transB: 1 } }),
          makeNode('Tanh', ['h'], ['t']),
          makeNode('Div', ['one', 't'], ['q']),
          makeNode('Gemm', ['q', 'W2', 'b2'], ['y'], { attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 6])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
        initializer: [
          makeTensor('W1', DataType.FLOAT, [8, 6], randn(r, 48)),
          makeTensor('b1', DataType.FLOAT, [8], randn(r, 8)),
          makeTensor('W2', DataType.FLOAT, [3, 8], randn(r, 24)),
          makeTensor('b2', DataType.FLOAT, [3], randn(r, 3)),
          scalar('one', 1),
        ],
      }),
    );
    expect(propagationSupport(loadModelBytes(bytes, 'recip.onnx').graph)).toEqual({ supported: false, missing: ['Div (a noisy divisor)'] });
  });

  it('the CLI analyses a Swish net without any ReLU by propagation (method auto)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nm-composite-'));
    const file = join(dir, 'swish.onnx');
    writeFileSync(file, activationNet('swish'));
    const out = join(dir, 'r.json');
    const res = await cli(['analyze', file, '--sigma', '0.5', '--trust-check', '0', '--out', out]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/method: propagate/);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.method).toBe('propagate');
    expect(report.results[0].variance.every((v: number) => v > 0)).toBe(true);
  });
});
