/**
 * The op registry (src/onnx/ops/registry.ts): lookups by op type and domain, and where each kinked
 * op's derivative jumps (kinksOf): Relu, LeakyRelu and PRelu at 0, Clip at its bounds however they
 * are given, MaxPool's windows; nothing for smooth or linear ops or ops of other domains.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Graph, type GraphNode } from '../../src/onnx/graph.js';
import { hasNoTangent, isKinked, isLinearizable, isSplitPoint, kinksOf, linearizableOps, opDefinition, tangentRule } from '../../src/onnx/ops/registry.js';
import { maxPoolWindows } from '../../src/onnx/ops/poolWindows.js';
import { buildGraph, floatInit, makeNode } from '../tangent/helpers.js';

describe('op registry lookups', () => {
  it('knows ops of the default domain only', () => {
    expect(opDefinition('Conv')?.tangent).toBe(tangentRule('Conv'));
    expect(opDefinition('Conv', 'ai.onnx')).toBe(opDefinition('Conv'));
    expect(opDefinition('Conv', 'com.example')).toBeUndefined();
    expect(tangentRule('Relu', 'com.microsoft')).toBeUndefined();
    expect(opDefinition('NoSuchOp')).toBeUndefined();
    expect(opDefinition('constructor')).toBeUndefined();
    expect(opDefinition('toString')).toBeUndefined();
  });

  it('shares one definition across a family and lists every op with a tangent rule', () => {
    expect(opDefinition('Flatten')).toBe(opDefinition('Reshape'));
    expect(opDefinition('Squeeze')).toBe(opDefinition('Unsqueeze'));
    const ops = linearizableOps();
    expect(ops).toEqual([...ops].sort());
    for (const op of ['Conv', 'Gemm', 'MatMul', 'Relu', 'LeakyRelu', 'PRelu', 'Clip', 'MaxPool', 'Flatten', 'Shape']) {
      expect(ops).toContain(op);
      expect(isLinearizable(op)).toBe(true);
    }
    expect(isLinearizable('Asinh')).toBe(false);
    expect(hasNoTangent('Shape')).toBe(true);
    expect(hasNoTangent('Relu')).toBe(false);
    expect(hasNoTangent('constructor')).toBe(false);
  });

  it('kinked ops are exactly Relu, LeakyRelu, PRelu, Clip, HardSigmoid and MaxPool; split points are Relu, LeakyRelu, PRelu and Clip', () => {
    expect(linearizableOps().filter((op) => isKinked(op))).toEqual(['Clip', 'HardSigmoid', 'LeakyRelu', 'MaxPool', 'PRelu', 'Relu']);
    expect(isSplitPoint('HardSigmoid', '')).toBe(false);
    expect(isKinked('Relu', 'com.example')).toBe(false);
    expect(isSplitPoint('Relu', '')).toBe(true);
    expect(isSplitPoint('Relu', 'ai.onnx')).toBe(true);
    expect(isSplitPoint('Relu', undefined)).toBe(true);
    expect(isSplitPoint('Relu', 'com.example')).toBe(false);
    expect(isSplitPoint('LeakyRelu', '')).toBe(true);
    expect(isSplitPoint('PRelu', '')).toBe(true);
    expect(isSplitPoint('Clip', '')).toBe(true);
    expect(isSplitPoint('MaxPool', '')).toBe(false);
  });

  it("the analyze report schema's layerFlips op enum is the registry's kinked ops", () => {
    const schema = JSON.parse(readFileSync(new URL('../../schemas/analyze.schema.json', import.meta.url), 'utf8'));
    const ops: string[] = schema.$defs.layerFlips.properties.op.enum;
    expect([...ops].sort()).toEqual(linearizableOps().filter((op) => isKinked(op)));
  });
});

describe('kinksOf', () => {
  const node = (opType: string, inputs: string[], attributes: GraphNode['attributes'] = [], domain = ''): GraphNode => ({
    name: opType,
    opType,
    domain,
    inputs,
    outputs: ['y'],
    attributes,
  });

  it('Relu, LeakyRelu and PRelu: one kink at 0; other ops and domains: none', () => {
    const g = new Graph();
    expect(kinksOf(g, node('Relu', ['x']))).toEqual({ kind: 'unit', at: [0] });
    expect(kinksOf(g, node('LeakyRelu', ['x']))).toEqual({ kind: 'unit', at: [0] });
    expect(kinksOf(g, node('PRelu', ['x', 's']))).toEqual({ kind: 'unit', at: [0] });
    expect(kinksOf(g, node('Relu', ['x'], [], 'com.example'))).toBeUndefined();
    for (const op of ['Conv', 'Gemm', 'Sigmoid', 'AveragePool', 'Cos', 'HardSwish']) expect(kinksOf(g, node(op, ['x']))).toBeUndefined();
  });

  it('HardSigmoid: kinks where alpha x + beta crosses 0 and 1, sorted; none when alpha is 0', () => {
    const g = new Graph();
    const f = (name: string, v: number) => ({ name, type: 1, f: v });
    expect(kinksOf(g, node('HardSigmoid', ['x']))).toEqual({ kind: 'unit', at: [-2.5, 2.5] });
    expect(kinksOf(g, node('HardSigmoid', ['x'], [f('alpha', -0.5), f('beta', 0.25)]))).toEqual({ kind: 'unit', at: [-1.5, 0.5] });
    expect(kinksOf(g, node('HardSigmoid', ['x'], [f('alpha', 0)]))).toBeUndefined();
  });

  it('Clip: bounds from attributes (opset < 11), initializers or Constant nodes, sorted; none when missing or computed', () => {
    const g9 = buildGraph({
      opset: 9,
      inputs: [['x', [1, 4]]],
      outputs: ['a', 'b', 'c'],
      nodes: [
        makeNode('Clip', ['x'], ['a'], { attributes: { min: -0.5, max: 0.25 }, floatAttributes: ['min', 'max'] }),
        makeNode('Clip', ['x'], ['b'], { attributes: { max: 6 }, floatAttributes: ['max'] }),
        makeNode('Clip', ['x'], ['c'], { attributes: { min: -3.4028234663852886e38, max: 3.4028234663852886e38 }, floatAttributes: ['min', 'max'] }),
      ],
    });
    expect(g9.nodes.map((n) => kinksOf(g9, n))).toEqual([{ kind: 'unit', at: [-0.5, 0.25] }, { kind: 'unit', at: [6] }, undefined]);

    const g13 = buildGraph({
      opset: 13,
      inputs: [['x', [1, 4]]],
      outputs: ['a', 'b', 'c', 'd', 'e'],
      nodes: [
        makeNode('Constant', [], ['six'], { attributes: { value_float: 6 }, floatAttributes: ['value_float'] }),
        makeNode('Clip', ['x', 'zero', 'six'], ['a']),
        makeNode('Clip', ['x', '', 'hi'], ['b']),
        makeNode('Clip', ['x'], ['c']),
        makeNode('ReduceMax', ['x'], ['m'], { attributes: { keepdims: 0 } }),
        makeNode('Clip', ['x', 'zero', 'm'], ['d']),
        makeNode('Clip', ['x', 'hi', 'zero'], ['e']),
      ],
      initializers: [floatInit('zero', [], [0]), floatInit('hi', [], [0.5])],
    });
    const clips = g13.nodes.filter((n) => n.opType === 'Clip');
    expect(clips.map((n) => kinksOf(g13, n))).toEqual([
      { kind: 'unit', at: [0, 6] },
      { kind: 'unit', at: [0.5] },
      undefined, // no bounds: no kinks
      undefined, // max computed at run time
      { kind: 'unit', at: [0, 0.5] }, // min > max still kinks at both, sorted
    ]);
  });

  it('MaxPool: its windows over the input dims; none without dims or for 1-D pooling', () => {
    const g = new Graph();
    const pool = node(
      'MaxPool',
      ['x'],
      [
        { name: 'kernel_shape', type: 7, ints: [2, 2] },
        { name: 'strides', type: 7, ints: [2, 2] },
      ],
    );
    const dims = (t: string) => {
      expect(t).toBe('x');
      return [3, 4, 6];
    };
    const k = kinksOf(g, pool, dims);
    expect(k?.kind).toBe('window');
    if (k?.kind !== 'window') return;
    expect(k.windows).toEqual(maxPoolWindows(pool, [3, 4, 6]));
    expect(k.windows.windows).toBe(3 * 2 * 3);
    expect(k.windows.kernel).toBe(4);
    // window (c 1, row 1, column 2) holds input rows 2-3, columns 4-5 of channel 1
    const w = 1 * 6 + 1 * 3 + 2;
    expect([...k.windows.members.subarray(w * 4, w * 4 + 4)]).toEqual([24 + 16, 24 + 17, 24 + 22, 24 + 23]);
    expect(kinksOf(g, pool)).toBeUndefined();
    const pool1d = node('MaxPool', ['x'], [{ name: 'kernel_shape', type: 7, ints: [2] }]);
    expect(kinksOf(g, pool1d, () => [3, 8])).toBeUndefined();
    expect(kinksOf(g, node('GlobalMaxPool', ['x']), () => [3, 4, 6])).toBeUndefined();
  });
});
