import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, ROOT } from '../helpers/cli.js';
import { randn, reluInIfNet, residualNet, rng } from '../onnx/models.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';

/** x [N, 4] -> Gemm -> h; Sigmoid of h (gated: of a second Gemm's k) times h -> Gemm -> y. */
function swishNet(gated: boolean): Uint8Array {
  const r = rng(5);
  return encodeModel(
    makeModel({
      name: 'swish',
      node: [
        makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { attributes: { transB: 1 } }),
        makeNode('Gemm', ['x', 'W1', 'b1'], ['k'], { attributes: { transB: 1 } }),
        makeNode('Sigmoid', [gated ? 'k' : 'h'], ['s']),
        makeNode('Mul', ['h', 's'], ['a']),
        makeNode('Gemm', ['a', 'W2', 'b2'], ['y'], { attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 4])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
      initializer: [
        makeTensor('W1', DataType.FLOAT, [5, 4], randn(r, 20)),
        makeTensor('b1', DataType.FLOAT, [5], randn(r, 5)),
        makeTensor('W2', DataType.FLOAT, [2, 5], randn(r, 10)),
        makeTensor('b2', DataType.FLOAT, [2], randn(r, 2)),
      ],
    }),
  );
}

const LENET = join(ROOT, 'fixtures', 'lenet.onnx');
const RELU_KEYS = ['index', 'node', 'op', 'tensor', 'input', 'output', 'shape', 'width', 'supported', 'unsupportedOps'];
const TOP_KEYS = ['schema', 'file', 'inputs', 'outputs', 'opset', 'producer', 'ops', 'parameters', 'metadata', 'relus', 'propagate'];

function tmpModel(name: string, bytes: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'nm-inspect-'));
  const file = join(dir, name);
  writeFileSync(file, bytes);
  return file;
}

describe('netmoments inspect', () => {
  it('--json prints the netmoments.inspect/1 report with exactly the documented keys', async () => {
    const file = tmpModel('residual.onnx', residualNet());
    const r = await cli(['inspect', file, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j)).toEqual(TOP_KEYS);
    expect(j.schema).toBe('netmoments.inspect/1');
    expect(j.file).toBe(file);
    expect(j.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['N', 1, 6, 6] }]);
    expect(j.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['N', 4] }]);
    expect(j.opset).toBe(13);
    expect(j.producer).toBe('netmoments');
    expect(j.ops).toEqual({ Conv: 3, Relu: 2, Add: 2, MaxPool: 1, Flatten: 1, Gemm: 1 });
    expect(j.parameters).toBe(18 + 2 + 36 + 2 + 2 + 72 + 4 + 3);
    expect(j.metadata).toEqual({ 'netmoments.preprocess': 'x - 127.5', author: 'test' });
    expect(j.relus).toHaveLength(2);
    for (const s of j.relus) expect(Object.keys(s)).toEqual(RELU_KEYS);
    // every op of the residual net (Conv, Relu, Add, MaxPool, Flatten, Gemm) has a moment rule
    expect(j.propagate).toEqual({ supported: true, missing: [], fused: [] });
    expect(j.relus[0]).toEqual({
      index: 0,
      node: 'relu1',
      op: 'Relu',
      tensor: 'r1',
      input: 'a',
      output: 'r1',
      shape: [2, 6, 6],
      width: 72,
      supported: true,
      unsupportedOps: [],
    });
  });

  it('says whether every op has a moment rule (--method propagate), with the composites it fuses or the ops it lacks', async () => {
    const swish = await cli(['inspect', tmpModel('swish.onnx', swishNet(false))]);
    expect(swish.code).toBe(0);
    expect(swish.stdout).toContain('ReLU split points: none');
    expect(swish.stdout).toContain(
      'moments through every layer (--method propagate): every op on the path to the first output has a moment rule (fused unit-wise: Sigmoid*Mul)',
    );
    const gated = await cli(['inspect', tmpModel('gated.onnx', swishNet(true)), '--json']);
    expect(JSON.parse(gated.stdout).propagate).toEqual({ supported: false, missing: ['Mul (a product of two noisy tensors)'], fused: [] });
  });

  it('prints a readable table', async () => {
    const file = tmpModel('residual.onnx', residualNet());
    const r = await cli(['inspect', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ReLU split points \(2/);
    expect(r.stdout).toMatch(/index\s+node\s+op\s+tensor\s+shape\s+width p\s+linearizable/);
    expect(r.stdout).toMatch(/0\s+relu1\s+Relu\s+r1\s+\[2, 6, 6\]\s+72\s+yes/);
    expect(r.stdout).toMatch(/netmoments\.preprocess\s+x - 127\.5/);
  });

  it('reports a model whose ReLU sits in a control-flow body as having no split point, with If unsupported', async () => {
    const file = tmpModel('if.onnx', reluInIfNet());
    const r = await cli(['inspect', file, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.relus).toEqual([]);
    expect(j.ops.If).toBe(1);
  });

  it.runIf(existsSync(LENET))("lists LeNet's 3 ReLUs with widths 11520, 3200, 500, all supported", async () => {
    const r = await cli(['inspect', 'fixtures/lenet.onnx', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.relus.map((s: { width: number }) => s.width)).toEqual([11520, 3200, 500]);
    expect(j.relus.map((s: { shape: number[] }) => s.shape)).toEqual([[20, 24, 24], [50, 8, 8], [500]]);
    expect(j.relus.every((s: { supported: boolean }) => s.supported)).toBe(true);
  });
});
