/**
 * Per-op moment rules of moment propagation (issue 13), one function per op family, each a pure
 * function of the node (attributes, constants) and the incoming moments, so that each can move
 * into the op registry's per-op file later. A tensor's moments are (m, F, r): mean m, covariance
 * F F^T + diag(r) with F stored direction-major ([k, size]: row d is the image of the d-th input
 * noise direction) and r >= 0 a residual variance per unit.
 *
 * Three kinds of rule:
 *  - unit-wise (Relu, LeakyRelu, PRelu, Clip, Abs, Sigmoid, Tanh, Exp, Erf, Sin, Cos, Softplus):
 *    statistical linearization. Per unit, with s^2 = |F_i|^2 + r_i, the exact mean and variance of
 *    f(x_i), x_i ~ N(m_i, s^2) (src/moments/piecewise.ts, smooth.ts); F_i passes scaled by the
 *    expected slope E f'(x_i) (Stein's lemma: cov(f(x_i), z) = E f'(x_i) cov(x_i, z) for every z
 *    jointly Gaussian with x_i, so the output's covariance with the input noise is exact); r takes
 *    the rest of the exact variance, var - slope^2 |F_i|^2 (clamped at 0).
 *  - MaxPool: Clark's max applied pairwise over each window (src/moments/clark.ts), the window's
 *    elements taken by decreasing mean; F passes with Clark's weights Phi(alpha), 1 - Phi(alpha),
 *    exact for the covariance with anything jointly Gaussian with the pair.
 *  - affine ops: run by onnxruntime (mean and the columns of F through JVPs of the segment);
 *    `varianceNodes` gives the nodes that push r through the squared linear part (L o L) r.
 *    Residual variances of different units are taken as uncorrelated (their correlated part is in F).
 */
import { NetmomentsError } from '../errors.js';
import { attrFloat, attrInt, attrInts, attrString, graphConstant, type Graph, type GraphNode } from '../onnx/graph.js';
import type { TensorValue } from '../onnx/tensor.js';
import { clarkMax } from '../moments/clark.js';
import { ABS, RELU, clip, leakyRelu, piecewiseLinearMoments, type GaussianImage, type PiecewiseLinear } from '../moments/piecewise.js';
import { SMOOTH_FUNCTIONS, expMoments, smoothMoments } from '../moments/smooth.js';

/** Moments of one tensor (per sample, batch axis dropped). */
export interface TensorMoments {
  m: Float64Array;
  /** [k, size], direction-major. */
  F: Float64Array;
  k: number;
  r: Float64Array;
}

/** Per-unit moment function: unit index, input mean and sd -> mean, variance, expected slope. */
export type UnitMoments = (unit: number, m: number, s: number) => GaussianImage;

const isDefault = (n: GraphNode) => n.domain === '' || n.domain === 'ai.onnx';

function constantScalar(graph: Graph, name: string | undefined, fallback: number): number {
  if (!name) return fallback;
  const t = graphConstant(graph, name);
  if (!t || t.data.length !== 1)
    throw new NetmomentsError(`Clip bound '${name}' is not a constant scalar; propagate needs constant bounds`, { code: 'UNSUPPORTED' });
  return Number(t.data[0]);
}

/**
 * The unit-wise rule of a node, or undefined when the op is not unit-wise. `shape` is the
 * per-sample shape of the input (for PRelu's broadcast slope).
 */
export function unitRule(node: GraphNode, graph: Graph, shape: readonly number[]): UnitMoments | undefined {
  if (!isDefault(node)) return undefined;
  const pl =
    (f: PiecewiseLinear): UnitMoments =>
    (_i, m, s) =>
      piecewiseLinearMoments(f, m, s);
  switch (node.opType) {
    case 'Relu':
      return pl(RELU);
    case 'Abs':
      return pl(ABS);
    case 'LeakyRelu':
      return pl(leakyRelu(attrFloat(node, 'alpha', 0.01)));
    case 'Clip': {
      const lo = graph.opset >= 11 ? constantScalar(graph, node.inputs[1], -Infinity) : attrFloat(node, 'min', -Infinity);
      const hi = graph.opset >= 11 ? constantScalar(graph, node.inputs[2], Infinity) : attrFloat(node, 'max', Infinity);
      return pl(clip(lo, hi));
    }
    case 'PRelu': {
      const slope = graphConstant(graph, node.inputs[1]);
      if (!slope) throw new NetmomentsError(`PRelu '${node.name}' has a non-constant slope; propagate needs it constant`, { code: 'UNSUPPORTED' });
      const perUnit = broadcastTo(slope, shape);
      const fs = new Map<number, PiecewiseLinear>();
      return (i, m, s) => {
        const a = perUnit[i];
        let f = fs.get(a);
        if (!f) fs.set(a, (f = leakyRelu(a)));
        return piecewiseLinearMoments(f, m, s);
      };
    }
    case 'Exp':
      return (_i, m, s) => expMoments(m, s);
    default: {
      const f = SMOOTH_FUNCTIONS[node.opType];
      return f ? (_i, m, s) => smoothMoments(f, m, s) : undefined;
    }
  }
}

