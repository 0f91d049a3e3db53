/**
 * Batch-1 exports whose Reshape bakes the batch in where a constant-shape rewrite does not see it,
 * found on real exporter output (torch, onnx.helper):
 *
 * - F2: torch `x.view(x.size(0), -1)` with do_constant_folding=False at batch 1: the Reshape shape
 *   is Constant -> Unsqueeze -> Concat (opset 13: axes as input; opset 11: axes attribute);
 * - F3: a model that declares a dynamic batch but reshapes to the constant [1, -1]
 *   (torch `reshape(1, -1)` with dynamic_axes): inspect and split used to probe it at batch 2 as is;
 * - F4: opset 14 Reshape [1, -1] with allowzero=1 at batch 1: the rewrite needs the batch-1 shapes,
 *   which the analysis path did not pass (and the error asked the CLI user for them).
 *
 * Every variant is the same small conv net with the same weights; the clean variant (dynamic batch,
 * Flatten) is the reference: the rewritten models must give its outputs at any batch, analyze must
 * give its moments, and inspect and split must see its split points.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Analyzer } from '../../src/analyze.js';
import { batchProbeTensors, makeBatchDynamic, makeBatchDynamicProbed } from '../../src/onnx/batch.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, type NodeProto, type TensorProto } from '../../src/onnx/proto.js';
import { runWithIntermediates } from '../../src/onnx/shapes.js';
import { toIntegers } from '../../src/onnx/tensor.js';
import { writeNpy } from '../../src/data/npy.js';
import { cli, expectBadInput } from '../helpers/cli.js';
import { randn, rng } from '../onnx/models.js';
import { tmp, write } from './models.js';

type Variant = 'clean' | 'chain13' | 'chain11' | 'dynReshape1' | 'allowzero14';

const ROW = [1, 6, 6];
const N_IN = 36;

/**
 * x [B,1,6,6] -> Conv(2, 3x3) -> Relu (p = 32) -> flatten -> Gemm(5) -> Relu (p = 5) -> Gemm(3) -> y,
 * with the flatten written the way each variant's exporter writes it.
 */
