/**
 * Seeded synthetic piecewise-linear networks, built directly as ONNX (opset 13, IR 8).
 *
 * Every net has one input 'input' of shape ['N', ...inputShape] (dynamic batch 'N') and one
 * output 'output' of shape ['N', ...outputShape], float32. Weights are i.i.d. Gaussian from the
 * seeded Rng: N(0, 2/fan_in) for a layer followed by a ReLU (He scaling, so activations stay O(1)
 * through the ReLUs) and N(0, 1/fan_in) for the final layer; biases are i.i.d. N(0, 0.1^2) (never
 * all zero, so c1 != 0 in the paper's notation). Gemm layers store W as [out, in] with transB = 1.
 * ReLU nodes are named relu0, relu1, ... in graph order (the split index).
 *
 * The nets (widths are the ReLU layer sizes, in graph order):
 *
 *   fc-L, L in {2, 3, 4} (the paper's FC nets, input 100): L hidden layers Gemm -> Relu with
 *     widths [80, 60, 40, 20].slice(0, L), then Gemm -> 1 scalar output.
 *       fc-2: 100 -> 80 -> 60 -> 1            ReLU widths [80, 60]
 *       fc-3: 100 -> 80 -> 60 -> 40 -> 1      ReLU widths [80, 60, 40]
 *       fc-4: 100 -> 80 -> 60 -> 40 -> 20 -> 1 ReLU widths [80, 60, 40, 20]
 *     "L layers" counts the ReLU layers, so the paper's linearization at l = 2 (the second ReLU,
 *     split index 1) exists for every L; for L = 2 the top part is affine (the exact case).
 *
 *   conv-D, D in {2, 3, 4} (the paper's conv nets, input [1, 20, 20]): D conv layers Conv -> Relu,
 *     all 3x3 stride 1 with 2 output channels; the first pads by 1 (20x20 stays 20x20), the others
 *     are unpadded (each shrinks the map by 2); then Flatten -> Gemm -> 1 scalar output.
 *       ReLU shapes [2,20,20], [2,18,18], [2,16,16], [2,14,14] (widths 800, 648, 512, 392), the
 *       first D of them; the final Gemm reads 2*(22-2D)^2 features.
 *
 *   affine-relu-affine: input [12], Gemm 12 -> 16, Relu (width 16), Gemm 16 -> 4; output [4].
 *
 *   residual: input [1, 8, 8].
 *       conv0 = Conv(1->4, 3x3, pad 1)(input); relu0 = Relu(conv0)                 [4, 8, 8]
 *       conv1 = Conv(4->4, 3x3, pad 1)(relu0); relu1 = Relu(conv1)                 [4, 8, 8]
 *       conv2 = Conv(4->4, 3x3, pad 1)(relu1); sum = Add(conv2, relu0); relu2 = Relu(sum)
 *       output = Gemm(256 -> 3)(Flatten(relu2))                                    [3]
 *     ReLU widths [256, 256, 256]. Cut at relu1: the top part reads relu1 and the skip tensor
 *     relu0, which does not pass through relu1.
 *
 *   batchnorm-avgpool: input [3, 12, 12].
 *       Conv(3->6, 3x3, pad 1) -> BatchNormalization -> Relu          [6, 12, 12] (width 864)
 *       -> AveragePool(2x2, stride 2)                                 [6, 6, 6]
 *       -> Conv(6->8, 3x3, no pad) -> BatchNormalization -> Relu      [8, 4, 4]   (width 128)
 *       -> GlobalAveragePool [8, 1, 1] -> Flatten [8] -> Gemm(8 -> 5) output [5]
 *     BatchNorm parameters: scale ~ U(0.5, 1.5), bias ~ N(0, 0.1^2), mean ~ N(0, 0.1^2),
 *     var ~ U(0.5, 1.5), epsilon 1e-5.
 */
import { graphFromModelProto, type Graph } from '../onnx/graph.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, type ModelProto, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { Rng } from './rng.js';

export const SYNTHETIC_OPSET = 13;
export const SYNTHETIC_PRODUCER = 'netmoments-synthetic';

export interface SyntheticNet {
  /** e.g. 'fc-3'; fixtures are written as `${name}.onnx`. */
  name: string;
  seed: number;
  /** Shape of one input, without the batch axis. */
  inputShape: number[];
  /** Shape of one output, without the batch axis. */
  outputShape: number[];
  /** Width of each ReLU, in graph order. */
  reluWidths: number[];
  model: ModelProto;
  /** Serialized ONNX model. */
  bytes: Uint8Array;
  /** The model as a Graph (a fresh object each call). */
  graph(): Graph;
}

/** Default seeds, one per net, so that different nets get different weights. */
export const DEFAULT_SEEDS = {
  fc: (layers: number) => 100 + layers,
  conv: (depth: number) => 200 + depth,
  affineReluAffine: 300,
  residual: 400,
  batchNormAvgPool: 500,
} as const;

class Builder {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  private reluCount = 0;
  readonly reluWidths: number[] = [];

  constructor(readonly rng: Rng) {}