/** Unit-wise ops that are nondecreasing: they commute with a max (MaxPool(f(x)) = f(MaxPool(x))). */
export function isMonotoneUnit(node: GraphNode): boolean {
  if (!isDefault(node)) return false;
  if (node.opType === 'LeakyRelu') return attrFloat(node, 'alpha', 0.01) >= 0;
  return ['Relu', 'Clip', 'Sigmoid', 'Tanh', 'Erf', 'Exp', 'Softplus'].includes(node.opType);
}

/** A constant broadcast (numpy rules, trailing axes aligned) to a per-sample shape, flattened. */
function broadcastTo(t: TensorValue, shape: readonly number[]): Float64Array {
  const size = shape.reduce((a, d) => a * d, 1);
  const out = new Float64Array(size);
  const dims = [...t.dims];
  while (dims.length > shape.length && dims[0] === 1) dims.shift();
  const full = [...Array(shape.length - dims.length).fill(1), ...dims];
  const strides = new Array(full.length).fill(0);
  let st = 1;
  for (let a = full.length - 1; a >= 0; a--) {
    strides[a] = full[a] === 1 ? 0 : st;
    st *= full[a];
  }
  for (let i = 0; i < size; i++) {
    let rem = i;
    let src = 0;
    for (let a = shape.length - 1; a >= 0; a--) {
      const c = rem % shape[a];
      rem = Math.floor(rem / shape[a]);
      src += c * strides[a];
    }
    out[i] = Number(t.data[src]);
  }
  return out;
}

/** Squared norms of the columns of a direction-major factor: |F_i|^2 for each unit. */
export function unitFactorNorms(F: Float64Array, k: number, size: number): Float64Array {
  const q = new Float64Array(size);
  for (let d = 0; d < k; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) q[i] += F[o + i] * F[o + i];
  }
  return q;
}

/** Statistical linearization of a unit-wise op (see the header). */
export function applyUnitRule(rule: UnitMoments, x: TensorMoments): TensorMoments {
  const size = x.m.length;
  const q = unitFactorNorms(x.F, x.k, size);
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const slope = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    const g = rule(i, x.m[i], Math.sqrt(q[i] + x.r[i]));
    m[i] = g.mean;
    slope[i] = g.slope;
    r[i] = Math.max(0, g.variance - g.slope * g.slope * q[i]);
  }
  const F = new Float64Array(x.F.length);
  for (let d = 0; d < x.k; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) F[o + i] = slope[i] * x.F[o + i];
  }
  return { m, F, k: x.k, r };
}

/**
 * MaxPool windows: for each output unit the flat input indices of its window (pads excluded).
 * Supports kernel_shape, strides, pads, dilations, auto_pad NOTSET/VALID/SAME_*, ceil_mode, over
 * per-sample shape [C, ...spatial].
 */
export function maxPoolWindows(node: GraphNode, inShape: readonly number[], outShape: readonly number[]): Int32Array[] {
  const [C, ...sp] = inShape;
  const [, ...osp] = outShape;
  const nd = sp.length;
  const kernel = attrInts(node, 'kernel_shape') ?? [];
  const strides = attrInts(node, 'strides') ?? new Array(nd).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array(nd).fill(1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let padBegin = (attrInts(node, 'pads') ?? new Array(2 * nd).fill(0)).slice(0, nd);
  if (autoPad === 'VALID') padBegin = new Array(nd).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    padBegin = sp.map((n, a) => {
      const total = Math.max(0, (osp[a] - 1) * strides[a] + (kernel[a] - 1) * dil[a] + 1 - n);
      return autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
    });
  }
  const inSpatial = sp.reduce((a, d) => a * d, 1);
  const outSpatial = osp.reduce((a, d) => a * d, 1);
  const windows: Int32Array[] = [];
  const oc = new Array(nd).fill(0);
  for (let c = 0; c < C; c++) {
    for (let o = 0; o < outSpatial; o++) {
      let rem = o;
      for (let a = nd - 1; a >= 0; a--) {
        oc[a] = rem % osp[a];
        rem = Math.floor(rem / osp[a]);
      }
      const idx: number[] = [];
      const kc = new Array(nd).fill(0);
      const kTotal = kernel.reduce((a, d) => a * d, 1);
      for (let t = 0; t < kTotal; t++) {
        let kr = t;
        for (let a = nd - 1; a >= 0; a--) {
          kc[a] = kr % kernel[a];
          kr = Math.floor(kr / kernel[a]);
        }
        let flat = 0;
        let inside = true;
        for (let a = 0; a < nd; a++) {
          const p = oc[a] * strides[a] - padBegin[a] + kc[a] * dil[a];
          if (p < 0 || p >= sp[a]) {
            inside = false;
            break;
          }
          flat = flat * sp[a] + p;
        }
        if (inside) idx.push(c * inSpatial + flat);
      }
      windows.push(Int32Array.from(idx));
    }
  }
  return windows;
}

