/**
 * Hostile and unsupported models for the hardening tests, built in memory with the proto builders:
 * a small FC net to wrap (external data, absurd dims, broken tensors), a net whose bottom part
 * holds an op without a tangent rule (Abs), int8/uint8-quantized and float16 nets, nested If
 * chains, and helpers to edit encoded protobuf bytes.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DataType,
  encodeModel,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../../src/onnx/proto.js';

export function tmp(prefix = 'nm-hard-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function write(dir: string, name: string, bytes: Uint8Array | string): string {
  const file = join(dir, name);
  writeFileSync(file, bytes);
  return file;
}

/** Seeded uniform values in [-scale, scale]. */
export function values(n: number, seed = 1, scale = 0.5): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 4294967296) * 2 - 1) * scale;
  });
}

export function f32(name: string, dims: number[], seed = 1, scale = 0.5): TensorProto {
  return makeTensor(
    name,
    DataType.FLOAT,
    dims,
    values(
      dims.reduce((a, b) => a * b, 1),
      seed,
      scale,
    ),
  );
}

export interface NetParts {
  nodes?: NodeProto[];
  inits?: TensorProto[];
  input?: ValueInfoProto;
  output?: ValueInfoProto;
}

/**
 * x [N, 4] -> Gemm(W1 [6, 4], b1) -> h -> Relu -> r -> Gemm(W2 [3, 6], b2) -> y [N, 3], with parts
 * replaceable for the hostile variants.
 */
