/** Conv is linear in its data input: the tangent is the same convolution with the same weights and no bias. */
import { attrInt, attrInts, attrString } from '../graph.js';
import type { AdjointContext, AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, windowGeometry } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const convTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('Conv', [t, c.x(1)], c.b.attrsOf(c.node))];
};

/** ConvTranspose: likewise linear in its data input. */
const convTransposeTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('ConvTranspose', [t, c.x(1)], c.b.attrsOf(c.node))];
};

/** Spatial kernel sizes of a Conv or ConvTranspose node: kernel_shape, else the weight's dims [2:]. */
function kernelOf(c: AdjointContext): number[] {
  const k = attrInts(c.node, 'kernel_shape') ?? c.b.shape(c.x(1))?.slice(2);
  if (!k) return c.unsupported('its kernel shape is not known before the run');
  return [...k];
}

/**
 * The adjoint of a stride-1, undilated, ungrouped Conv with constant float32 weights W [M, C, k...]
 * and pads p (begin) and q (end) per axis no larger than k - 1, as a Conv itself: y_o = sum_i
 * x_{o+i-p} w_i gives x'_j = sum_o y'_o w_{j-o+p} = sum_i y'_{j+i-(k-1-p)} w_{k-1-i}, the
 * correlation of y' with the flipped kernel, pads k-1-p (begin) and k-1-q (end), the weights'
 * channel axes swapped: W' [C, M, k...], W'[c, m, s] = W[m, c, S-1-s] (s the flattened spatial
 * index, S its count: reversing every spatial axis reverses s). onnxruntime runs a Conv on its
 * thread pool and a ConvTranspose on one thread (VGG-11's reverse rows ran at one core), so this is
 * the form used where it applies; undefined where it does not.
 */
function convAdjointAsConv(c: AdjointContext, u: string, kernel: number[], g: ReturnType<typeof windowGeometry>): string | undefined {
  const W = c.b.constantValue(c.x(1));
  if (!W || !(W.data instanceof Float32Array) || W.dims.length !== kernel.length + 2) return undefined;
  if (attrInt(c.node, 'group', 1) !== 1 || g.strides.some((v) => v !== 1) || g.dilations.some((v) => v !== 1)) return undefined;
  const r = kernel.length;
  const pads = [...kernel.map((k, a) => k - 1 - g.pads[a]), ...kernel.map((k, a) => k - 1 - g.pads[a + r])];
  if (pads.some((v) => v < 0)) return undefined;
  const [M, C] = W.dims;
  const S = kernel.reduce((a, k) => a * k, 1);
  if (W.data.length !== M * C * S) return undefined;
  const src = W.data;
  const dst = new Float32Array(src.length);
  for (let m = 0; m < M; m++)
    for (let ch = 0; ch < C; ch++) {
      const from = (m * C + ch) * S;
      const to = (ch * M + m) * S + S - 1;
      for (let s = 0; s < S; s++) dst[to - s] = src[from + s];
    }
  const name = c.b.fresh(`${c.x(1)}__adjoint_conv`);
  c.b.initializers.set(name, { name, dataType: W.dataType, dims: [C, M, ...kernel], data: dst });
  return c.b.op('Conv', [u, name], { kernel_shape: kernel, pads, strides: new Array<number>(r).fill(1), dilations: new Array<number>(r).fill(1), group: 1 });
}

/**
 * Conv's adjoint in its data input: u -> ConvTranspose(u, W) with the same weights (Conv's
 * [M, C/g, k...] is ConvTranspose's [C_in, C_out/g, k...] layout), groups, strides, dilations and
 * pads, and the output_padding that gives back the input's spatial size (rows the strided
 * windows never reach get 0); as a Conv with flipped weights where that applies (convAdjointAsConv).
 */
const convAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  const none = c.node.inputs.map(() => undefined);
  if (!u) return none;
  const kernel = kernelOf(c);
  const g = windowGeometry(c, c.x(0), kernel);
  const asConv = convAdjointAsConv(c, u, kernel, g);
  if (asConv) return [asConv, ...none.slice(1)];
  const attrs = {
    group: attrInt(c.node, 'group', 1),
    kernel_shape: kernel,
    strides: g.strides,
    dilations: g.dilations,
    pads: g.pads,
    output_padding: g.outputPadding.some((p) => p !== 0) ? g.outputPadding : undefined,
  };
  return [c.b.op('ConvTranspose', [u, c.x(1)], attrs), ...none.slice(1)];
};

/**
 * ConvTranspose's adjoint: the Conv with the same weights, groups, strides, dilations and pads
 * (its output_padding rows are cut off by the Conv's floor). auto_pad and output_shape are not covered.
 */
const convTransposeAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  const none = c.node.inputs.map(() => undefined);
  if (!u) return none;
  if (attrString(c.node, 'auto_pad', 'NOTSET') !== 'NOTSET' || attrInts(c.node, 'output_shape')) c.unsupported('auto_pad or output_shape is set');
  const kernel = kernelOf(c);
  const r = kernel.length;
  const attrs = {
    group: attrInt(c.node, 'group', 1),
    kernel_shape: kernel,
    strides: attrInts(c.node, 'strides') ?? new Array<number>(r).fill(1),
    dilations: attrInts(c.node, 'dilations') ?? new Array<number>(r).fill(1),
    pads: attrInts(c.node, 'pads') ?? new Array<number>(2 * r).fill(0),
  };
  return [c.b.op('Conv', [u, c.x(1)], attrs), ...none.slice(1)];
};

export const conv: OpDefinition = { tangent: convTangent, adjoint: convAdjoint };
export const convTranspose: OpDefinition = { tangent: convTransposeTangent, adjoint: convTransposeAdjoint };
