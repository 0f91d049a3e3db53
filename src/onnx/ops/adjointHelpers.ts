/**
 * Helpers shared by the adjoint (VJP) rules: self-adjoint ops (diagonal Jacobians: the tangent rule
 * applied to the cotangent), un-broadcasting (the adjoint of a broadcast is a sum over the
 * broadcast axes), static shapes, the pads a convolution or pooling really uses, and opset-correct
 * Slice and Pad of a cotangent.
 */
import { attrInts, attrString, type GraphNode } from '../graph.js';
import type { AdjointContext, AdjointRule, RuleContext, TangentRule } from '../tangent/types.js';

/** Static shape (batch 1 in front) of a primal tensor, or the rule declines. */
export function staticShape(c: AdjointContext, name: string): readonly number[] {
  const s = c.b.shape(name);
  if (!s) c.unsupported(`the shape of '${name}' is not known before the run`);
  return s;
}

/** Only input 0 may vary (weights, bounds, shapes must not). */
export function onlyDataVaries(c: AdjointContext): void {
  for (let i = 1; i < c.node.inputs.length; i++) if (c.varies(i)) c.unsupported(`input ${i} ('${c.x(i)}') varies; only input 0 may`);
}

/**
 * The adjoint of an op whose Jacobian is symmetric (diagonal: Relu, LeakyRelu, PRelu, Clip,
 * BatchNormalization, Identity, Neg, Sigmoid, Tanh; or symmetric: Softmax, J = diag(s) - s s^T):
 * J^T u = J u, the tangent rule applied to the cotangent of output 0.
 */
export function selfAdjoint(tangent: TangentRule): AdjointRule {
  return (c) => {
    onlyDataVaries(c);
    const u = c.ct(0);
    const none = c.node.inputs.map(() => undefined);
    if (!u) return none;
    const ctx: RuleContext = {
      node: c.node,
      opset: c.opset,
      b: c.b,
      t: (i) => (i === 0 ? u : undefined),
      x: c.x,
      y: c.y,
      unsupported: c.unsupported,
    };
    const [out] = tangent(ctx);
    return [out, ...none.slice(1)];
  };
}

/**
 * Adjoint of numpy broadcasting of `input` to the shape of `output` (same rank, the batch axis 0
 * kept): u summed over the axes where input has 1 and output more, with keepdims.
 */
export function unbroadcast(c: AdjointContext, u: string, input: string, output: string): string {
  const a = staticShape(c, input);
  const y = staticShape(c, output);
  if (a.length !== y.length) c.unsupported(`operand '${input}' has rank ${a.length} but the output has rank ${y.length}`);
  const axes: number[] = [];
  for (let i = 1; i < a.length; i++) if (a[i] === 1 && y[i] !== 1) axes.push(i);
  return axes.length === 0 ? u : c.b.reduceSum(u, axes, true);
}

/** The adjoint of an op that only relabels row-major data: u reshaped to the tangent shape of input 0. */
export const reshapeAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  return [u ? c.b.reshapeLike(u, c.x(0)) : undefined, ...c.node.inputs.slice(1).map(() => undefined)];
};

/**
 * Pads (begin..., end...) a convolution or pooling node uses over spatial dims `spatial`, with its
 * kernel extent per axis ((k - 1) d + 1), strides and auto_pad (ONNX spec: SAME_UPPER puts the odd
 * pad at the end, SAME_LOWER at the beginning; VALID none).
 */
export function effectivePads(node: GraphNode, spatial: readonly number[], extent: readonly number[], strides: readonly number[]): number[] {
  const r = spatial.length;
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'VALID') return new Array<number>(2 * r).fill(0);
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const begin: number[] = [];
    const end: number[] = [];
    for (let i = 0; i < r; i++) {
      const out = Math.ceil(spatial[i] / strides[i]);
      const total = Math.max(0, (out - 1) * strides[i] + extent[i] - spatial[i]);
      const lo = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      begin.push(lo);
      end.push(total - lo);
    }
    return [...begin, ...end];
  }
  return attrInts(node, 'pads') ?? new Array<number>(2 * r).fill(0);
}

/**
 * The geometry of a strided window op (Conv, pooling) over input `x` with `kernel` spatial sizes:
 * strides, dilations, effective pads, and the output_padding a ConvTranspose with the same
 * geometry needs to give back the input's spatial size:
 *   out = floor((in + pb + pe - ext) / s) + 1,  ConvTranspose: s (out - 1) + op + ext - pb - pe = in.
 */
export function windowGeometry(
  c: AdjointContext,
  x: string,
  kernel: readonly number[],
): { strides: number[]; dilations: number[]; pads: number[]; outputPadding: number[]; spatial: number[] } {
  const spatial = staticShape(c, x).slice(2);
  const r = spatial.length;
  if (kernel.length !== r) c.unsupported(`kernel of rank ${kernel.length} over ${r} spatial axes`);
  const strides = attrInts(c.node, 'strides') ?? new Array<number>(r).fill(1);
  const dilations = attrInts(c.node, 'dilations') ?? new Array<number>(r).fill(1);
  const extent = kernel.map((k, i) => (k - 1) * dilations[i] + 1);
  const pads = effectivePads(c.node, spatial, extent, strides);
  const outputPadding = spatial.map((n, i) => {
    const out = Math.floor((n + pads[i] + pads[i + r] - extent[i]) / strides[i]) + 1;
    return n - (strides[i] * (out - 1) + extent[i] - pads[i] - pads[i + r]);
  });
  if (outputPadding.some((p, i) => p < 0 || p >= Math.max(strides[i], dilations[i]))) c.unsupported('its padding cannot be undone by a transposed convolution');
  return { strides, dilations, pads, outputPadding, spatial };
}

/** Slice of `x` over `axes` (constant starts, ends, steps; opset-correct form). */
export function sliceConst(c: AdjointContext, x: string, starts: number[], ends: number[], axes: number[], steps?: number[]): string {
  if (c.opset < 10) {
    if (steps && steps.some((s) => s !== 1)) c.unsupported('a strided slice needs opset 10');
    return c.b.op('Slice', [x], { starts, ends, axes });
  }
  const inputs = [x, c.b.ints(starts), c.b.ints(ends), c.b.ints(axes)];
  if (steps) inputs.push(c.b.ints(steps));
  return c.b.op('Slice', inputs);
}

/** Zero padding of `x` by `pads` (begin..., end... over all axes; opset-correct form). */
export function padZeros(c: AdjointContext, x: string, pads: number[]): string {
  if (pads.every((p) => p === 0)) return x;
  if (c.opset < 11) return c.b.op('Pad', [x], { pads, mode: 'constant' });
  return c.b.op('Pad', [x, c.b.ints(pads)], { mode: 'constant' });
}
