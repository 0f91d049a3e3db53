import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeBatchDynamic } from '../../src/onnx/batch.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { onnx } from '../../src/onnx/proto.js';
import { hasDynamicBatch } from '../../src/onnx/shapes.js';
import { compareSplit, partition, randomFeeds, splitModel, splitModelAt, type SplitResult } from '../../src/onnx/split.js';
import { resolveRelu, splitPoints } from '../../src/onnx/splitpoint.js';
import { ALL_MODELS, fcNet, inputSkipNet, noReluNet, residualNet, torchBatch1Net, twoHeadNet } from './models.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures');
const fixtureFiles = existsSync(FIXTURES)
  ? readdirSync(FIXTURES)
      .filter((f) => f.endsWith('.onnx'))
      .sort()
  : [];

/** top(relu(bottom(x))) == model(x) on random inputs, in float32 tolerance; both parts reload standalone. */
async function roundTrip(graph: Graph, split: SplitResult, label: string): Promise<void> {
  const batch = graph.dataInputs.every(hasDynamicBatch) ? 3 : 1;
  for (const seed of [1, 2]) {
    const diffs = await compareSplit(graph, split, randomFeeds(graph, batch, seed));
    for (const d of diffs) expect(d.maxAbsDiff, `${label} output ${d.name}`).toBeLessThanOrEqual(1e-5 * Math.max(1, d.maxAbs));
  }
  // Both parts are standalone models: they survive encode -> load with all checks.
  for (const [part, g] of [
    ['bottom', split.bottom],
    ['top', split.top],
  ] as const) {
    const again = loadModelBytes(g.toBytes(), `${label}-${part}.onnx`);
    for (const io of [...again.graph.inputs, ...again.graph.outputs]) {
      expect(io.elemType, `${label} ${part} ${io.name} type`).toBeGreaterThan(0);
      expect(io.shape, `${label} ${part} ${io.name} shape`).toBeDefined();
    }
    const used = new Set(again.graph.nodes.flatMap((n) => n.inputs));
    for (const name of again.graph.initializers.keys()) expect(used.has(name), `${label} ${part} unused initializer ${name}`).toBe(true);
    expect(again.graph.opset).toBe(graph.opset);
  }
}

describe('split points', () => {
  it('resolves an index, a node name and an output tensor name', () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    expect(resolveRelu(g, 1).node.name).toBe('relu2');
    expect(resolveRelu(g, '1').node.name).toBe('relu2');
    expect(resolveRelu(g, 'relu1').index).toBe(0);
    expect(resolveRelu(g, 'r2').index).toBe(1);
  });

  it('lists the valid range and names for an unknown ReLU', () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    expect(() => resolveRelu(g, 2, 'r.onnx')).toThrow(/ReLU 2 is out of range: the model has 2 ReLUs \(0\.\.1\): 0: 'relu1' \(tensor 'r1'\), 1: 'relu2'/);
    expect(() => resolveRelu(g, '-1', 'r.onnx')).toThrow(/out of range/);
    expect(() => resolveRelu(g, 'relu9', 'r.onnx')).toThrow(/no ReLU named 'relu9'.*0: 'relu1'/);
    expect(() => resolveRelu(g, 0.5, 'r.onnx')).toThrow(/not an integer/);
  });

  it('says so for a model with no ReLU', () => {
    const g = loadModelBytes(noReluNet(), 'n.onnx').graph;
    expect(() => resolveRelu(g, 0, 'n.onnx')).toThrow(/no Relu node/);
  });

  it('gives shape without batch and width for each ReLU', async () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    expect(await splitPoints(g)).toEqual([
      { index: 0, node: 'relu1', input: 'a', output: 'r1', shape: [2, 6, 6], width: 72 },
      { index: 1, node: 'relu2', input: 'c', output: 'r2', shape: [2, 6, 6], width: 72 },
    ]);
  });
});