/** Clark's pairwise max over each window (see the header). */
export function applyMaxPool(windows: readonly Int32Array[], x: TensorMoments): TensorMoments {
  const size = x.m.length;
  const outSize = windows.length;
  const k = x.k;
  const q = unitFactorNorms(x.F, k, size);
  // order each window by decreasing mean: combining the likely maxima first keeps Clark's
  // Gaussian re-approximation of the running max closest to the truth
  const order = windows.map((w) => Int32Array.from([...w].sort((a, b) => x.m[b] - x.m[a])));
  const maxLen = order.reduce((a, w) => Math.max(a, w.length), 0);
  const m = new Float64Array(outSize);
  const v = new Float64Array(outSize);
  const F = new Float64Array(k * outSize);
  for (let o = 0; o < outSize; o++) {
    const i0 = order[o][0];
    m[o] = x.m[i0];
    v[o] = q[i0] + x.r[i0];
  }
  for (let d = 0; d < k; d++) {
    const src = d * size;
    const dst = d * outSize;
    for (let o = 0; o < outSize; o++) F[dst + o] = x.F[src + order[o][0]];
  }
  const cov = new Float64Array(outSize);
  const wX = new Float64Array(outSize);
  const active = new Uint8Array(outSize);
  for (let step = 1; step < maxLen; step++) {
    cov.fill(0);
    for (let o = 0; o < outSize; o++) active[o] = order[o].length > step ? 1 : 0;
    // cov(running max, next element): through F only (residuals of different units uncorrelated)
    for (let d = 0; d < k; d++) {
      const src = d * size;
      const dst = d * outSize;
      for (let o = 0; o < outSize; o++) if (active[o]) cov[o] += F[dst + o] * x.F[src + order[o][step]];
    }
    for (let o = 0; o < outSize; o++) {
      if (!active[o]) continue;
      const j = order[o][step];
      const c = clarkMax(m[o], v[o], x.m[j], q[j] + x.r[j], cov[o]);
      m[o] = c.mean;
      v[o] = c.variance;
      wX[o] = c.weightX;
    }
    for (let d = 0; d < k; d++) {
      const src = d * size;
      const dst = d * outSize;
      for (let o = 0; o < outSize; o++) if (active[o]) F[dst + o] = wX[o] * F[dst + o] + (1 - wX[o]) * x.F[src + order[o][step]];
    }
  }
  const qOut = unitFactorNorms(F, k, outSize);
  const r = new Float64Array(outSize);
  for (let o = 0; o < outSize; o++) r[o] = Math.max(0, v[o] - qOut[o]);
  return { m, F, k, r };
}

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
]);

/** Ops with a moment rule of any kind. */
export function hasMomentRule(node: GraphNode): boolean {
  if (!isDefault(node)) return false;
  if (AFFINE_OPS.has(node.opType) || node.opType === 'MaxPool') return true;
  return ['Relu', 'Abs', 'LeakyRelu', 'Clip', 'PRelu', 'Exp'].includes(node.opType) || node.opType in SMOOTH_FUNCTIONS;
}

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
  const nodes: GraphNode[] = [];
  const vars = n.inputs.filter(V);
  switch (n.opType) {
    case 'Conv':
    case 'ConvTranspose': {
      if (V(n.inputs[1]) || (n.inputs[2] && V(n.inputs[2]))) refuse('noisy weights');
      nodes.push(node(n.opType, [R(n.inputs[0]), square(n.inputs[1], nodes)], [rOut], n.attributes));
      return nodes;
    }
    case 'Gemm': {
      const [a, b] = n.inputs;
      if (V(a) && V(b)) refuse('both factors are noisy');
      const alpha = attrFloat(n, 'alpha', 1);
      const attrs = n.attributes.filter((x) => x.name === 'transA' || x.name === 'transB');
      attrs.push({ name: 'alpha', type: 1, f: alpha * alpha });
      nodes.push(node('Gemm', V(a) ? [R(a), square(b, nodes)] : [square(a, nodes), R(b)], [rOut], attrs));
      return nodes;
    }
    case 'MatMul': {
      const [a, b] = n.inputs;
      if (V(a) && V(b)) refuse('both factors are noisy');
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
      if (V(a) && V(b)) refuse('a product of two noisy tensors');
      const c = V(a) ? b : a;
      nodes.push(node('Mul', [R(V(a) ? a : b), square(c, nodes)], [rOut]));
      return nodes;
    }
    case 'Div': {
      const [a, b] = n.inputs;
      if (V(b)) refuse('a noisy divisor');
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
      if ([scale, bias, mean, variance].some(V)) refuse('noisy parameters');
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
    case 'Reshape':
    case 'Flatten':
    case 'Transpose':
    case 'Squeeze':
    case 'Unsqueeze':
    case 'Slice':
    case 'Gather':
    case 'Expand':
    case 'Tile':
    case 'ReduceSum': {
      if (n.inputs.slice(1).some(V)) refuse('noisy indices or shapes');
      nodes.push(node(n.opType, [R(n.inputs[0]), ...n.inputs.slice(1)], [rOut], n.attributes));
      return nodes;
    }
    case 'Split': {
      if (n.inputs.slice(1).some(V)) refuse('noisy split sizes');
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
