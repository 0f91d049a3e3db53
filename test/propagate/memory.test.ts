/**
 * The propagation's memory estimate (src/propagate/memory.ts, src/method.ts) walks the steps the
 * engine runs: on the bundled LeNet the layout's steps are the propagator's plan, one for one; the
 * estimate grows with the rank and covers the factor at the input; each step's figure is the sum of
 * the arrays the engine holds then (checked by hand on LeNet's first steps); onnxruntime's working
 * set of a segment is the larger of its node-by-node walk and twice its outputs (4x the output for
 * ResNet-18's [Conv,Conv,Add], as measured); an asked-for propagation over the memory limit is
 * refused with a RESOURCE error before any session is made, while auto falls back to two-stage. (The
 * estimate against real peak memory at ImageNet size is a benchmark: docs/BENCHMARKS.md, "Memory
 * estimate of propagate, step by step".)
 */
import { describe, expect, it } from 'vitest';
import {
  chooseMethod,
  estimatePropagateMemory,
  fallbackRank,
  LARGE_INPUT,
  LARGE_INPUT_ADDED_ROWS,
  nonAffineSteps,
  planPropagation,
  propagateRows,
} from '../../src/method.js';
import { NetmomentsError } from '../../src/errors.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { buildGraph, makeNode, randomInit, rng } from '../tangent/helpers.js';
import { DEFAULT_HERMITE_COLUMNS, DEFAULT_RESIDUAL_ROWS, createPropagator, propagationMemory } from '../../src/propagate/index.js';
import { segmentWorkingSet } from '../../src/propagate/memory.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;