  private tensor(name: string, dims: number[], data: Float32Array): string {
    this.inits.push(makeTensor(name, DataType.FLOAT, dims, data));
    return name;
  }

  gemm(x: string, inF: number, outF: number, name: string, beforeRelu: boolean): string {
    const std = Math.sqrt((beforeRelu ? 2 : 1) / inF);
    const w = this.tensor(`${name}.weight`, [outF, inF], this.rng.normals(outF * inF, std));
    const b = this.tensor(`${name}.bias`, [outF], this.rng.normals(outF, 0.1));
    this.nodes.push(makeNode('Gemm', [x, w, b], [name], { name, attributes: { transB: 1, alpha: 1, beta: 1 }, floatAttributes: ['alpha', 'beta'] }));
    return name;
  }

  conv(x: string, cin: number, cout: number, k: number, pad: number, name: string, beforeRelu: boolean): string {
    const fanIn = cin * k * k;
    const std = Math.sqrt((beforeRelu ? 2 : 1) / fanIn);
    const w = this.tensor(`${name}.weight`, [cout, cin, k, k], this.rng.normals(cout * fanIn, std));
    const b = this.tensor(`${name}.bias`, [cout], this.rng.normals(cout, 0.1));
    this.nodes.push(
      makeNode('Conv', [x, w, b], [name], {
        name,
        attributes: { kernel_shape: [k, k], strides: [1, 1], pads: [pad, pad, pad, pad], dilations: [1, 1], group: 1 },
      }),
    );
    return name;
  }

  batchNorm(x: string, channels: number, name: string): string {
    const scale = this.tensor(`${name}.scale`, [channels], this.rng.uniforms(channels, 0.5, 1.5));
    const bias = this.tensor(`${name}.bias`, [channels], this.rng.normals(channels, 0.1));
    const mean = this.tensor(`${name}.mean`, [channels], this.rng.normals(channels, 0.1));
    const variance = this.tensor(`${name}.var`, [channels], this.rng.uniforms(channels, 0.5, 1.5));
    this.nodes.push(
      makeNode('BatchNormalization', [x, scale, bias, mean, variance], [name], {
        name,
        attributes: { epsilon: 1e-5, momentum: 0.9 },
        floatAttributes: ['epsilon', 'momentum'],
      }),
    );
    return name;
  }

  relu(x: string, width: number): string {
    const name = `relu${this.reluCount++}`;
    this.reluWidths.push(width);
    this.nodes.push(makeNode('Relu', [x], [name], { name }));
    return name;
  }

  op(opType: string, inputs: string[], name: string, attributes?: Record<string, number | number[]>): string {
    this.nodes.push(makeNode(opType, inputs, [name], { name, attributes }));
    return name;
  }

  finish(name: string, seed: number, description: string, inputShape: number[], outputTensor: string, outputShape: number[]): SyntheticNet {
    // The graph output is named 'output': rename the last node's output.
    const last = this.nodes[this.nodes.length - 1];
    if (last.output?.[0] !== outputTensor) throw new Error(`synthetic ${name}: the output must be the last node's`);
    last.output = ['output'];
    const graph = {
      name,
      node: this.nodes,
      initializer: this.inits,
      input: [makeValueInfo('input', DataType.FLOAT, ['N', ...inputShape])],
      output: [makeValueInfo('output', DataType.FLOAT, ['N', ...outputShape])],
    };
    const model = makeModel(graph, {
      opset: SYNTHETIC_OPSET,
      producerName: SYNTHETIC_PRODUCER,
      producerVersion: '1',
      metadata: {
        'netmoments.synthetic': JSON.stringify({ name, seed, description, reluWidths: this.reluWidths }),
      },
    });
    const bytes = encodeModel(model);
    return {
      name,
      seed,
      inputShape,
      outputShape,
      reluWidths: [...this.reluWidths],
      model,
      bytes,
      graph: () => graphFromModelProto(model),
    };
  }
}

export const FC_INPUT = 100;
export const FC_WIDTHS = [80, 60, 40, 20] as const;

/** The paper's fully connected net with `layers` ReLU layers (2, 3 or 4), input 100, one output. */
export function fcNet(layers: number, seed: number = DEFAULT_SEEDS.fc(layers)): SyntheticNet {
  if (!Number.isInteger(layers) || layers < 1 || layers > FC_WIDTHS.length) throw new RangeError(`fcNet: layers must be 1..${FC_WIDTHS.length}`);
  const b = new Builder(new Rng(seed));
  let x = 'input';
  let width = FC_INPUT;
  for (let l = 0; l < layers; l++) {
    x = b.gemm(x, width, FC_WIDTHS[l], `fc${l}`, true);
    width = FC_WIDTHS[l];
    x = b.relu(x, width);
  }
  const out = b.gemm(x, width, 1, `fc${layers}`, false);
  const widths = [FC_INPUT, ...FC_WIDTHS.slice(0, layers), 1].join(' -> ');
  return b.finish(`fc-${layers}`, seed, `fully connected ${widths}, ReLU after each hidden layer`, [FC_INPUT], out, [1]);
}

