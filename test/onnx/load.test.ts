import { mkdtempSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, onnx, type GraphProto, type TensorProto } from '../../src/onnx/proto.js';
import { resolveRelu } from '../../src/onnx/splitpoint.js';
import { subgraphFacts } from '../../src/onnx/validate.js';
import { fcNet, reluInIfNet, reluNetWith, residualNet } from './models.js';

function loadError(bytes: Uint8Array, file = 'm.onnx'): NetmomentsError {
  try {
    loadModelBytes(bytes, file);
  } catch (e) {
    expect(e).toBeInstanceOf(NetmomentsError);
    const err = e as NetmomentsError;
    expect(err.file).toBe(file);
    expect(err.describe()).not.toContain('\n');
    return err;
  }
  throw new Error('expected the load to fail');
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'nm-load-'));
}

/** A Relu net whose Gemm weight W [2, 3] lives in external data. */
function externalModel(externalData: { key: string; value: string }[]): Uint8Array {
  const W: TensorProto = { name: 'W', dataType: DataType.FLOAT, dims: [2, 3], dataLocation: 1, externalData };
  const g: GraphProto = {
    name: 'ext',
    node: [makeNode('Relu', ['x'], ['r'], { name: 'relu' }), makeNode('Gemm', ['r', 'W'], ['y'], { name: 'fc', attributes: { transB: 1 } })],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 3])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
    initializer: [W],
  };
  return encodeModel(makeModel(g));
}

