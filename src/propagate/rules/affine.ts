/** Affine ops: which they are, and the variance-model nodes that push r through (L o L) r (see ./index.ts). */
import { NetmomentsError } from '../../errors.js';
import { attrFloat, attrInt, attrInts, attrString, type GraphNode } from '../../onnx/graph.js';

/** Affine ops: onnxruntime runs them (mean and JVPs); varianceNodes pushes r through (L o L). */
export const AFFINE_OPS: ReadonlySet<string> = new Set([
  'Conv',
  'ConvTranspose',
  'Gemm',
  'MatMul',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Neg',
  'Sum',
  'BatchNormalization',
  'Pad',
  'Reshape',
  'Flatten',
  'Transpose',
  'Squeeze',
  'Unsqueeze',
  'Concat',
  'Slice',
  'Split',
  'Gather',
  'Expand',
  'Tile',
  'Identity',
  'Dropout',
  'AveragePool',
  'GlobalAveragePool',
  'ReduceMean',
  'ReduceSum',
  'Resize',
  'Upsample',
]);

/** Ops that move, copy or sum the data input's units, the other inputs being indices, shapes or axes. */
const RELABEL_OPS: ReadonlySet<string> = new Set(['Reshape', 'Flatten', 'Transpose', 'Squeeze', 'Unsqueeze', 'Slice', 'Gather', 'Expand', 'Tile', 'ReduceSum']);

/** What a variance-node builder needs to know about the graph. */
export interface VarianceContext {
  /** Whether a tensor depends on the noisy input. */
  isVariable(name: string): boolean;
  /** The name of a variable tensor's residual-variance counterpart. */
  rName(name: string): string;
  /** Per-sample shape of a tensor (batch axis dropped). */
  shape(name: string): number[];
  /** A fresh tensor name. */
  fresh(hint: string): string;
  /** The default-domain opset the nodes are built for. */
  opset: number;
  /** A float32 constant (added as an initializer); returns its name. */
  constant(values: number[], dims: number[]): string;
}

const node = (opType: string, inputs: string[], outputs: string[], attributes: GraphNode['attributes'] = []): GraphNode => ({
  name: outputs[0],
  opType,
  domain: '',
  inputs,
  outputs,
  attributes,
});

/**
 * Why an affine op's node is not affine in the noise, given which tensors are noisy (undefined when
 * it is): a product or quotient of two noisy tensors, noisy weights, shapes or indices.
 */
export function nonAffineUse(n: GraphNode, isVariable: (name: string) => boolean): string | undefined {
  const V = (x: string | undefined) => x !== undefined && x !== '' && isVariable(x);
  const [a, b] = n.inputs;
  if (RELABEL_OPS.has(n.opType)) return n.inputs.slice(1).some(V) ? 'noisy indices or shapes' : undefined;
  switch (n.opType) {
    case 'Conv':
    case 'ConvTranspose':
      return V(n.inputs[1]) || V(n.inputs[2]) ? 'noisy weights' : undefined;
    case 'Gemm':
    case 'MatMul':
      return V(a) && V(b) ? 'both factors are noisy' : undefined;
    case 'Mul':
      return V(a) && V(b) ? 'a product of two noisy tensors' : undefined;
    case 'Div':
      return V(b) ? 'a noisy divisor' : undefined;
    case 'BatchNormalization':
      return n.inputs.slice(1).some(V) ? 'noisy parameters' : undefined;

    case 'Split':
      return n.inputs.slice(1).some(V) ? 'noisy split sizes' : undefined;
    case 'Resize':
    case 'Upsample': {
      if (n.inputs.slice(1).some(V)) return 'noisy scales or sizes';
      // nearest copies units, so residual variances move as values do; an interpolation mixes
      // neighbours with weights whose squares no Resize of r gives
      const mode = attrString(n, 'mode', 'nearest');
      return mode === 'nearest' ? undefined : `${mode} interpolation (propagate handles mode 'nearest')`;
    }
    default:
      return undefined;
  }
}

/**
 * Nodes that compute the residual variance of each variable output of an affine node from its
 * inputs' residual variances: diag(L diag(r) L^T) = (L o L) r for the node's linear part L.
 */