export const CONV_INPUT = [1, 20, 20];
export const CONV_CHANNELS = 2;

/** The paper's conv net with `depth` Conv+ReLU layers (2, 3 or 4), input [1, 20, 20], one output. */
export function convNet(depth: number, seed: number = DEFAULT_SEEDS.conv(depth)): SyntheticNet {
  if (!Number.isInteger(depth) || depth < 1 || depth > 4) throw new RangeError('convNet: depth must be 1..4');
  const b = new Builder(new Rng(seed));
  let x = 'input';
  let cin = 1;
  let side = 20;
  for (let l = 0; l < depth; l++) {
    const pad = l === 0 ? 1 : 0;
    x = b.conv(x, cin, CONV_CHANNELS, 3, pad, `conv${l}`, true);
    cin = CONV_CHANNELS;
    side = side + 2 * pad - 2;
    x = b.relu(x, CONV_CHANNELS * side * side);
  }
  const flat = b.op('Flatten', [x], 'flatten', { axis: 1 });
  const features = CONV_CHANNELS * side * side;
  const out = b.gemm(flat, features, 1, 'fc', false);
  return b.finish(
    `conv-${depth}`,
    seed,
    `${depth} x (Conv 3x3 -> ${CONV_CHANNELS} channels, ReLU), first padded by 1; Flatten ${features} -> Gemm -> 1`,
    [...CONV_INPUT],
    out,
    [1],
  );
}

/** Gemm(12 -> 16), Relu, Gemm(16 -> 4). */
export function affineReluAffineNet(seed: number = DEFAULT_SEEDS.affineReluAffine): SyntheticNet {
  const b = new Builder(new Rng(seed));
  const h = b.gemm('input', 12, 16, 'fc0', true);
  const r = b.relu(h, 16);
  const out = b.gemm(r, 16, 4, 'fc1', false);
  return b.finish('affine-relu-affine', seed, 'Gemm 12 -> 16, Relu, Gemm 16 -> 4', [12], out, [4]);
}

/** A conv net whose skip connection (relu0 -> Add) crosses the cut at relu1. */
export function residualNet(seed: number = DEFAULT_SEEDS.residual): SyntheticNet {
  const b = new Builder(new Rng(seed));
  const c0 = b.conv('input', 1, 4, 3, 1, 'conv0', true);
  const r0 = b.relu(c0, 256);
  const c1 = b.conv(r0, 4, 4, 3, 1, 'conv1', true);
  const r1 = b.relu(c1, 256);
  const c2 = b.conv(r1, 4, 4, 3, 1, 'conv2', true);
  const sum = b.op('Add', [c2, r0], 'sum');
  const r2 = b.relu(sum, 256);
  const flat = b.op('Flatten', [r2], 'flatten', { axis: 1 });
  const out = b.gemm(flat, 256, 3, 'fc', false);
  return b.finish(
    'residual',
    seed,
    'conv0-relu0-conv1-relu1-conv2, Add(conv2, relu0), relu2, Flatten, Gemm 256 -> 3; the skip relu0 crosses the cut at relu1',
    [1, 8, 8],
    out,
    [3],
  );
}

/** Conv, BatchNormalization, Relu, AveragePool, Conv, BatchNormalization, Relu, GlobalAveragePool, Gemm. */
export function batchNormAvgPoolNet(seed: number = DEFAULT_SEEDS.batchNormAvgPool): SyntheticNet {
  const b = new Builder(new Rng(seed));
  let x = b.conv('input', 3, 6, 3, 1, 'conv0', true);
  x = b.batchNorm(x, 6, 'bn0');
  x = b.relu(x, 6 * 12 * 12);
  x = b.op('AveragePool', [x], 'avgpool', { kernel_shape: [2, 2], strides: [2, 2] });
  x = b.conv(x, 6, 8, 3, 0, 'conv1', true);
  x = b.batchNorm(x, 8, 'bn1');
  x = b.relu(x, 8 * 4 * 4);
  x = b.op('GlobalAveragePool', [x], 'gap');
  x = b.op('Flatten', [x], 'flatten', { axis: 1 });
  const out = b.gemm(x, 8, 5, 'fc', false);
  return b.finish(
    'batchnorm-avgpool',
    seed,
    'Conv 3->6 pad 1, BN, Relu, AveragePool 2x2/2, Conv 6->8, BN, Relu, GlobalAveragePool, Flatten, Gemm 8 -> 5',
    [3, 12, 12],
    out,
    [5],
  );
}

/** The six nets of the paper's tightness experiment (Fig. 2): fc-2..4 and conv-2..4. */
export function paperNets(seedOffset = 0): SyntheticNet[] {
  return [...[2, 3, 4].map((l) => fcNet(l, DEFAULT_SEEDS.fc(l) + seedOffset)), ...[2, 3, 4].map((d) => convNet(d, DEFAULT_SEEDS.conv(d) + seedOffset))];
}

/** Every synthetic fixture, with its default seed, in the order they are written. */
export function fixtureNets(): SyntheticNet[] {
  return [affineReluAffineNet(), ...paperNets(), residualNet(), batchNormAvgPoolNet()];
}