describe('loadModel', () => {
  it('loads an in-memory model: graph, opset, sha256, metadata', () => {
    const bytes = residualNet();
    const m = loadModelBytes(bytes, 'residual.onnx');
    expect(m.graph.nodes.map((n) => n.opType)).toContain('Conv');
    expect(m.graph.opset).toBe(13);
    expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.graph.metadata['netmoments.preprocess']).toBe('x - 127.5');
    expect(m.graph.relus().map((n) => n.name)).toEqual(['relu1', 'relu2']);
    expect(m.warnings).toEqual([]);
  });

  it('names a missing file and a directory', () => {
    expect(() => loadModel('/nonexistent/model.onnx')).toThrow(/no such file/);
    const dir = tmp();
    expect(() => loadModel(dir)).toThrow(/is a directory/);
  });

  it('rejects random bytes, truncation and an empty file with one line naming the file', () => {
    let seed = 12345;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let k = 0; k < 200; k++) {
      const bytes = Uint8Array.from({ length: 10 + (k % 300) }, rand);
      const e = loadError(bytes);
      expect(e.message).toMatch(/not an ONNX model|malformed|no graph|no nodes|IR version|opset|empty name|dimension|declares|input|output/);
    }
    const full = residualNet();
    for (const cut of [1, 7, full.length >> 2, full.length >> 1, full.length - 3]) {
      const e = loadError(full.slice(0, cut));
      expect(e.message.length).toBeGreaterThan(10);
    }
    expect(loadError(new Uint8Array(0)).message).toMatch(/empty/);
  });

  it('rejects a truncated model with a protobuf message', () => {
    const full = fcNet();
    const e = loadError(full.slice(0, Math.floor(full.length / 2)));
    expect(e.message).toMatch(/not an ONNX model or truncated|no graph|not produced|reads/);
  });

  it('rejects NaN and Inf initializers, naming them', () => {
    const bad = makeTensor('bias', DataType.FLOAT, [3], [0, Number.NaN, 1]);
    const bytes = reluNetWith([bad], [makeNode('Add', ['r', 'bias'], ['y'], { name: 'add' })]);
    expect(loadError(bytes).message).toMatch(/initializer 'bias'.*non-finite.*NaN at element 1/);
    const inf = makeTensor('bias', DataType.FLOAT, [3], [0, 1, Number.POSITIVE_INFINITY]);
    expect(loadError(reluNetWith([inf], [makeNode('Add', ['r', 'bias'], ['y'], { name: 'add' })])).message).toMatch(/\+Inf/);
  });

  it('rejects tensors whose data is shorter than their dims, and absurd or negative dims', () => {
    const short: TensorProto = { name: 'b', dataType: DataType.FLOAT, dims: [3], rawData: new Uint8Array(8) };
    expect(loadError(reluNetWith([short], [makeNode('Add', ['r', 'b'], ['y'], { name: 'add' })])).message).toMatch(/'b' declares 3 elements.*holds 8 bytes/);
    const huge: TensorProto = { name: 'b', dataType: DataType.FLOAT, dims: [100000, 100000, 100000], rawData: new Uint8Array(8) };
    expect(loadError(reluNetWith([huge], [makeNode('Add', ['r', 'b'], ['y'], { name: 'add' })])).message).toMatch(/absurd|elements/);
    const neg: TensorProto = { name: 'b', dataType: DataType.FLOAT, dims: [-3], floatData: [1, 2, 3] };
    expect(loadError(reluNetWith([neg], [makeNode('Add', ['r', 'b'], ['y'], { name: 'add' })])).message).toMatch(/invalid dimension/);
    const g: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['x'], ['y'])],
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: -4 }] } } } }],
      output: [makeValueInfo('y', 1, ['N'])],
    };
    expect(loadError(encodeModel(makeModel(g))).message).toMatch(/input 'x' declares a negative dimension/);
    g.input = [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2 ** 40 }] } } } }];
    expect(loadError(encodeModel(makeModel(g))).message).toMatch(/absurd/);
  });

  it('rejects graphs that are not DAGs or assign a tensor twice, and sorts a valid unsorted one', () => {
    const cyc: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['b'], ['a'], { name: 'n1' }), makeNode('Relu', ['a'], ['b'], { name: 'n2' })],
      input: [makeValueInfo('x', 1, ['N', 2])],
      output: [makeValueInfo('b', 1, ['N', 2])],
    };
    expect(loadError(encodeModel(makeModel(cyc))).message).toMatch(/cycle/);
    const twice: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['x'], ['a'], { name: 'n1' }), makeNode('Neg', ['x'], ['a'], { name: 'n2' })],
      input: [makeValueInfo('x', 1, ['N', 2])],
      output: [makeValueInfo('a', 1, ['N', 2])],
    };
    expect(loadError(encodeModel(makeModel(twice))).message).toMatch(/'a' is produced twice/);
    const unsorted: GraphProto = {
      name: 'g',
      node: [makeNode('Neg', ['a'], ['y'], { name: 'neg' }), makeNode('Relu', ['x'], ['a'], { name: 'relu' })],
      input: [makeValueInfo('x', 1, ['N', 2])],
      output: [makeValueInfo('y', 1, ['N', 2])],
    };
    const m = loadModelBytes(encodeModel(makeModel(unsorted)), 'u.onnx');
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['relu', 'neg']);
    expect(m.warnings[0]).toMatch(/topological/);
  });

  it('refuses unsupported initializer types by name', () => {
    const f16: TensorProto = { name: 'h', dataType: DataType.FLOAT16, dims: [3], rawData: new Uint8Array(6) };
    const e = loadError(reluNetWith([f16], [makeNode('Add', ['r', 'h'], ['y'], { name: 'add' })]));
    expect(e.message).toMatch(/'h'.*float16.*not supported/);
    expect(e.code).toBe('UNSUPPORTED');
  });

  it('densifies sparse initializers', () => {
    const g: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['x'], ['r']), makeNode('Add', ['r', 'sp'], ['y'])],
      input: [makeValueInfo('x', 1, ['N', 4])],
      output: [makeValueInfo('y', 1, ['N', 4])],
      sparseInitializer: [{ values: makeTensor('sp', DataType.FLOAT, [2], [5, 7]), indices: makeTensor('', DataType.INT64, [2], [1, 3]), dims: [4] }],
    };
    const m = loadModelBytes(encodeModel(makeModel(g)), 's.onnx');
    expect(Array.from(m.graph.initializers.get('sp')!.data as Float32Array)).toEqual([0, 5, 0, 7]);
  });

  it('detects ReLUs inside control-flow subgraphs and explains they cannot be split', () => {
    const m = loadModelBytes(reluInIfNet(), 'if.onnx');
    const facts = subgraphFacts(m.graph);
    expect(facts.controlFlowNodes).toEqual(['branch']);
    expect(facts.nestedRelus).toHaveLength(1);
    expect(() => resolveRelu(m.graph, 0, 'if.onnx')).toThrow(/inside control-flow subgraphs.*'branch'.*cannot be split/);
  });

  it('rejects subgraphs nested too deep', () => {
    const leaf: GraphProto = { name: 'b0', node: [makeNode('Relu', ['x'], ['o0'])], output: [makeValueInfo('o0', 1, ['N', 2])] };
    let body = leaf;
    for (let d = 1; d < 40; d++) {
      body = {
        name: `b${d}`,
        node: [makeNode('If', ['c'], [`o${d}`], { name: `if${d}`, attributes: { then_branch: body, else_branch: leaf } })],
        output: [makeValueInfo(`o${d}`, 1, ['N', 2])],
      };
    }
    const g: GraphProto = {
      name: 'deep',
      node: [makeNode('If', ['c'], ['y'], { name: 'top', attributes: { then_branch: body, else_branch: leaf } })],
      input: [makeValueInfo('x', 1, ['N', 2]), makeValueInfo('c', DataType.BOOL, [])],
      output: [makeValueInfo('y', 1, ['N', 2])],
    };
    expect(loadError(encodeModel(makeModel(g))).message).toMatch(/nest deeper/);
  });

  it('turns protobuf recursion too deep for the stack into a one-line error', () => {
    // graph { node { attribute { g { node { attribute { g ... } } } } } }, 20,000 levels, built inside out.
    const varint = (n: number): number[] => {
      const out: number[] = [];
      while (n > 127) {
        out.push((n & 127) | 128);
        n >>>= 7;
      }
      out.push(n);
      return out;
    };
    // Only headers, no payload: compute each length from the inside out, then emit outer to inner.
    const headers: number[][] = [];
    let len = 0;
    const wrap = (tag: number): void => {
      const h = [(tag << 3) | 2, ...varint(len)];
      headers.push(h);
      len += h.length;
    };
    for (let d = 0; d < 20000; d++) {
      wrap(6); // AttributeProto.g
      wrap(5); // NodeProto.attribute
      wrap(1); // GraphProto.node
    }
    wrap(7); // ModelProto.graph
    const bytes = Uint8Array.from(headers.reverse().flat());
    const e = loadError(bytes);
    expect(e.message).toMatch(/nest|not an ONNX model/);
  });

  it('rejects a graph output nothing produces and a model without a data input', () => {
    const g: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['x'], ['r'])],
      input: [makeValueInfo('x', 1, ['N', 2])],
      output: [makeValueInfo('nope', 1, ['N', 2])],
    };
    expect(loadError(encodeModel(makeModel(g))).message).toMatch(/'nope' is not produced/);
    const noInput: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['c'], ['r'])],
      input: [],
      output: [makeValueInfo('r', 1, [2])],
      initializer: [makeTensor('c', DataType.FLOAT, [2], [1, -1])],
    };
    expect(loadError(encodeModel(makeModel(noInput))).message).toMatch(/no data input/);
  });

  it('survives mutated bytes of a real model: success or its own one-line error', () => {
    const base = residualNet();
    let seed = 99;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    for (let k = 0; k < 500; k++) {
      const b = base.slice();
      const flips = 1 + rand(8);
      for (let f = 0; f < flips; f++) b[rand(b.length)] ^= 1 << rand(8);
      try {
        loadModelBytes(b, 'mut.onnx');
      } catch (e) {
        expect(e).toBeInstanceOf(NetmomentsError);
        expect((e as NetmomentsError).describe()).not.toMatch(/\n/);
      }
    }
  });
});