describe('propagate memory estimate', () => {
  it('walks the same steps as the engine and grows with the rank', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const plan = await planPropagation(model, {});
    expect(plan.layout).toBeDefined();
    const p = await createPropagator({ ...model, graph: plan.graph }, { output: plan.output.name, rank: 32, shapes: plan.shapes });
    try {
      const kinds = plan.layout!.steps.map((s) => (s.kind === 'affine' ? 'affine' : s.kind === 'maxpool' ? 'maxpool' : s.node.opType));
      const engine = p.plan.map((l) => (l.startsWith('affine') ? 'affine' : l.startsWith('MaxPool') ? 'maxpool' : l));
      expect(kinds).toEqual(engine);
      // the depth trust judges: LeNet's two MaxPool+Relu steps and its Relu
      expect(nonAffineSteps(plan)).toBe(3);
      expect(nonAffineSteps(plan)).toBe(p.plan.filter((l) => !l.startsWith('affine')).length);
    } finally {
      await p.release();
    }
    const n = plan.input.size;
    const at = (rank: number) => estimatePropagateMemory(plan, rank, n).total;
    expect(at(16)).toBeLessThan(at(64));
    expect(at(64)).toBeLessThan(at(n));
    // at least the input's factor: (2K probes + rank) rows of n float32 values
    expect(at(n)).toBeGreaterThan((64 + n) * n * 4);
  }, 60_000);

  it('counts the weights of Conv and ConvTranspose, which the segments keep in their sessions', async () => {
    const r = rng(31);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 4, 4]]],
      outputs: ['y'],
      nodes: [
        makeNode('Conv', ['x', 'w1', 'b1'], ['c']),
        makeNode('Relu', ['c'], ['h']),
        makeNode('ConvTranspose', ['h', 'w2', 'b2'], ['t']),
        makeNode('Flatten', ['t'], ['f']),
        makeNode('MatMul', ['f', 'w3'], ['y']),
      ],
      initializers: [
        randomInit(r, 'w1', [3, 2, 3, 3]),
        randomInit(r, 'b1', [3]),
        randomInit(r, 'w2', [3, 2, 3, 3]),
        randomInit(r, 'b2', [2]),
        randomInit(r, 'w3', [32, 5]),
      ],
    });
    const plan = await planPropagation(loadModelBytes(g.toBytes(), 'conv-transpose.onnx'), {});
    // Conv's and ConvTranspose's weights and biases, not MatMul's (fed as an input at each run)
    expect(plan.convWeightBytes).toBe(4 * (3 * 2 * 9 + 3 + 3 * 2 * 9 + 2));
  });

  it("counts, step by step, the arrays the engine holds (LeNet's first steps by hand)", async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const plan = await planPropagation(model, {});
    const layout = plan.layout!;
    const units = (t: string) => layout.sampleShape(t).reduce((a, d) => a * d, 1);
    const [conv1, pool1, conv2] = layout.steps;
    if (conv1.kind !== 'affine' || pool1.kind !== 'maxpool' || conv2.kind !== 'affine') throw new Error('unexpected LeNet layout');
    const n = units(layout.input); // 784
    const c1 = units(conv1.nodes[0].outputs[0]); // 20 x 24 x 24
    const p1 = units(pool1.output); // 20 x 12 x 12
    const c2 = units(conv2.nodes[0].outputs[0]);
    const [P, K, R, rank] = [32, 16, 16, 64];
    const mem = propagationMemory(layout, { rank, sketched: true, hermiteRows: K, hermiteProbes: P, residualRows: R });
    expect(mem.steps.map((s) => s.label)).toEqual([
      'affine[Conv]',
      'MaxPool+Relu',
      'affine[Conv]',
      'MaxPool+Relu',
      'affine[Flatten,Gemm]',
      'Relu',
      'affine[Gemm]',
    ]);
    expect(mem.peak).toBe(Math.max(...mem.steps.map((s) => s.bytes)));
    expect(mem.rows).toBe(P + rank + 4 * R + 3 * K); // a residual before each segment, Hermite rows at each kinked step
    const tensor = (u: number, rows: number) => u * rows * 4 + 2 * u * 8;
    const input = tensor(n, P + rank);
    // first segment: the input factor, its copy with R residual rows, onnxruntime's output and the copy handed back
    const rows1 = P + rank + R;
    expect(mem.steps[0].bytes).toBe(input + n * rows1 * 4 + 2 * c1 * rows1 * 4);
    // MaxPool+Relu: the input factor, the segment's output, the pooled factor with K rows more, its
    // buffers (a K-row buffer, eleven float64 per unit) and the window Grams (2 x 2 windows); the
    // copy with residual rows died with the first step's function and was collected at this step's
    // first allocation
    const rows2 = rows1 + K;
    const buffers = K * p1 * 4 + 11 * p1 * 8 + p1 * (4 * 20 + 2 * 8);
    const grams = p1 * 16 * 8 + p1 * (rows1 - P) * (4 + 1 / 8);
    // (and the first segment's session's memory arena, kept at its run's peak: a small segment)
    const arena1 = 2 * c1 * rows1 * 4;
    expect(mem.steps[1].bytes).toBeCloseTo(input + arena1 + tensor(c1, rows1) + tensor(p1, rows2) + buffers + grams, 6);
    // second segment: the residual rows go into the room the pool left (no copy); the first
    // segment's output (last read by the pool) is gone, collected at this step's first allocation
    const rows3 = rows2 + R;
    const ort = Math.max(2 * c2, p1 + c2) * rows3 * 4;
    expect(mem.steps[2].bytes).toBeCloseTo(input + arena1 + tensor(p1, rows2) + p1 * R * 4 + ort, 6);
  }, 60_000);

  it('adds the reverse pass: what each rule records to the end, then the cotangent rows of the widest step', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const plan = await planPropagation(model, {});
    const layout = plan.layout!;
    const units = (t: string) => layout.sampleShape(t).reduce((a, d) => a * d, 1);
    const K = 16;
    const options = { rank: 64, sketched: true, hermiteRows: K, hermiteProbes: 32, residualRows: 16 };
    const forward = propagationMemory(layout, options);
    const reverse = propagationMemory(layout, { ...options, reverse: { rows: 10 } });
    // the last step holds the tapes of both MaxPool+Relu steps and the Relu: slopes and residual
    // (2 float64 per unit), K Hermite rows (float32), and the MaxPools' window weights and indices
    const tapes = layout.steps.reduce(
      (a, s) => a + (s.kind === 'affine' ? 0 : units(s.output) * (16 + 4 * K) + (s.kind === 'maxpool' ? units(s.input) * 12 : 0)),
      0,
    );
    expect(reverse.steps[6].bytes - forward.steps[6].bytes).toBe(tapes);
    expect(reverse.steps).toHaveLength(8);
    expect(reverse.steps[7].label).toBe('reverse pass');
    // the widest step is the first Conv (784 + 11,520 units): 20 bytes per cotangent row and unit
    expect(reverse.steps[7].bytes).toBeGreaterThanOrEqual(10 * (784 + 11520) * 20 + tapes);
    // recording Kt = 64 Hermite columns instead of K: each tape holds Kt rows, and each kinked step
    // its Kt-row buffer (rules/factor.ts carryHermiteRows); nothing else changes
    const Kt = 64;
    const more = propagationMemory(layout, { ...options, reverse: { rows: 10, hermiteColumns: Kt } });
    const kinked = layout.steps.reduce((a, s) => a + (s.kind === 'affine' ? 0 : units(s.output)), 0);
    expect(more.steps[6].bytes - reverse.steps[6].bytes).toBe(kinked * (Kt - K) * 4);
    expect(more.rows).toBe(reverse.rows);
  }, 60_000);

  it("takes onnxruntime's working set as the larger of its node walk and twice the outputs", () => {
    const size = (t: string) => ({ a: 100, b: 200, c1: 100, c2: 100, y: 100 })[t] ?? 0;
    const variable = new Set(['a', 'b', 'c1', 'c2', 'y']);
    // ResNet-18's downsampling [Conv,Conv,Add]: both inputs reordered (1 + 2), then the two Conv
    // outputs and the sum: 4 outputs' worth at once (measured 4.00 x the output alone)
    const down = [
      { opType: 'Conv', inputs: ['a', 'w1'], outputs: ['c1'] },
      { opType: 'Conv', inputs: ['b', 'w2'], outputs: ['c2'] },
      { opType: 'Add', inputs: ['c1', 'c2'], outputs: ['y'] },
    ];
    expect(segmentWorkingSet(down, variable, new Set(['y']), size)).toBe(400);
    // [Conv,Add]: the reordered input and the Conv's output, then the output and the sum (2 x the output, measured 2.00)
    const block = [
      { opType: 'Conv', inputs: ['a', 'w1'], outputs: ['c1'] },
      { opType: 'Add', inputs: ['c1', 'c2'], outputs: ['y'] },
    ];
    expect(segmentWorkingSet(block, variable, new Set(['y']), size)).toBe(200);
  });

  it('refuses --method propagate over the limit before any session; auto falls back to two-stage', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const limit = { bytes: 1024 * 1024, source: 'option' as const };
    const err = await chooseMethod(model, { method: 'propagate' }, 784, limit).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetmomentsError);
    expect((err as NetmomentsError).code).toBe('RESOURCE');
    expect((err as Error).message).toMatch(/this run would need about .* \(factors of rank \d+/);
    const auto = await chooseMethod(model, {}, 784, limit);
    expect(auto.decision.method).toBe('two-stage');
    expect(auto.decision.reason).toMatch(/^propagate at rank \d+ would need .*, over the memory limit$/);
  }, 60_000);

  it('a large input falls back to rank 128, its kinked ops sharing at most LARGE_INPUT_ADDED_ROWS rows', () => {
    const large = (steps: number) => ({ input: { name: 'x', shape: [3, 224, 224], size: 150_528 }, nonAffine: steps, layout: undefined });
    expect(fallbackRank(large(17))).toBe(128);
    expect(fallbackRank({ input: { name: 'x', shape: [1, 28, 28], size: 784 } })).toBe(256);
    const added = (steps: number) => {
      const r = propagateRows(large(steps));
      return steps * (r.hermiteColumns + r.residualRows);
    };
    // few kinked ops (AlexNet 7, ResNet-18 17): 48 Hermite + 16 residual rows each, within the budget
    expect(propagateRows(large(7))).toMatchObject({ hermiteColumns: 48, residualRows: 16 });
    expect(propagateRows(large(17))).toMatchObject({ hermiteColumns: 48, residualRows: 16 });
    expect(added(17)).toBeLessThanOrEqual(LARGE_INPUT_ADDED_ROWS);
    // more (SqueezeNet 28): fewer Hermite rows each, still within it; many (MobileNetV2 35, 60): 16 at least
    expect(propagateRows(large(28)).hermiteColumns).toBeLessThan(48);
    expect(added(28)).toBeLessThanOrEqual(LARGE_INPUT_ADDED_ROWS);
    expect(propagateRows(large(35)).hermiteColumns).toBe(16);
    expect(propagateRows(large(60)).hermiteColumns).toBe(16);
    // a small input keeps the defaults whatever its depth
    const small = { input: { name: 'x', shape: [256, 256], size: LARGE_INPUT }, nonAffine: 60, layout: undefined };
    expect(propagateRows(small)).toMatchObject({ hermiteColumns: DEFAULT_HERMITE_COLUMNS, residualRows: DEFAULT_RESIDUAL_ROWS });
  });
});
