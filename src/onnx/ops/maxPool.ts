/**
 * MaxPool: each output takes the tangent of its window's argmax, read from MaxPool's Indices output
 * on the primal (batch 1). Indices are flat over N*C*H*W of the input (N = 1 here); with
 * storage_order = 1 they are column-major over the spatial axes, so the tangent's spatial axes are
 * reversed before flattening. Ties go to the first maximal element in row-major order (what
 * onnxruntime's MaxPool does; test/tangent checks it). Tangent = Gather(flatten(T), Indices, axis 1).
 */
import { attrInt, attrInts } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
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

/** Each output is the maximum of its window: window kinks (2-D pooling over [C, H, W] only). */
export const maxPool: OpDefinition = {
  tangent: maxPoolTangent,
  kinks: (_graph, node, dims) => {
    const windows = dims ? maxPoolWindows(node, dims(node.inputs[0])) : undefined;
    return windows ? { kind: 'window', windows } : undefined;
  },
};