function convNet(variant: Variant): Uint8Array {
  const r = rng(11);
  const inits: TensorProto[] = [
    makeTensor('W1', DataType.FLOAT, [2, 1, 3, 3], randn(r, 18, 0.6)),
    makeTensor('B1', DataType.FLOAT, [2], randn(r, 2, 0.1)),
    makeTensor('W2', DataType.FLOAT, [5, 32], randn(r, 160, 0.3)),
    makeTensor('B2', DataType.FLOAT, [5], randn(r, 5, 0.1)),
    makeTensor('W3', DataType.FLOAT, [3, 5], randn(r, 15, 0.5)),
    makeTensor('B3', DataType.FLOAT, [3], randn(r, 3, 0.1)),
  ];
  const flatten: NodeProto[] = [];
  let opset = 13;
  let batch: number | string = 1;
  const scalar = (name: string, v: number): NodeProto =>
    makeNode('Constant', [], [name], { name, attributes: { value: makeTensor(`${name}_v`, DataType.INT64, [], [v]) } });
  switch (variant) {
    case 'clean':
      batch = 'N';
      flatten.push(makeNode('Flatten', ['r1'], ['f'], { name: 'flatten', attributes: { axis: 1 } }));
      break;
    case 'chain13':
      flatten.push(
        scalar('c_batch', 1),
        scalar('c_rest', -1),
        makeNode('Constant', [], ['axes0'], { name: 'axes0', attributes: { value: makeTensor('axes0_v', DataType.INT64, [1], [0]) } }),
        makeNode('Unsqueeze', ['c_batch', 'axes0'], ['u_batch'], { name: 'unsq_batch' }),
        makeNode('Unsqueeze', ['c_rest', 'axes0'], ['u_rest'], { name: 'unsq_rest' }),
        makeNode('Concat', ['u_batch', 'u_rest'], ['shape'], { name: 'concat', attributes: { axis: 0 } }),
        makeNode('Reshape', ['r1', 'shape'], ['f'], { name: 'view' }),
      );
      break;
    case 'chain11':
      opset = 11;
      flatten.push(
        scalar('c_batch', 1),
        scalar('c_rest', -1),
        makeNode('Unsqueeze', ['c_batch'], ['u_batch'], { name: 'unsq_batch', attributes: { axes: [0] } }),
        makeNode('Unsqueeze', ['c_rest'], ['u_rest'], { name: 'unsq_rest', attributes: { axes: [0] } }),
        makeNode('Concat', ['u_batch', 'u_rest'], ['shape'], { name: 'concat', attributes: { axis: 0 } }),
        makeNode('Reshape', ['r1', 'shape'], ['f'], { name: 'view' }),
      );
      break;
    case 'dynReshape1':
      batch = 'batch_size';
      inits.push(makeTensor('shp', DataType.INT64, [2], [1, -1]));
      flatten.push(makeNode('Reshape', ['r1', 'shp'], ['f'], { name: 'reshape' }));
      break;
    case 'allowzero14':
      opset = 14;
      inits.push(makeTensor('shp', DataType.INT64, [2], [1, -1]));
      flatten.push(makeNode('Reshape', ['r1', 'shp'], ['f'], { name: 'reshape', attributes: { allowzero: 1 } }));
      break;
  }
  return encodeModel(
    makeModel(
      {
        name: variant,
        node: [
          makeNode('Conv', ['x', 'W1', 'B1'], ['c1'], { name: 'conv', attributes: { kernel_shape: [3, 3] } }),
          makeNode('Relu', ['c1'], ['r1'], { name: 'relu1' }),
          ...flatten,
          makeNode('Gemm', ['f', 'W2', 'B2'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
          makeNode('Relu', ['h'], ['r2'], { name: 'relu2' }),
          makeNode('Gemm', ['r2', 'W3', 'B3'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, [batch, ...ROW])],
        output: [makeValueInfo('y', DataType.FLOAT, [batch, 3])],
        initializer: inits,
      },
      { opset },
    ),
  );
}

const graphOf = (v: Variant): Graph => loadModelBytes(convNet(v), `${v}.onnx`).graph;

/** The reshape's new shape constant in the rewritten graph. */
function reshapeShape(g: Graph): number[] {
  const n = g.nodes.find((x) => x.opType === 'Reshape')!;
  return toIntegers(g.initializers.get(n.inputs[1])!);
}

/** y of `g` at batch 4 against the clean model's y on the same rows. */
async function expectCleanOutputs(g: Graph): Promise<void> {
  const x = randn(rng(5), 4 * N_IN);
  const feeds = { x: { type: 'float32' as const, data: x, dims: [4, ...ROW] } };
  const got = (await runWithIntermediates(g, feeds, []))['y'];
  const want = (await runWithIntermediates(graphOf('clean'), feeds, []))['y'];
  expect(got.dims).toEqual([4, 3]);
  const a = got.data as Float32Array;
  const b = want.data as Float32Array;
  for (let i = 0; i < b.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(b[i])));
}

const BROKEN: Variant[] = ['chain13', 'chain11', 'dynReshape1', 'allowzero14'];

describe('makeBatchDynamicProbed: Reshapes that bake batch 1 in', () => {
  it('the originals refuse batch 4 (the bug being fixed), the clean model takes it', async () => {
    const x = { x: { type: 'float32' as const, data: new Float32Array(4 * N_IN), dims: [4, ...ROW] } };
    await expect(runWithIntermediates(graphOf('dynReshape1'), x, [])).rejects.toThrow();
    expect((await runWithIntermediates(graphOf('clean'), x, []))['y'].dims).toEqual([4, 3]);
  });

  it('Constant -> Unsqueeze -> Concat shape (opsets 13 and 11): [-1, 32] from the batch-1 output, the chain dropped', async () => {
    for (const v of ['chain13', 'chain11'] as const) {
      const g = graphOf(v);
      expect(batchProbeTensors(g).sort()).toEqual(['f', 'r1', 'shape']);
      // without the probe the computed shape is left as it was (no values to read it from)
      expect(makeBatchDynamic(g).nodes.some((n) => n.opType === 'Concat')).toBe(true);
      const d = await makeBatchDynamicProbed(g, { file: `${v}.onnx` });
      expect(reshapeShape(d)).toEqual([-1, 32]);
      expect(d.nodes.map((n) => n.opType)).toEqual(['Conv', 'Relu', 'Reshape', 'Gemm', 'Relu', 'Gemm']);
      expect(d.inputs[0].shape).toEqual(['N', 1, 6, 6]);
      await expectCleanOutputs(d);
    }
  });

  it('opset-14 allowzero=1 [1, -1] at batch 1: [-1, 32] from the probe instead of an error', async () => {
    const g = graphOf('allowzero14');
    expect(() => makeBatchDynamic(g, { file: 'az.onnx' })).toThrow(/allowzero=1/);
    expect(batchProbeTensors(g).sort()).toEqual(['f', 'r1']);
    const d = await makeBatchDynamicProbed(g, { file: 'az.onnx' });
    expect(reshapeShape(d)).toEqual([-1, 32]);
    expect(d.initializers.has('shp')).toBe(false);
    await expectCleanOutputs(d);
  });

  it('a declared dynamic batch with a constant [1, -1] needs no probe and keeps its symbol', async () => {
    const g = graphOf('dynReshape1');
    expect(batchProbeTensors(g)).toEqual([]);
    const d = await makeBatchDynamicProbed(g);
    expect(reshapeShape(d)).toEqual([0, -1]);
    expect(d.inputs[0].shape).toEqual(['batch_size', 1, 6, 6]);
    await expectCleanOutputs(d);
  });

  it('models that need nothing are rewritten without a run (no probe tensors)', async () => {
    expect(batchProbeTensors(graphOf('clean'))).toEqual([]);
  });
});

describe('analyze, inspect and split agree on such models', () => {
  it('analyze gives the clean model moments (mean, exact and paper variance) for every variant', async () => {
    const x = randn(rng(9), N_IN, 0.8);
    const results = new Map<Variant, { mean: number[]; variance: number[]; variancePaper: number[] }>();
    for (const v of ['clean', ...BROKEN] as Variant[]) {
      const an = await Analyzer.create(loadModelBytes(convNet(v), `${v}.onnx`), { noise: { kind: 'isotropic', sigma: 0.3 }, method: 'two-stage' });
      try {
        const r = await an.analyzeInput(x, 0);
        results.set(v, { mean: [...r.mean], variance: [...r.variance!], variancePaper: [...r.variancePaper!] });
      } finally {
        await an.release();
      }
    }
    const ref = results.get('clean')!;
    expect(ref.variance.every((s) => s > 1e-4)).toBe(true); // the noise does reach the outputs
    for (const v of BROKEN) {
      const got = results.get(v)!;
      for (const k of ['mean', 'variance', 'variancePaper'] as const) {
        for (let i = 0; i < 3; i++) expect(Math.abs(got[k][i] - ref[k][i]), `${v} ${k}[${i}]`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref[k][i])));
      }
    }
  });

  it('the analyze command runs the F2 and F4 patterns (exit 0) with the clean model numbers', async () => {
    const dir = tmp('nm-batchreshape-');
    const input = join(dir, 'x.npy');
    writeNpy(input, randn(rng(9), N_IN, 0.8), [1, ...ROW]);
    const report = async (v: Variant) => {
      const file = write(dir, `${v}.onnx`, convNet(v));
      const out = join(dir, `${v}.json`);
      const r = await cli(['analyze', file, '--input', input, '--sigma', '0.3', '--relu', '1', '--out', out]);
      expect(r.code, `${v}: ${r.stderr}`).toBe(0);
      return JSON.parse(readFileSync(out, 'utf8')).results[0] as { mean: number[]; variance: number[] };
    };
    const ref = await report('clean');
    for (const v of ['chain13', 'allowzero14'] as const) {
      const got = await report(v);
      for (let i = 0; i < 3; i++) {
        expect(Math.abs(got.mean[i] - ref.mean[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref.mean[i])));
        expect(Math.abs(got.variance[i] - ref.variance[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, ref.variance[i]));
      }
    }
  });

  it('inspect exits 0 with ReLU widths 32 and 5 for every variant; the dynamic one shows its batch symbol', async () => {
    const dir = tmp('nm-batchreshape-');
    for (const v of ['clean', ...BROKEN] as Variant[]) {
      const r = await cli(['inspect', write(dir, `${v}.onnx`, convNet(v)), '--json']);
      expect(r.code, `${v}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      const j = JSON.parse(r.stdout);
      expect(j.relus.map((s: { width: number; shape: number[] }) => [s.width, s.shape])).toEqual([
        [32, [2, 4, 4]],
        [5, [5]],
      ]);
      const batch = v === 'clean' ? 'N' : v === 'dynReshape1' ? 'batch_size' : 1;
      expect(j.outputs).toEqual([{ name: 'y', type: 'float32', shape: [batch, 3] }]);
    }
  });

  it('split of the declared-dynamic [1, -1] model works without --dynamic-batch, and its parts take batch 4', async () => {
    const dir = tmp('nm-batchreshape-');
    const file = write(dir, 'dyn.onnx', convNet('dynReshape1'));
    for (const relu of ['0', '1']) {
      const out = join(dir, `out${relu}`);
      const r = await cli(['split', file, '--relu', relu, '--out-dir', out]);
      expect(r.code, r.stderr).toBe(0);
      const manifest = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8'));
      expect(manifest.relu.width).toBe(relu === '0' ? 32 : 5);
      const bottom = loadModel(join(out, 'bottom.onnx')).graph;
      const top = loadModel(join(out, 'top.onnx')).graph;
      expect(bottom.inputs[0].shape).toEqual(['batch_size', 1, 6, 6]);
      // top(relu(bottom(x))) at batch 4 equals the clean model
      const x = randn(rng(5), 4 * N_IN);
      const below = await runWithIntermediates(bottom, { x: { type: 'float32', data: x, dims: [4, ...ROW] } }, []);
      const v = below[manifest.relu.input];
      const y = Float32Array.from(v.data as Float32Array, (t) => Math.max(t, 0));
      const above = await runWithIntermediates(top, { [manifest.relu.output]: { type: 'float32', data: y, dims: v.dims } }, []);
      const want = (await runWithIntermediates(graphOf('clean'), { x: { type: 'float32', data: x, dims: [4, ...ROW] } }, []))['y'].data as Float32Array;
      const got = above['y'].data as Float32Array;
      expect(got.length).toBe(12);
      for (let i = 0; i < 12; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want[i])));
    }
  });

  it('inspect shows a declared-dynamic model that only runs at batch 1 (shapes at batch 1, one note)', async () => {
    // a constant [1, 2] concatenated with the activations: batch 1 is baked in where no rewrite reaches
    const r0 = rng(3);
    const bytes = encodeModel(
      makeModel({
        name: 'concat1',
        node: [
          makeNode('Gemm', ['x', 'W1', 'B1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
          makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
          makeNode('Concat', ['r', 'extra'], ['c'], { name: 'concat', attributes: { axis: 1 } }),
          makeNode('Gemm', ['c', 'W2', 'B2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 4])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
        initializer: [
          makeTensor('W1', DataType.FLOAT, [5, 4], randn(r0, 20)),
          makeTensor('B1', DataType.FLOAT, [5], randn(r0, 5)),
          makeTensor('extra', DataType.FLOAT, [1, 2], randn(r0, 2)),
          makeTensor('W2', DataType.FLOAT, [3, 7], randn(r0, 21)),
          makeTensor('B2', DataType.FLOAT, [3], randn(r0, 3)),
        ],
      }),
    );
    const file = write(tmp('nm-batchreshape-'), 'concat1.onnx', bytes);
    const r = await cli(['inspect', file, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.relus.map((s: { width: number }) => s.width)).toEqual([5]);
    expect(j.outputs[0].shape).toEqual([1, 3]);
    const lines = r.stderr.split('\n').filter((l) => l);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^netmoments: .*concat1\.onnx: note: the model does not run at batch 2 .*the shapes shown are at batch 1$/);
    expect((await cli(['inspect', file, '--quiet'])).stderr).toBe('');
  });

  it('an allowzero Reshape whose batch is not on axis 0 is refused in one line that asks nothing of the user', async () => {
    // Transpose moves the batch off axis 0, then Reshape [1, -1] allowzero=1: no batch-dynamic form exists
    const r0 = rng(4);
    const bytes = encodeModel(
      makeModel(
        {
          name: 'az_t',
          node: [
            makeNode('Relu', ['x'], ['r'], { name: 'relu' }),
            makeNode('Transpose', ['r'], ['t'], { name: 'transpose', attributes: { perm: [1, 0, 2] } }),
            makeNode('Reshape', ['t', 'shp'], ['f'], { name: 'reshape', attributes: { allowzero: 1 } }),
            makeNode('Gemm', ['f', 'W', 'B'], ['y'], { name: 'fc', attributes: { transB: 1 } }),
          ],
          input: [makeValueInfo('x', DataType.FLOAT, [1, 2, 3])],
          output: [makeValueInfo('y', DataType.FLOAT, [1, 2])],
          initializer: [
            makeTensor('shp', DataType.INT64, [2], [1, -1]),
            makeTensor('W', DataType.FLOAT, [2, 6], randn(r0, 12)),
            makeTensor('B', DataType.FLOAT, [2], randn(r0, 2)),
          ],
        },
        { opset: 14 },
      ),
    );
    const dir = tmp('nm-batchreshape-');
    const file = write(dir, 'az_t.onnx', bytes);
    const input = join(dir, 'x.npy');
    writeNpy(input, randn(r0, 6), [1, 2, 3]);
    const r = await cli(['analyze', file, '--input', input, '--sigma', '0.1', '--out', join(dir, 'a.json')]);
    expectBadInput(r, 'az_t.onnx', /Reshape 'reshape' fixes batch 1 with allowzero=1.*data \[2, 1, 3\] and output \[1, 6\].*cannot make its batch dynamic/);
    expect(r.stderr).not.toMatch(/pass the shapes|options\.shapes|makeBatchDynamic/);
  });
});