export function fcGraph(parts: NetParts = {}): GraphProto {
  return {
    name: 'fc',
    node: parts.nodes ?? [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    input: [parts.input ?? makeValueInfo('x', DataType.FLOAT, ['N', 4])],
    output: [parts.output ?? makeValueInfo('y', DataType.FLOAT, ['N', 3])],
    initializer: parts.inits ?? [f32('W1', [6, 4], 1), f32('b1', [6], 2), f32('W2', [3, 6], 3), f32('b2', [3], 4)],
  };
}

export function fcModel(parts: NetParts = {}): Uint8Array {
  return encodeModel(makeModel(fcGraph(parts)));
}

/** The bottom part (below ReLU 0) holds Abs, which has no tangent rule: x -> Gemm -> Abs -> Gemm -> Relu -> Gemm. */
export function absBottomModel(): Uint8Array {
  return fcModel({
    nodes: [
      makeNode('Gemm', ['x', 'W0', 'b0'], ['g'], { name: 'fc0', attributes: { transB: 1 } }),
      makeNode('Abs', ['g'], ['a'], { name: 'abs' }),
      makeNode('Gemm', ['a', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    inits: [f32('W0', [4, 4], 5), f32('b0', [4], 6), f32('W1', [6, 4], 1), f32('b1', [6], 2), f32('W2', [3, 6], 3), f32('b2', [3], 4)],
  });
}

/** A scalar tensor of an integer type the builders do not write (int8): raw bytes by hand. */
function rawTensor(name: string, dataType: number, dims: number[], raw: Uint8Array): TensorProto {
  return { name, dataType, dims, rawData: raw };
}

/**
 * Quantized: x -> QuantizeLinear(scale, zero point) -> DequantizeLinear -> Gemm -> Relu -> Gemm,
 * the zero point int8 (type 'int8') or uint8.
 */
export function quantizedModel(type: 'int8' | 'uint8' = 'int8'): Uint8Array {
  const zp = type === 'int8' ? rawTensor('zp', DataType.INT8, [], Uint8Array.of(0)) : makeTensor('zp', DataType.UINT8, [], [128]);
  return fcModel({
    nodes: [
      makeNode('QuantizeLinear', ['x', 'scale', 'zp'], ['xq'], { name: 'quant' }),
      makeNode('DequantizeLinear', ['xq', 'scale', 'zp'], ['xd'], { name: 'dequant' }),
      makeNode('Gemm', ['xd', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    inits: [makeTensor('scale', DataType.FLOAT, [], [0.05]), zp, f32('W1', [6, 4], 1), f32('b1', [6], 2), f32('W2', [3, 6], 3), f32('b2', [3], 4)],
  });
}

/** A float16 initializer (the weights of a half-precision export). */
export function float16WeightsModel(): Uint8Array {
  const w = rawTensor('W1', DataType.FLOAT16, [6, 4], new Uint8Array(48));
  return fcModel({
    nodes: [
      makeNode('Cast', ['x'], ['xh'], { name: 'to_half', attributes: { to: DataType.FLOAT16 } }),
      makeNode('Gemm', ['xh', 'W1'], ['hh'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Cast', ['hh'], ['h'], { name: 'to_float', attributes: { to: DataType.FLOAT } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    inits: [w, f32('W2', [3, 6], 3), f32('b2', [3], 4)],
  });
}

/** A float16 input (no float16 weights): x float16 -> Cast -> the FC net. */
export function float16InputModel(): Uint8Array {
  return fcModel({
    nodes: [
      makeNode('Cast', ['x'], ['xf'], { name: 'to_float', attributes: { to: DataType.FLOAT } }),
      makeNode('Gemm', ['xf', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    input: makeValueInfo('x', DataType.FLOAT16, ['N', 4]),
  });
}

/**
 * An If chain `depth` levels deep whose innermost then-branch holds a Relu, the model's only ReLU;
 * the condition c = sum(x) > 0 is computed from the one input x [N, 2].
 */
export function nestedIfModel(depth: number): Uint8Array {
  const leaf = (name: string, op: string): GraphProto => ({
    name,
    node: [makeNode(op, ['x'], [`${name}_out`], { name: `${name}_${op}` })],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT, ['N', 2])],
  });
  let body = leaf('inner', 'Relu');
  for (let d = 1; d < depth; d++) {
    body = {
      name: `b${d}`,
      node: [makeNode('If', ['c'], [`o${d}`], { name: `if${d}`, attributes: { then_branch: body, else_branch: leaf(`e${d}`, 'Neg') } })],
      output: [makeValueInfo(`o${d}`, DataType.FLOAT, ['N', 2])],
    };
  }
  return encodeModel(
    makeModel({
      name: 'nested',
      node: [
        makeNode('ReduceSum', ['x'], ['sum'], { name: 'sum', attributes: { keepdims: 0 } }),
        makeNode('Constant', [], ['zero'], { name: 'zero', attributes: { value: makeTensor('', DataType.FLOAT, [], [0]) } }),
        makeNode('Greater', ['sum', 'zero'], ['c'], { name: 'gt' }),
        makeNode('If', ['c'], ['y'], { name: 'top', attributes: { then_branch: body, else_branch: leaf('e0', 'Neg') } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 2])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
    }),
  );
}

/** The FC net with W1 in external data described by `entries` (location, offset, length). */
export function externalModel(entries: { key: string; value: string }[], where: 'graph' | 'subgraph' = 'graph'): Uint8Array {
  const W1: TensorProto = { name: 'W1', dataType: DataType.FLOAT, dims: [6, 4], dataLocation: 1, externalData: entries };
  if (where === 'graph') return fcModel({ inits: [W1, f32('b1', [6], 2), f32('W2', [3, 6], 3), f32('b2', [3], 4)] });
  // inside an If body: then-branch computes Gemm(x, W1) from its own initializer
  const branch = (name: string, inits: TensorProto[]): GraphProto => ({
    name,
    node: [makeNode('Gemm', ['x', name === 'then' ? 'W1' : 'W1b'], [`${name}_out`], { name: `${name}_fc`, attributes: { transB: 1 } })],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT, ['N', 6])],
    initializer: inits,
  });
  return encodeModel(
    makeModel({
      name: 'ext-sub',
      node: [
        makeNode('If', ['c'], ['h'], {
          name: 'branch',
          attributes: { then_branch: branch('then', [W1]), else_branch: branch('else', [f32('W1b', [6, 4], 9)]) },
        }),
        makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
        makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 4]), makeValueInfo('c', DataType.BOOL, [])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
      initializer: [f32('W2', [3, 6], 3), f32('b2', [3], 4)],
    }),
  );
}

/** The W1 values externalModel expects (float32 [6, 4]) as bytes. */
export function w1Bytes(): Uint8Array {
  return new Uint8Array(values(24, 1).buffer);
}

// ---------------------------------------------------------------------------------------------
// protobuf byte surgery

export function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 127) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** Offsets of ModelProto.graph's tag and its length varint in an encoded model. */
export function graphField(bytes: Uint8Array): { tag: number; lenStart: number; lenEnd: number; length: number } {
  let pos = 0;
  const read = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = bytes[pos++];
      v += (b & 127) * mul;
      if (b < 128) return v;
      mul *= 128;
    }
  };
  while (pos < bytes.length) {
    const tagPos = pos;
    const key = read();
    const no = Math.floor(key / 8);
    const wt = key & 7;
    if (wt === 0) read();
    else if (wt === 2) {
      const lenStart = pos;
      const length = read();
      if (no === 7) return { tag: tagPos, lenStart, lenEnd: pos, length };
      pos += length;
    } else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else throw new Error(`unexpected wire type ${wt}`);
  }
  throw new Error('no graph field');
}

/** Replace the graph field's length with `length` (the rest of the bytes unchanged). */
export function withGraphLength(bytes: Uint8Array, length: number): Uint8Array {
  const g = graphField(bytes);
  return Uint8Array.from([...bytes.subarray(0, g.lenStart), ...varint(length), ...bytes.subarray(g.lenEnd)]);
}

// ---------------------------------------------------------------------------------------------
// running the CLI

// the CLI's main() in this process, stdout and stderr captured (each file also checks a few cases
// through the real CLI with runCli)
export { cli } from '../helpers/cli.js';