export function varianceNodes(n: GraphNode, ctx: VarianceContext): GraphNode[] {
  const V = (x: string) => x !== '' && ctx.isVariable(x);
  const R = (x: string) => (V(x) ? ctx.rName(x) : x);
  const out = n.outputs[0];
  const rOut = ctx.rName(out);
  const square = (c: string, nodes: GraphNode[]): string => {
    const s = ctx.fresh(`${c}_sq`);
    nodes.push(node('Mul', [c, c], [s]));
    return s;
  };
  const zerosLike = (c: string, nodes: GraphNode[]): string => {
    const z = ctx.fresh(`${c}_zero`);
    nodes.push(node('Mul', [c, ctx.constant([0], [])], [z]));
    return z;
  };
  const refuse = (why: string): never => {
    throw new NetmomentsError(`${n.opType} '${n.name}': ${why}; propagate has no moment rule for it`, { code: 'UNSUPPORTED' });
  };
  const problem = nonAffineUse(n, V);
  if (problem) refuse(problem);
  const nodes: GraphNode[] = [];
  const vars = n.inputs.filter(V);
  if (RELABEL_OPS.has(n.opType) || n.opType === 'Resize' || n.opType === 'Upsample') {
    // the residual variances move (or add up, ReduceSum; a nearest Resize copies them) as the values do
    nodes.push(node(n.opType, [R(n.inputs[0]), ...n.inputs.slice(1)], [rOut], n.attributes));
    return nodes;
  }
  switch (n.opType) {
    case 'Conv':
    case 'ConvTranspose': {
      nodes.push(node(n.opType, [R(n.inputs[0]), square(n.inputs[1], nodes)], [rOut], n.attributes));
      return nodes;
    }
    case 'Gemm': {
      const [a, b] = n.inputs;
      const alpha = attrFloat(n, 'alpha', 1);
      const attrs = n.attributes.filter((x) => x.name === 'transA' || x.name === 'transB');
      attrs.push({ name: 'alpha', type: 1, f: alpha * alpha });
      // a zero C (the variance has no bias term): Gemm before opset 11 requires three inputs, and
      // before opset 7 a C of shape [1] broadcasts only with broadcast = 1
      const zeroC = ctx.constant([0], [1]);
      if (ctx.opset < 7) attrs.push({ name: 'broadcast', type: 2, i: 1 });
      nodes.push(node('Gemm', V(a) ? [R(a), square(b, nodes), zeroC] : [square(a, nodes), R(b), zeroC], [rOut], attrs));
      return nodes;
    }
    case 'MatMul': {
      const [a, b] = n.inputs;
      nodes.push(node('MatMul', V(a) ? [R(a), square(b, nodes)] : [square(a, nodes), R(b)], [rOut]));
      return nodes;
    }
    case 'Add':
    case 'Sub':
    case 'Sum': {
      // independent residuals add; a constant term adds none (broadcast to the output's shape)
      let acc = '';
      for (const x of n.inputs) {
        const term = V(x) ? R(x) : '';
        if (!term) continue;
        if (!acc) acc = term;
        else {
          const t = ctx.fresh(`${out}_racc`);
          nodes.push(node('Add', [acc, term], [t]));
          acc = t;
        }
      }
      const consts = n.inputs.filter((x) => x && !V(x));
      if (consts.length > 0 && ctx.shape(out).join(',') !== ctx.shape(vars[0]).join(',')) {
        nodes.push(node('Add', [acc, zerosLike(consts[0], nodes)], [rOut]));
      } else nodes.push(node('Identity', [acc], [rOut]));
      return nodes;
    }
    case 'Mul': {
      const [a, b] = n.inputs;
      const c = V(a) ? b : a;
      nodes.push(node('Mul', [R(V(a) ? a : b), square(c, nodes)], [rOut]));
      return nodes;
    }
    case 'Div': {
      const [a, b] = n.inputs;
      nodes.push(node('Div', [R(a), square(b, nodes)], [rOut]));
      return nodes;
    }
    case 'Neg':
    case 'Identity':
    case 'Dropout':
      nodes.push(node('Identity', [R(n.inputs[0])], [rOut]));
      return nodes;
    case 'BatchNormalization': {
      // y = scale (x - mean) / sqrt(var + eps) + B: r_y = scale^2 r / (var + eps), written as a
      // BatchNormalization with scale^2, zero B and mean, and var' = (var + eps)^2 - eps
      const [, scale, bias, mean, variance] = n.inputs;
      const eps = attrFloat(n, 'epsilon', 1e-5);
      const e = ctx.constant([eps], []);
      const vpe = ctx.fresh(`${out}_vpe`);
      nodes.push(node('Add', [variance, e], [vpe]));
      const vpe2 = square(vpe, nodes);
      const v2 = ctx.fresh(`${out}_var2`);
      nodes.push(node('Sub', [vpe2, e], [v2]));
      const attrs = n.attributes.filter((x) => x.name === 'epsilon');
      nodes.push(node('BatchNormalization', [R(n.inputs[0]), square(scale, nodes), zerosLike(bias, nodes), zerosLike(mean, nodes), v2], [rOut], attrs));
      return nodes;
    }
    case 'Pad': {
      // constant padding adds units with no variance; edge/reflect copy variances like values
      const inputs = [R(n.inputs[0]), ...n.inputs.slice(1)];
      if (inputs.length > 2) inputs[2] = '';
      nodes.push(
        node(
          'Pad',
          inputs,
          [rOut],
          n.attributes.filter((x) => x.name !== 'value'),
        ),
      );
      return nodes;
    }
    case 'Concat': {
      nodes.push(
        node(
          'Concat',
          n.inputs.map((x) => (V(x) ? R(x) : zerosLike(x, nodes))),
          [rOut],
          n.attributes,
        ),
      );
      return nodes;
    }

    case 'Split': {
      nodes.push(
        node(
          'Split',
          [R(n.inputs[0]), ...n.inputs.slice(1)],
          n.outputs.map((o) => (o ? ctx.rName(o) : '')),
          n.attributes,
        ),
      );
      return nodes;
    }
    case 'AveragePool': {
      const kernel = attrInts(n, 'kernel_shape') ?? [];
      const K = kernel.reduce((a, d) => a * d, 1);
      const pads = attrInts(n, 'pads') ?? [];
      const padded = pads.some((p) => p !== 0) || !['NOTSET', 'VALID'].includes(attrString(n, 'auto_pad', 'NOTSET'));
      const pooled = ctx.fresh(`${out}_rpool`);
      nodes.push(node('AveragePool', [R(n.inputs[0])], [pooled], n.attributes));
      if (padded && attrInt(n, 'count_include_pad', 0) === 0) {
        // each output averages K_i < K real units: r_out = sum r / K_i^2 = AveragePool(r) / K_i,
        // with K_i / K = AveragePool with count_include_pad = 1 of a tensor of ones
        const ones = ctx.fresh(`${out}_ones`);
        nodes.push(node('Add', [zerosLike(R(n.inputs[0]), nodes), ctx.constant([1], [])], [ones]));
        const frac = ctx.fresh(`${out}_frac`);
        const attrs = n.attributes.filter((x) => x.name !== 'count_include_pad');
        attrs.push({ name: 'count_include_pad', type: 2, i: 1 });
        nodes.push(node('AveragePool', [ones], [frac], attrs));
        const cnt = ctx.fresh(`${out}_count`);
        nodes.push(node('Mul', [frac, ctx.constant([K], [])], [cnt]));
        nodes.push(node('Div', [pooled, cnt], [rOut]));
      } else nodes.push(node('Mul', [pooled, ctx.constant([1 / K], [])], [rOut]));
      return nodes;
    }
    case 'GlobalAveragePool':
    case 'ReduceMean': {
      const inSize = ctx.shape(n.inputs[0]).reduce((a, d) => a * d, 1);
      const outSize = ctx.shape(out).reduce((a, d) => a * d, 1);
      const pooled = ctx.fresh(`${out}_rpool`);
      nodes.push(node(n.opType, [R(n.inputs[0]), ...n.inputs.slice(1)], [pooled], n.attributes));
      nodes.push(node('Mul', [pooled, ctx.constant([outSize / inSize], [])], [rOut]));
      return nodes;
    }
    default:
      return refuse('not an affine op');
  }
}