describe('external data', () => {
  const W = Float32Array.from([1, 2, 3, 4, 5, 6]);

  it('reads initializers from a file beside the model, with offset and length', () => {
    const dir = tmp();
    const data = new Uint8Array(8 + 24);
    data.set(new Uint8Array(W.buffer), 8);
    writeFileSync(join(dir, 'weights.bin'), data);
    writeFileSync(
      join(dir, 'm.onnx'),
      externalModel([
        { key: 'location', value: 'weights.bin' },
        { key: 'offset', value: '8' },
        { key: 'length', value: '24' },
      ]),
    );
    const m = loadModel(join(dir, 'm.onnx'));
    expect(Array.from(m.graph.initializers.get('W')!.data as Float32Array)).toEqual(Array.from(W));
    expect(m.externalData).toBe(true);
    // A subfolder is inside the model's folder too.
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'w.bin'), new Uint8Array(W.buffer));
    writeFileSync(join(dir, 'm2.onnx'), externalModel([{ key: 'location', value: 'sub/w.bin' }]));
    expect(loadModel(join(dir, 'm2.onnx')).graph.initializers.get('W')!.dims).toEqual([2, 3]);
  });

  it('refuses absolute paths, .., symlinks that leave the folder, and ranges past the end', () => {
    const outside = tmp();
    writeFileSync(join(outside, 'w.bin'), new Uint8Array(W.buffer));
    const dir = tmp();
    writeFileSync(join(dir, 'w.bin'), new Uint8Array(W.buffer));
    symlinkSync(join(outside, 'w.bin'), join(dir, 'link.bin'));
    const cases: [{ key: string; value: string }[], RegExp][] = [
      [[{ key: 'location', value: join(outside, 'w.bin') }], /absolute path/],
      [[{ key: 'location', value: '../w.bin' }], /leaves the model's folder/],
      [[{ key: 'location', value: 'sub/../../w.bin' }], /leaves the model's folder/],
      [[{ key: 'location', value: 'link.bin' }], /outside the model's folder/],
      [[{ key: 'location', value: 'missing.bin' }], /does not exist/],
      [
        [
          { key: 'location', value: 'w.bin' },
          { key: 'offset', value: '16' },
        ],
        /declares 24 bytes but its external data range holds 8/,
      ],
      [
        [
          { key: 'location', value: 'w.bin' },
          { key: 'offset', value: '8' },
          { key: 'length', value: '24' },
        ],
        /past the end/,
      ],
      [
        [
          { key: 'location', value: 'w.bin' },
          { key: 'offset', value: '-1' },
        ],
        /not a non-negative integer/,
      ],
      [[], /names no location/],
    ];
    for (const [entries, re] of cases) {
      writeFileSync(join(dir, 'm.onnx'), externalModel(entries));
      let msg = '';
      try {
        loadModel(join(dir, 'm.onnx'));
      } catch (e) {
        expect(e).toBeInstanceOf(NetmomentsError);
        expect((e as NetmomentsError).file).toBe(join(dir, 'm.onnx'));
        msg = (e as Error).message;
      }
      expect(msg, JSON.stringify(entries)).toMatch(re);
    }
  });

  it('writes external-data models back self-contained', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'w.bin'), new Uint8Array(W.buffer));
    writeFileSync(join(dir, 'm.onnx'), externalModel([{ key: 'location', value: 'w.bin' }]));
    const m = loadModel(join(dir, 'm.onnx'));
    const again = loadModelBytes(m.graph.toBytes(), join(tmp(), 'copy.onnx'));
    expect(Array.from(again.graph.initializers.get('W')!.data as Float32Array)).toEqual(Array.from(W));
    const decoded = onnx.ModelProto.decode(m.graph.toBytes());
    expect(decoded.graph!.initializer![0].dataLocation ?? 0).toBe(0);
  });
});
