/**
 * MaxPool: each output takes the tangent of its window's argmax, read from MaxPool's Indices output
 * on the primal (batch 1). Indices are flat over N*C*H*W of the input (N = 1 here); with
 * storage_order = 1 they are column-major over the spatial axes, so the tangent's spatial axes are
 * reversed before flattening. Ties go to the first maximal element in row-major order (what
 * onnxruntime's MaxPool does; test/tangent checks it). Tangent = Gather(flatten(T), Indices, axis 1).
 */
import { attrInt, attrInts } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, sliceConst, staticShape } from './adjointHelpers.js';
import { maxPoolWindows } from './poolWindows.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const maxPoolTangent: TangentRule = (c) => {
  const t = onlyData(c);
  if (c.opset < 8) c.unsupported(`MaxPool has no Indices output before opset 8 (the model has opset ${c.opset})`);
  let indices = c.node.outputs[1] || '';
  if (!indices) {
    // A second pooling of the primal, for its Indices: the primal node itself stays unchanged.
    [, indices] = c.b.emit('MaxPool', [c.x(0)], 2, c.b.attrsOf(c.node));
  }
  let source = t;
  if (attrInt(c.node, 'storage_order', 0) === 1) {
    const spatial = attrInts(c.node, 'kernel_shape')?.length;
    if (!spatial) return c.unsupported('storage_order = 1 without kernel_shape');
    const perm = [0, 1, ...Array.from({ length: spatial }, (_, i) => 1 + spatial - i)];
    source = c.b.op('Transpose', [t], { perm });
  }
  const flat = c.b.op('Flatten', [source], { axis: 1 }); // [k, C*H*W]
  const picked = c.b.op('Gather', [flat, indices], { axis: 1 }); // [k, 1, C, Ho, Wo]
  // Squeeze rather than reshape to shape(y): with ceil_mode, onnxruntime's kernel can drop a last
  // window that starts in the padding while shape inference keeps it, and a Shape(y) folded from
  // the inferred shape would then disagree with the data.
  return [c.b.squeeze(picked, [1]), undefined];
};

/**
 * MaxPool's adjoint: each output's cotangent goes to its window's argmax (the Indices output, so
 * ties go where the tangent rule takes them from) and cotangents landing on the same input add up.
 * ScatterElements (opset 11) has no add reduction before opset 16, so the outputs are split in
 * phases whose windows cannot overlap (every q-th output per spatial axis, q = ceil(extent /
 * stride)): within a phase the argmaxes are distinct, each phase is scattered into zeros, and the
 * phases are summed.
 */
const maxPoolAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  if (!u) return [undefined];
  if (c.opset < 11) c.unsupported(`ScatterElements needs opset 11 (the model has opset ${c.opset})`);
  if (attrInt(c.node, 'storage_order', 0) === 1) c.unsupported('storage_order = 1');
  const kernel = attrInts(c.node, 'kernel_shape');
  if (!kernel) return c.unsupported('no kernel_shape');
  const r = kernel.length;
  const strides = attrInts(c.node, 'strides') ?? new Array<number>(r).fill(1);
  const dilations = attrInts(c.node, 'dilations') ?? new Array<number>(r).fill(1);
  const q = kernel.map((k, i) => Math.ceil(((k - 1) * dilations[i] + 1) / strides[i]));
  const size = staticShape(c, c.x(0))
    .slice(1)
    .reduce((a, d) => a * d, 1);
  const outDims = c.b.shape(c.y(0));
  let indices = c.node.outputs[1] || '';
  if (!indices) [, indices] = c.b.emit('MaxPool', [c.x(0)], 2, c.b.attrsOf(c.node));
  const zeros = c.b.op('Expand', [c.b.scalar(0), c.b.op('Concat', [c.b.kvec(), c.b.ints([size])], { axis: 0 })]); // [k, C*H*W]
  const axes = Array.from({ length: r }, (_, i) => 2 + i);
  const terms: string[] = [];
  const phase = new Array<number>(r).fill(0);
  for (;;) {
    // a phase past the end of a (statically known) output axis is empty
    if (!outDims || phase.every((p, i) => p < outDims[2 + i])) {
      const strided = q.some((v) => v > 1);
      const cut = (t: string) => (strided ? sliceConst(c, t, phase, new Array<number>(r).fill(2 ** 31 - 1), axes, q) : t);
      const updates = c.b.op('Flatten', [cut(u)], { axis: 1 }); // [k, m]
      const idx = c.b.op('Expand', [c.b.op('Flatten', [cut(indices)], { axis: 1 }), c.b.op('Shape', [updates])]); // [k, m]
      terms.push(c.b.op('ScatterElements', [zeros, idx, updates], { axis: 1 }));
    }
    let i = r - 1;
    while (i >= 0 && ++phase[i] >= q[i]) phase[i--] = 0;
    if (i < 0) break;
  }
  const total = terms.length === 1 ? terms[0] : c.b.op('Sum', terms);
  return [c.b.reshapeLike(total, c.x(0))];
};

/** Each output is the maximum of its window: window kinks (2-D pooling over [C, H, W] only). */
export const maxPool: OpDefinition = {
  tangent: maxPoolTangent,
  adjoint: maxPoolAdjoint,
  kinks: (_graph, node, dims) => {
    const windows = dims ? maxPoolWindows(node, dims(node.inputs[0])) : undefined;
    return windows ? { kind: 'window', windows } : undefined;
  },
};