describe('splitModel', () => {
  it('finds skip tensors across the cut: the ReLU input itself and a tensor from below', async () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    const s = await splitModelAt(g, 0);
    expect(s.skip).toEqual(['a', 's']);
    expect(s.bottom.outputs.map((o) => o.name)).toEqual(['a', 's']);
    expect(s.top.inputs.map((i) => i.name)).toEqual(['r1', 'a', 's']);
    expect(s.top.inputs[0].shape).toEqual(['N', 2, 6, 6]);
    expect(s.bottom.initializers.has('unused')).toBe(false);
    expect(s.top.initializers.has('W1')).toBe(false);
    expect(s.top.metadata['netmoments.preprocess']).toBe('x - 127.5');
    expect(JSON.parse(s.top.metadata['netmoments.split.relu'])).toEqual(s.relu);
    await roundTrip(g, s, 'residual@0');
    const s1 = await splitModelAt(g, 1);
    expect(s1.skip).toEqual([]);
    await roundTrip(g, s1, 'residual@1');
  });

  it('makes the model input a skip tensor when the top reads it directly', async () => {
    const g = loadModelBytes(inputSkipNet(), 'i.onnx').graph;
    const s = await splitModelAt(g, 0);
    expect(s.skip).toEqual(['x']);
    expect(s.bottom.outputs.map((o) => o.name)).toEqual(['h', 'x']);
    expect(s.top.nodes.every((n) => n.opType !== 'Relu')).toBe(true);
    await roundTrip(g, s, 'inputSkip');
  });

  it('passes through an output below the cut, and takes a chosen output tensor', async () => {
    const g = loadModelBytes(twoHeadNet(), 't.onnx').graph;
    const s = await splitModelAt(g, 0);
    expect(s.skip).toEqual(['aux']);
    await roundTrip(g, s, 'twoHead');
    const only = await splitModelAt(g, 0, { output: 'y' });
    expect(only.top.outputs.map((o) => o.name)).toEqual(['y']);
    expect(only.skip).toEqual([]);
    await roundTrip(g, only, 'twoHead-y');
    await expect(splitModelAt(g, 0, { output: 'zzz' })).rejects.toThrow(/no tensor named 'zzz'/);
  });

  it('splits to an intermediate tensor', async () => {
    const g = loadModelBytes(fcNet(6, [5, 4, 3], 2), 'fc.onnx').graph;
    const s = await splitModelAt(g, 0, { output: 'h1' });
    expect(s.top.outputs.map((o) => o.name)).toEqual(['h1']);
    expect(s.top.nodes.map((n) => n.name)).toEqual(['fc1']);
    await roundTrip(g, s, 'fc-h1');
  });

  it('copies shape constants into the top instead of passing them across (torch export, after makeBatchDynamic)', async () => {
    const g = makeBatchDynamic(loadModelBytes(torchBatch1Net(), 't.onnx').graph);
    for (let k = 0; k < 2; k++) {
      const s = await splitModelAt(g, k);
      await roundTrip(g, s, `torch@${k}`);
      if (k === 0) {
        expect(s.skip).toEqual([]);
        expect(s.top.nodes.map((n) => n.opType)).toContain('Shape');
      }
    }
  });

  it('refuses a split point that does not belong to the model', async () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    const s = await splitModelAt(g, 0);
    const other = loadModelBytes(fcNet(), 'fc.onnx').graph;
    expect(() => splitModel(other, s.relu)).toThrow(/does not match/);
  });

  it('round-trips every split of every in-memory model', async () => {
    for (const [name, make] of Object.entries(ALL_MODELS)) {
      const base = loadModelBytes(make(), `${name}.onnx`).graph;
      const g = makeBatchDynamic(base);
      for (let k = 0; k < g.relus().length; k++) await roundTrip(g, await splitModelAt(g, k), `${name}@${k}`);
    }
  });

  it('partition puts ReLU K in neither part and every other needed node in exactly one', () => {
    const g = loadModelBytes(residualNet(), 'r.onnx').graph;
    const p = partition(g, resolveRelu(g, 0));
    const names = [...p.bottom, ...p.top].map((n) => n.name);
    expect(names).not.toContain('relu1');
    expect(new Set(names).size).toBe(names.length);
    expect(p.bottom.map((n) => n.name)).toEqual(['conv1', 'conv_skip']);
  });
});

describe.runIf(fixtureFiles.length > 0)('fixtures', () => {
  it.each(fixtureFiles)('%s: every split round-trips', async (f) => {
    const m = loadModel(join(FIXTURES, f));
    const graphs: [string, Graph][] = [[f, m.graph]];
    if (!m.graph.dataInputs.every(hasDynamicBatch)) graphs.push([`${f} (dynamic batch)`, makeBatchDynamic(m.graph)]);
    for (const [label, g] of graphs) {
      const n = g.relus().length;
      for (let k = 0; k < n; k++) await roundTrip(g, await splitModelAt(g, k, { file: f }), `${label}@${k}`);
    }
    // Bytes on disk equal what we would write back, modulo fields we drop: decode both to check names survive.
    const again = onnx.ModelProto.decode(m.graph.toBytes());
    expect(again.graph!.node!.length).toBe(m.graph.nodes.length);
  });
});
