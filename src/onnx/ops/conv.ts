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
 * Conv's adjoint in its data input: u -> ConvTranspose(u, W) with the same weights (Conv's
 * [M, C/g, k...] is ConvTranspose's [C_in, C_out/g, k...] layout), groups, strides, dilations and
 * pads, and the output_padding that gives back the input's spatial size (rows the strided
 * windows never reach get 0).
 */
const convAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  const none = c.node.inputs.map(() => undefined);
  if (!u) return none;
  const kernel = kernelOf(c);
  const g = windowGeometry(c, c.x(0), kernel);
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
