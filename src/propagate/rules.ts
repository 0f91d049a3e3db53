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
  /**
   * [rows, size], direction-major, float32 (the layout and type of onnxruntime's tangent runs, which
   * compute the affine steps in float32): row d is the image of the d-th noise direction. The first
   * k rows are the covariance factor.
   */
  F: Float32Array;
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

/** Squared norms of the columns of a direction-major factor over its first k rows: |F_i|^2 for each unit. */
export function unitFactorNorms(F: Float32Array, k: number, size: number): Float64Array {
  const q = new Float64Array(size);
  for (let d = 0; d < k; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) {
      const f = F[o + i];
      q[i] += f * f;
    }
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
  const Fx = x.F;
  const rows = Fx.length / size;
  const F = new Float32Array(Fx.length);
  for (let d = 0; d < rows; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) F[o + i] = slope[i] * Fx[o + i];
  }
  return { ...x, m, F, r };
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

/** A MaxPool step's cache of window Gram matrices, valid for one factor array (see applyMaxPool). */
export interface MaxPoolGram {
  F?: Float32Array;
  k?: number;
  G?: Float64Array;
  active?: { rowStart: Int32Array; windows: Int32Array };
}

/**
 * Clark's pairwise max over each window (see the header), in weight form: the running max after
 * combining elements 0..j of a window passes the factor as sum_a w_a F_{i_a} (Clark's weights
 * multiplied along the way), so cov(running max, element j) = sum_a w_a G_{a j} (residuals of
 * different units taken as uncorrelated) needs only the window's Gram matrix
 * G_{ab} = F_{i_a} . F_{i_b}, computed in one pass over the factor; a second pass writes the
 * output rows sum_a w_a F_{i_a}. The residual is Clark's variance minus w^T G w.
 */
export function applyMaxPool(windows: readonly Int32Array[], x: TensorMoments, cache: MaxPoolGram = {}): TensorMoments {
  const size = x.m.length;
  const outSize = windows.length;
  const k = x.k;
  const rows = x.F.length / size;
  const Fx = x.F;
  const start = new Int32Array(outSize + 1);
  const gStart = new Int32Array(outSize + 1);
  let maxLen = 0;
  for (let o = 0; o < outSize; o++) {
    const L = windows[o].length;
    start[o + 1] = start[o] + L;
    gStart[o + 1] = gStart[o] + L * L;
    maxLen = Math.max(maxLen, L);
  }
  // the Gram of each window in its natural order (depends on the factor only, hence the cache)
  // and, per factor row, the windows holding a nonzero (a factor that is still sparse, as the
  // image of the input noise through a first convolution is, then costs only its nonzeros)
  let G: Float64Array;
  let active: { rowStart: Int32Array; windows: Int32Array } | undefined;
  if (cache.F === Fx && cache.k === k && cache.G) {
    G = cache.G;
    active = cache.active;
  } else {
    G = new Float64Array(gStart[outSize]);
    const v = new Float64Array(maxLen);
    const rowStart = new Int32Array(k + 1);
    let list = new Int32Array(Math.max(16, (k * outSize) >> 3));
    let count = 0;
    for (let d = 0; d < k; d++) {
      const row = d * size;
      for (let o = 0; o < outSize; o++) {
        const w = windows[o];
        const L = w.length;
        let any = false;
        for (let a = 0; a < L; a++) {
          const f = Fx[row + w[a]];
          v[a] = f;
          if (f !== 0) any = true;
        }
        if (!any) continue;
        if (count === list.length) {
          const grown = new Int32Array(2 * list.length);
          grown.set(list);
          list = grown;
        }
        list[count++] = o;
        const g0 = gStart[o];
        for (let a = 0; a < L; a++) {
          const va = v[a];
          const ga = g0 + a * L;
          for (let b = a; b < L; b++) G[ga + b] += va * v[b];
        }
      }
      rowStart[d + 1] = count;
    }
    // the sparse pass pays when at most half the (row, window) pairs hold a nonzero
    active = count <= (k * outSize) / 2 ? { rowStart, windows: list.slice(0, count) } : undefined;
    for (let o = 0; o < outSize; o++) {
      const L = windows[o].length;
      const g0 = gStart[o];
      for (let a = 0; a < L; a++) for (let b = 0; b < a; b++) G[g0 + a * L + b] = G[g0 + b * L + a];
    }
    cache.F = Fx;
    cache.k = k;
    cache.G = G;
    cache.active = active;
  }
  // each window's positions ordered by decreasing mean: combining the likely maxima first keeps
  // Clark's Gaussian re-approximation of the running max closest to the truth
  const pos = new Int32Array(start[outSize]);
  const idx = new Int32Array(start[outSize]);
  for (let o = 0; o < outSize; o++) {
    const w = windows[o];
    const order = Array.from({ length: w.length }, (_, a) => a).sort((a, b) => x.m[w[b]] - x.m[w[a]]);
    for (let a = 0; a < w.length; a++) {
      pos[start[o] + a] = order[a];
      idx[start[o] + a] = w[order[a]];
    }
  }
  const m = new Float64Array(outSize);
  const r = new Float64Array(outSize);
  const weights = new Float64Array(idx.length);
  for (let o = 0; o < outSize; o++) {
    const s0 = start[o];
    const L = start[o + 1] - s0;
    const g0 = gStart[o];
    const gram = (a: number, b: number) => G[g0 + pos[s0 + a] * L + pos[s0 + b]];
    const i0 = idx[s0];
    let mean = x.m[i0];
    let variance = gram(0, 0) + x.r[i0];
    weights[s0] = 1;
    for (let j = 1; j < L; j++) {
      const ij = idx[s0 + j];
      let cov = 0;
      for (let a = 0; a < j; a++) cov += weights[s0 + a] * gram(a, j);
      const c = clarkMax(mean, variance, x.m[ij], gram(j, j) + x.r[ij], cov);
      mean = c.mean;
      variance = c.variance;
      for (let a = 0; a < j; a++) weights[s0 + a] *= c.weightX;
      weights[s0 + j] = 1 - c.weightX;
    }
    let wGw = 0;
    for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) wGw += weights[s0 + a] * weights[s0 + b] * gram(a, b);
    m[o] = mean;
    r[o] = Math.max(0, variance - wGw);
  }
  const F = new Float32Array(rows * outSize);
  for (let d = 0; d < rows; d++) {
    const row = d * size;
    const dst = d * outSize;
    if (active && d < k) {
      const list = active.windows;
      for (let e = active.rowStart[d]; e < active.rowStart[d + 1]; e++) {
        const o = list[e];
        let acc = 0;
        for (let t = start[o]; t < start[o + 1]; t++) acc += weights[t] * Fx[row + idx[t]];
        F[dst + o] = acc;
      }
      continue;
    }
    for (let o = 0; o < outSize; o++) {
      let acc = 0;
      for (let t = start[o]; t < start[o + 1]; t++) acc += weights[t] * Fx[row + idx[t]];
      F[dst + o] = acc;
    }
  }
  return { ...x, m, F, r };
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
