/**
 * Moment propagation through every layer (issue 13): the mean and covariance of a model's output
 * under Gaussian input noise, carried through the graph in topological order as
 * (m, F, r): mean, factor image of the input noise, residual variance per unit (src/propagate/rules/).
 *
 * The graph (the part the output depends on) is cut into steps: maximal runs of consecutive affine
 * nodes become one segment, run by onnxruntime (mean = the segment at m, F's rows = JVPs of the
 * segment at m along F's directions, r through a "variance model" of the segment that applies the
 * squared linear parts; src/propagate/segment.ts; before it, incoming residuals also become residual
 * rows, see rules/index.ts); unit-wise nodes, MaxPool and Softmax run here (float64
 * arithmetic on the float32 factor). Before cutting, every MaxPool fed only by a nondecreasing
 * unit-wise op (Relu, ...) is swapped with it: maxpool(relu(x)) = relu(maxpool(x)), so the max is
 * taken over Gaussian pre-activations, and a Relu right after a MaxPool joins it as one step,
 * max(0, window).
 *
 * Exact marginals: with a sketched input (rank k below the noise's columns) and diagonal noise
 * (isotropic or diagonal Sigma), a segment that reads the input alone gets its outputs' exact
 * marginal variances: y = L x + b has Var(y_i) = sum_j L_ij^2 Sigma_jj, which the segment's
 * variance model ((L o L) r, ./segment.ts) computes when fed r = diag(Sigma) (no residual rows);
 * each output unit's sketch rows (probes excluded) are then rescaled to it and r becomes 0
 * (absorbResidualRows over the k rows). The sketch's own |(L F)_i|^2 is only an estimate (relative
 * sd up to sqrt(2 / k), +-9% per unit at k = 256; the former Gaussian sketch was also biased up by
 * the input's clamped residual max(0, Sigma_ii - |F_i|^2), which the sketch of signs does not
 * have: see inputMoments); every later rule reads the per-unit
 * variance, and a window max's or a Relu's mean moves with it. On ResNet-18 at rank 256 this took
 * the logits' median mean error from 0.043 to 0.032 MC sd (docs/BENCHMARKS.md, "Where ResNet-18's
 * propagate error enters"). The correlations between units stay the sketch's.
 *
 * Sessions are created once per propagator (one session per segment); `moments` can then be
 * called for many inputs. Work that depends on the noise only (the input factor, the first
 * segment's outgoing factor, the first MaxPool's window Gram matrices) is kept from one call to
 * the next while the noise stays the same.
 */
import { NetmomentsError } from '../errors.js';
import { MissingAdjointRuleError } from '../onnx/tangent/types.js';
import { attrInt, Graph, type GraphNode } from '../onnx/graph.js';
import type { LoadedModel } from '../onnx/load.js';
import { DataType } from '../onnx/proto.js';
import { probeShapes } from '../linearize/shapes.js';
import { Rng } from '../moments/montecarlo.js';
import { smoothMoments } from '../moments/smooth.js';
import { piecewiseLinearMoments } from '../moments/piecewise.js';
import { collectGarbage } from '../util/gc.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import type { Provider } from '../runtime/session.js';
import {
  AFFINE_OPS,
  absorbResidualRows,
  appendResidualRows,
  applyMaxPool,
  applySoftmax,
  applyLogSoftmax,
  applyUnitRule,
  COMPOSITE_DOMAIN,
  fuseUnitComposites,
  hasMomentRule,
  rewriteMaxMin,
  isMonotoneUnit,
  maxPoolWindows,
  nonAffineUse,
  softmaxSlices,
  unitFactorNorms,
  unitRule,
  type MaxPoolGram,
  type InputNoise,
  type StepTape,
  type TensorMoments,
  type UnitComposite,
  type UnitMoments,
} from './rules/index.js';
import { AffineSegment, keepsArena, segmentUnits } from './segment.js';
import { reverseOutputCovariance, type ReverseStep } from './adjoint.js';

export type { InputNoise } from './rules/index.js';

export interface PropagatorOptions {
  /** The tensor whose moments are wanted (default: the model's first output). */
  output?: string;
  /** Columns of the noise factor: full rank (default) or a k-column random sketch when k < n. */
  rank?: number;
  /** Seed of the sketch and of the probes (default 1). */
  seed?: number;
  /**
   * Hermite rows added at each kinked op (K, default DEFAULT_HERMITE_COLUMNS = 128; 0 turns them
   * off): the order-2 and -3 Hermite parts of each kinked op's residual, correlated between units,
   * sketched from products of the probes (hermiteProbes; see rules/index.ts).
   */
  hermiteColumns?: number;
  /**
   * Probe rows carried for the Hermite rows' sketches (default DEFAULT_HERMITE_PROBES, 32;
   * 0 when hermiteColumns is 0); more columns than probes / 2 share probes (rules/factor.ts probeOf).
   */
  hermiteProbes?: number;
  /**
   * Hermite columns each kinked op records for the reverse pass's output covariance (./adjoint.ts;
   * default REVERSE_HERMITE_COLUMNS; at least hermiteColumns, at most what the probes give,
   * rules/factor.ts maxHermiteColumns). More than hermiteColumns sketch the order-2 and -3 parts of
   * the output covariance with less noise, without adding rows to the steps after
   * (rules/factor.ts carryHermiteRows).
   */
  reverseHermiteColumns?: number;
  /** Highest Hermite order carried by those rows: 2 or 3 (default 3). */
  hermiteOrder?: number;
  /**
   * Residual rows (R, default DEFAULT_RESIDUAL_ROWS; 0 turns them off): before each affine segment
   * whose inputs carry a residual, the residual variances are carried as R random-sign rows, so that
   * the segment's off-diagonal L diag(r) L^T is kept (see rules/index.ts).
   */
  residualRows?: number;
  /**
   * How the output covariance is formed (default 'reverse' where it applies): 'reverse', exactly for
   * the statistically linearized net by reverse passes (./adjoint.ts; all output units when there
   * are at most REVERSE_ALL_OUTPUTS, else the REVERSE_TOP_OUTPUTS of largest mean, whose variances
   * then rescale the factor's covariance); 'factor', the Gram matrix of the output's factor rows
   * plus its residual. 'reverse' needs residual rows (residualRows > 0); where a segment holds an
   * op without an adjoint rule (Gather, Tile) the factor's covariance is used (reverseUnits 0).
   */
  outputCovariance?: 'reverse' | 'factor';
  threads?: number;
  provider?: Provider;
  /** The graph's tensor shapes at batch 1 when the caller probed them already (src/method.ts's plan): one run of the whole model with every tensor as an output less. */
  shapes?: ReadonlyMap<string, number[]>;
  /**
   * Diagnostics (bench/propagate-inside.mjs): called after each step with each tensor the step made
   * and its moments as the next steps read them (read only, valid during the call).
   */
  onTensor?: (name: string, moments: TensorMoments) => void;
}

export interface PropagatedMoments {
  mean: Float64Array;
  /** d x d row-major: F F^T + diag(r) at the output. */
  covariance: Float64Array;
  variance: Float64Array;
  /** Columns of the factor carried (n at full rank). */
  rank: number;
  /** Whether the input factor was a random sketch. */
  sketched: boolean;
  /**
   * Output units whose variance (and covariance between them) came from reverse passes (./adjoint.ts):
   * all d, the largest means only (the rest of the covariance from the factor, rescaled to them), or
   * none (the factor's Gram matrix alone).
   */
  reverseUnits: number;
  /** Seconds spent in onnxruntime segments and in the rules here (the reverse pass: reverseSeconds). */
  stats: { segmentSeconds: number; ruleSeconds: number; reverseSeconds: number; steps: number };
}

export interface Propagator {
  readonly input: string;
  readonly output: string;
  readonly inputSize: number;
  readonly outputSize: number;
  /** The steps, for messages: e.g. 'affine[Conv]', 'MaxPool', 'Relu'. */
  readonly plan: string[];
  moments(mu: ArrayLike<number>, noise: InputNoise): Promise<PropagatedMoments>;
  release(): Promise<void>;
}

const isDefault = (n: GraphNode) => n.domain === '' || n.domain === 'ai.onnx';

/** The single float32 data input of a graph (propagate handles one noisy input). */
function noisyInput(graph: Graph, file?: string): string {
  const inputs = graph.dataInputs.filter((i) => i.elemType === DataType.FLOAT);
  if (inputs.length !== 1)
    throw new NetmomentsError(`propagate needs exactly one float32 input; the model has ${inputs.length}`, { code: 'UNSUPPORTED', file });
  return inputs[0].name;
}

/** Ops whose output follows the input's dims, not its values: what they feed is not noisy (e.g. the batch a fed input is tiled to, onnx/feeds.ts). */
const SHAPE_ONLY_OPS: ReadonlySet<string> = new Set(['Shape', 'Size']);

/** The nodes the output depends on that also depend on the input's values (the noisy path). */
function noisyPath(graph: Graph, input: string, output: string): { nodes: GraphNode[]; variable: Set<string> } {
  const variable = new Set([input]);
  for (const n of graph.nodes) {
    if (SHAPE_ONLY_OPS.has(n.opType) && isDefault(n)) continue;
    if (n.inputs.some((x) => variable.has(x))) for (const o of n.outputs) if (o) variable.add(o);
  }
  const needed = new Set([output]);
  const nodes: GraphNode[] = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i];
    if (!n.outputs.some((o) => needed.has(o))) continue;
    for (const x of n.inputs) if (x) needed.add(x);
    if (n.outputs.some((o) => variable.has(o))) nodes.push(n);
  }
  return { nodes: nodes.reverse(), variable };
}

/**
 * Max and Min of noisy tensors rewritten with Relu (rules/maxmin.ts), then the unit-wise composites
 * fused (rules/composite.ts), on the noisy path from `input`; `graph` sorted, changed in place
 * (`shapes`, when given, gets the new tensors' shapes).
 */
function fuseComposites(graph: Graph, input: string, output: string, shapes?: Map<string, number[]>): Map<string, UnitComposite> {
  const before = noisyPath(graph, input, output).variable;
  rewriteMaxMin(graph, (t) => before.has(t), shapes);
  const { variable } = noisyPath(graph, input, output);
  return fuseUnitComposites(graph, (t) => variable.has(t));
}

/**
 * Whether every op on the noisy path from the input to `output` has a moment rule (after fusing
 * unit-wise composites); `missing` names the others, an affine op used non-affinely (a product
 * of two noisy tensors, ...) with why; `fused`, the composites' labels (e.g. 'Sigmoid*Mul'), one per
 * composite, in graph order.
 */
export function propagationSummary(graph: Graph, output?: string): { supported: boolean; missing: string[]; fused: string[] } {
  const g = graph.clone();
  g.sortTopologically();
  const input = noisyInput(g);
  const out = output ?? g.outputs[0].name;
  const composites = fuseComposites(g, input, out);
  const { nodes, variable } = noisyPath(g, input, out);
  const missing = [
    ...new Set(
      nodes.flatMap((n) => {
        const name = isDefault(n) ? n.opType : `${n.domain}.${n.opType}`;
        if (!hasMomentRule(n)) return [name];
        const why = isDefault(n) && AFFINE_OPS.has(n.opType) ? nonAffineUse(n, (t) => variable.has(t)) : undefined;
        return why ? [`${name} (${why})`] : [];
      }),
    ),
  ];
  const fused = nodes.flatMap((n) => (n.domain === COMPOSITE_DOMAIN ? (composites.get(n.name)?.label ?? []) : []));
  return { supported: missing.length === 0, missing, fused };
}

/** Whether every op on the noisy path from the input to `output` has a moment rule (propagationSummary without the composites). */
export function propagationSupport(graph: Graph, output?: string): { supported: boolean; missing: string[] } {
  const { supported, missing } = propagationSummary(graph, output);
  return { supported, missing };
}

/**
 * Shape and Size nodes replaced by their values at batch 1 (int64 constants), from the probed
 * shapes: the propagation runs every mean at batch 1 (direction rows are the tangent batch, which
 * the tangent rules size themselves), so a tensor computed from a shape (a fed input tiled to the
 * batch, a torch-style reshape chain) is a constant of the segment that reads it.
 */
function foldShapesAtBatchOne(graph: Graph, shapes: ReadonlyMap<string, readonly number[]>): void {
  const kept: GraphNode[] = [];
  for (const n of graph.nodes) {
    const dims = SHAPE_ONLY_OPS.has(n.opType) && isDefault(n) ? shapes.get(n.inputs[0]) : undefined;
    if (!dims) {
      kept.push(n);
      continue;
    }
    let values: number[];
    if (n.opType === 'Size') values = [dims.reduce((a, d) => a * d, 1)];
    else {
      // Shape's start/end (opset 15): negative counts from the end, clamped to [0, rank]
      const clamp = (v: number): number => Math.min(dims.length, Math.max(0, v < 0 ? v + dims.length : v));
      values = dims.slice(clamp(attrInt(n, 'start', 0)), clamp(attrInt(n, 'end', dims.length)));
    }
    const name = n.outputs[0];
    graph.initializers.set(name, {
      name,
      dataType: DataType.INT64,
      dims: n.opType === 'Size' ? [] : [values.length],
      data: BigInt64Array.from(values.map(BigInt)),
    });
  }
  graph.nodes = kept;
}

/** The moments of a unit-wise composite: exact for a piecewise-linear one, else by quadrature of f. */
function compositeRule(c: UnitComposite): UnitMoments {
  const pl = c.piecewiseLinear;
  return pl ? (_i, m, s) => piecewiseLinearMoments(pl, m, s) : (_i, m, s) => smoothMoments(c.f, m, s);
}

/** Whether a node (a unit-wise op, or a fused composite of `composites`) is nondecreasing. */
function isMonotone(n: GraphNode, composites: ReadonlyMap<string, UnitComposite>): boolean {
  const pl = n.domain === COMPOSITE_DOMAIN ? composites.get(n.name)?.piecewiseLinear : undefined;
  return pl ? pl.slopes.every((a) => a >= 0) : isMonotoneUnit(n);
}

/**
 * Swap MaxPool(f(x)) to f(MaxPool(x)) for nondecreasing unit-wise f (exact: f commutes with a max),
 * so that the window max reads Gaussian pre-activations. Where f's output has other readers too
 * (a U-Net's skip, a DenseNet's concatenation), f stays for them and a copy of it follows the pool
 * (registered in `composites` too when f is a fused composite).
 */
function swapMaxPools(graph: Graph, output: string, composites: Map<string, UnitComposite>): number {
  let swaps = 0;
  const added: GraphNode[] = [];
  for (const pool of graph.nodes.filter((n) => n.opType === 'MaxPool' && isDefault(n) && n.outputs.filter((o) => o).length === 1)) {
    const f = graph.producerOf(pool.inputs[0]);
    if (!f || !isMonotone(f, composites) || f.outputs[0] === output) continue;
    const x = f.inputs[0];
    const y = pool.outputs[0];
    if (graph.consumersOf(f.outputs[0]).length === 1 && !graph.outputs.some((o) => o.name === f.outputs[0])) {
      // pool: x -> mid ; f: mid -> y (mid now names the pooled pre-activation)
      const mid = f.outputs[0];
      pool.inputs = [x, ...pool.inputs.slice(1)];
      pool.outputs = [mid];
      f.inputs = [mid, ...f.inputs.slice(1)];
      f.outputs = [y];
    } else {
      // pool: x -> mid ; copy of f: mid -> y ; f as it was for its other readers
      const mid = `${y}/netmoments_pooled`;
      const copy: GraphNode = {
        ...f,
        name: `${f.name}/netmoments_after_${pool.name}`,
        inputs: [mid, ...f.inputs.slice(1)],
        outputs: [y],
        attributes: [...f.attributes],
      };
      const composite = composites.get(f.name);
      if (f.domain === COMPOSITE_DOMAIN && composite) composites.set(copy.name, composite);
      pool.inputs = [x, ...pool.inputs.slice(1)];
      pool.outputs = [mid];
      added.push(copy);
    }
    swaps++;
  }
  if (added.length > 0) graph.nodes = [...graph.nodes, ...added];
  if (swaps > 0) graph.sortTopologically();
  return swaps;
}

type Step =
  | { kind: 'unit'; label: string; input: string; output: string; rule: UnitMoments }
  | { kind: 'maxpool'; label: string; input: string; output: string; windows: Int32Array[]; gram: MaxPoolGram; floor: number }
  | { kind: 'affine'; label: string; segment: AffineSegment }
  | { kind: 'softmax'; label: string; input: string; output: string; slices: { outer: number; D: number; inner: number }; log: boolean };

/** Hermite rows per kinked op by default (see PropagatorOptions.hermiteColumns). */
export const DEFAULT_HERMITE_COLUMNS = 128;

/**
 * Hermite columns the reverse pass records per kinked op by default (see
 * PropagatorOptions.reverseHermiteColumns). With 16 carried forward, the sds of the top-5 logits
 * against a 10,000-sample Monte Carlo (docs/BENCHMARKS.md): AlexNet 3.4-7.8% off with 16 recorded,
 * 1.8-3.4% with 128 (three sketch seeds); ResNet-18 6.4% and 3.0-4.8%.
 */
export const REVERSE_HERMITE_COLUMNS = 128;

/** Probe rows by default (see PropagatorOptions.hermiteProbes). */
export const DEFAULT_HERMITE_PROBES = 32;

/** Residual rows before an affine segment by default (see PropagatorOptions.residualRows). */
export const DEFAULT_RESIDUAL_ROWS = 32;

/** Outputs up to this many get their whole covariance by reverse passes (one cotangent row each). */
export const REVERSE_ALL_OUTPUTS = 64;

/** With more outputs, the reverse passes cover this many of largest mean. */
export const REVERSE_TOP_OUTPUTS = 16;

/** Bytes of factors dropped in one step above which the propagation asks V8 for a collection. */
const COLLECT_BYTES = 256 * 2 ** 20;

/** Seed of the residual rows' signs (fixed: the same input gives the same moments). */
const RESIDUAL_SEED = 0x5eed_0013;

/** One step of a propagation as laid out (src/propagate/memory.ts walks the same list). */
export type StepLayout =
  /** a maximal run of consecutive affine nodes, nodes[begin..end-1] of the noisy path */
  | { kind: 'affine'; nodes: GraphNode[]; begin: number; end: number }
  /** a MaxPool, with the Relu that alone reads it when fused (max(0, window)) */
  | { kind: 'maxpool'; node: GraphNode; relu?: GraphNode; input: string; output: string }
  | { kind: 'softmax'; node: GraphNode; input: string; output: string }
  | { kind: 'unit'; node: GraphNode; input: string; output: string };

/** The graph as the propagation walks it: shapes folded, MaxPools swapped, the noisy path cut into steps. */
export interface PropagationLayout {
  input: string;
  output: string;
  /** Batch-1 shapes (a swapped MaxPool's output has the unit-wise op's shape). */
  shapes: Map<string, number[]>;
  sampleShape: (t: string) => number[];
  variable: Set<string>;
  /** The noisy path's nodes in order, and the index of each variable tensor's last reader. */
  nodes: GraphNode[];
  lastUse: Map<string, number>;
  steps: StepLayout[];
  /** The unit-wise composites fused, by their node's name (rules/composite.ts). */
  composites: Map<string, UnitComposite>;
}

/**
 * Lay out a propagation of `graph` (sorted; changed in place: Shape/Size folded at batch 1, MaxPools
 * swapped before the unit-wise ops that fed them) from `input` to `output`, with the batch-1 shapes
 * `probed` (copied): the steps createPropagator builds engines for, and the memory estimate walks.
 */
export function layoutPropagation(graph: Graph, probed: ReadonlyMap<string, number[]>, input: string, output: string, file?: string): PropagationLayout {
  const shapes = new Map(probed);
  foldShapesAtBatchOne(graph, shapes);
  const composites = fuseComposites(graph, input, output, shapes);
  const swaps = swapMaxPools(graph, output, composites);
  const { nodes, variable } = noisyPath(graph, input, output);
  const sampleShape = (t: string): number[] => {
    const s = shapes.get(t);
    if (!s) throw new NetmomentsError(`no shape for tensor '${t}'`, { code: 'UNSUPPORTED', file });
    return s.slice(1);
  };
  // a swapped MaxPool's output (the pooled pre-activation) has the shape of the unit-wise op's output
  if (swaps > 0) {
    for (const n of graph.nodes) {
      if (n.opType !== 'MaxPool') continue;
      const f = graph.consumersOf(n.outputs[0])[0];
      if (f && isMonotone(f, composites)) shapes.set(n.outputs[0], shapes.get(f.outputs[0])!);
    }
  }
  const lastUse = new Map<string, number>();
  nodes.forEach((n, i) => n.inputs.forEach((x) => variable.has(x) && lastUse.set(x, i)));
  lastUse.set(output, Infinity);
  const steps: StepLayout[] = [];
  let i = 0;
  while (i < nodes.length) {
    const n = nodes[i];
    if (AFFINE_OPS.has(n.opType) && isDefault(n)) {
      let j = i;
      while (j < nodes.length && AFFINE_OPS.has(nodes[j].opType) && isDefault(nodes[j])) j++;
      steps.push({ kind: 'affine', nodes: nodes.slice(i, j), begin: i, end: j });
      i = j;
    } else if (n.opType === 'MaxPool') {
      // relu(max(x_1..x_L)) = max(0, x_1..x_L): a Relu that alone reads the pool's output (as
      // after the swap) joins it, so that its moments are those of the max with a floor
      const next = nodes[i + 1];
      const fuse =
        next !== undefined &&
        next.opType === 'Relu' &&
        isDefault(next) &&
        next.inputs[0] === n.outputs[0] &&
        n.outputs[0] !== output &&
        graph.consumersOf(n.outputs[0]).length === 1;
      steps.push({ kind: 'maxpool', node: n, relu: fuse ? next : undefined, input: n.inputs[0], output: fuse ? next.outputs[0] : n.outputs[0] });
      i += fuse ? 2 : 1;
    } else {
      steps.push({
        kind: (n.opType === 'Softmax' || n.opType === 'LogSoftmax') && isDefault(n) ? 'softmax' : 'unit',
        node: n,
        input: n.inputs[0],
        output: n.outputs[0],
      });
      i++;
    }
  }
  return { input, output, shapes, sampleShape, variable, nodes, lastUse, steps, composites };
}

export async function createPropagator(model: LoadedModel, options: PropagatorOptions = {}): Promise<Propagator> {
  const graph = model.graph.clone();
  graph.sortTopologically(model.file);
  const input = noisyInput(graph, model.file);
  const output = options.output ?? graph.outputs[0].name;
  const support = propagationSupport(graph, output);
  if (!support.supported) {
    throw new NetmomentsError(`propagate has no moment rule for ${support.missing.join(', ')} on the path to '${output}'; use two-stage linearization`, {
      code: 'UNSUPPORTED',
      file: model.file,
    });
  }
  const probed = options.shapes ?? (await probeShapes(graph, { threads: options.threads }));
  if (!probed) throw new NetmomentsError('cannot run the model once to find its tensor shapes', { code: 'UNSUPPORTED', file: model.file });
  const layout = layoutPropagation(graph, probed, input, output, model.file);
  const { shapes, variable, lastUse, sampleShape } = layout;
  const size = (t: string) => sampleShape(t).reduce((a, d) => a * d, 1);

  const hermiteOrder = options.hermiteOrder ?? 3;
  const hermiteColumns = options.hermiteColumns ?? DEFAULT_HERMITE_COLUMNS;
  const hermiteProbes = options.hermiteProbes ?? DEFAULT_HERMITE_PROBES;
  const residualRows = options.residualRows ?? DEFAULT_RESIDUAL_ROWS;
  const probes = hermiteColumns > 0 ? hermiteProbes : 0;
  const steps: Step[] = [];
  const engines: { release(): Promise<void> }[] = [];
  try {
    for (const p of layout.steps) {
      if (p.kind === 'affine') {
        const rows0 = probes + Math.min(options.rank ?? Infinity, size(input));
        const segment = await AffineSegment.create(graph, p.nodes, variable, shapes, sampleShape, (t) => t === output || (lastUse.get(t) ?? -1) > p.end - 1, {
          threads: options.threads,
          provider: options.provider,
          memoryArena: keepsArena(steps.length, segmentUnits(p.nodes, variable, size), rows0, Math.max(hermiteColumns, residualRows)),
        });
        engines.push(segment);
        steps.push({ kind: 'affine', label: segment.label, segment });
      } else if (p.kind === 'maxpool') {
        steps.push({
          kind: 'maxpool',
          label: p.relu ? 'MaxPool+Relu' : 'MaxPool',
          input: p.input,
          output: p.output,
          windows: maxPoolWindows(p.node, sampleShape(p.input), sampleShape(p.node.outputs[0])),
          gram: {},
          floor: p.relu ? 0 : -Infinity,
        });
      } else if (p.kind === 'softmax') {
        const slices = softmaxSlices(p.node, graph.opset, sampleShape(p.input));
        steps.push({ kind: 'softmax', label: p.node.opType, input: p.input, output: p.output, slices, log: p.node.opType === 'LogSoftmax' });
      } else {
        const n = p.node;
        const composite = layout.composites.get(n.name);
        const rule: UnitMoments | undefined = composite ? compositeRule(composite) : unitRule(n, graph, sampleShape(n.inputs[0]));
        if (!rule) throw new NetmomentsError(`propagate has no moment rule for ${n.opType} ('${n.name}')`, { code: 'UNSUPPORTED', file: model.file });
        steps.push({ kind: 'unit', label: composite ? composite.label : n.opType, input: p.input, output: p.output, rule });
      }
    }
  } catch (e) {
    for (const en of engines) await en.release();
    throw e;
  }
  const n = size(input);
  const d = size(output);
  const stepLastUse = steps.map((s) => (s.kind === 'affine' ? s.segment.inputs : [s.input]));
  const freeAfter = new Map<number, string[]>();
  {
    const last = new Map<string, number>();
    stepLastUse.forEach((ins, k) => ins.forEach((x) => last.set(x, k)));
    for (const [t, k] of last) if (t !== output) freeAfter.set(k, [...(freeAfter.get(k) ?? []), t]);
  }

  // a rule's output that an affine segment reads gets room for the residual rows (rules/factor.ts newFactor)
  const readByAffine = new Set(steps.flatMap((s) => (s.kind === 'affine' ? s.segment.inputs : [])));
  const linalg = sharedOrtLinearAlgebra({ threads: options.threads });
  let inputCache: { noise: InputNoise; start: ReturnType<typeof inputMoments> } | undefined;
  // the reverse pass (./adjoint.ts) needs residual rows; with a sketched input it also needs the
  // input read by affine steps only (a rule reading it would fold the sketch's missing variance
  // into its residual, which the exact input term counts again)
  const reverse = (options.outputCovariance ?? 'reverse') === 'reverse' && residualRows > 0;
  const inputReadByAffineOnly = steps.every((s) => s.kind === 'affine' || s.input !== input);
  // set when a segment has no adjoint (an op without an adjoint rule): the factor's covariance then
  let reverseUnavailable: string | undefined;
  return {
    input,
    output,
    inputSize: n,
    outputSize: d,
    plan: steps.map((s) => s.label),
    async moments(mu: ArrayLike<number>, noise: InputNoise): Promise<PropagatedMoments> {
      if (mu.length !== n) throw new NetmomentsError(`the input has ${mu.length} values; '${input}' holds ${n}`, { code: 'BAD_INPUT' });
      // the input factor depends on the noise only: the same noise again gives the same factor
      // arrays, which lets the first segment and MaxPool reuse their noise-only work
      if (!inputCache || !sameNoise(inputCache.noise, noise)) {
        const made = inputMoments(mu, noise, n, options.rank, options.seed ?? 1, hermiteColumns > 0 ? hermiteProbes : 0);
        inputCache = { noise: copyNoise(noise), start: made };
      }
      const start = { moments: { ...inputCache.start.moments, m: Float64Array.from(mu) }, sketched: inputCache.start.sketched };
      // see "Exact marginals" in the file comment
      const exactMarginals = start.sketched && noise.kind !== 'lowrank' ? inputCache.start.variance : undefined;
      const state = new Map<string, TensorMoments>([[input, start.moments]]);
      // NETMOMENTS_TRACE_PROPAGATE=1: each step's seconds (wall, and the process's user and system
      // CPU: system time is mostly the zeroing of fresh pages), factor rows and the process's resident
      // memory on stderr (bench/scale.mjs --propagate checks the memory estimate against it)
      const trace = process.env.NETMOMENTS_TRACE_PROPAGATE === '1';
      // factor arrays that can come again in the next call (the input noise's, and a segment's
      // images of it alone): only work on these is kept between calls, anything else would hold a
      // tensor's factor past its last use (src/method.ts, estimatePropagateMemory)
      const retained = new Set<Float32Array>([start.moments.F]);
      let segmentSeconds = 0;
      let ruleSeconds = 0;
      const tape: ReverseStep[] | undefined = reverse && !reverseUnavailable && (!start.sketched || inputReadByAffineOnly) ? [] : undefined;
      // one step in its own function: its locals (the inputs, their copies with residual rows, the
      // outputs) die when it returns, where a local of this loop would stay alive until the same
      // variable is assigned again at the next step of its kind (V8 keeps a suspended async
      // function's registers; src/propagate/memory.ts)
      const runStep = async (k: number): Promise<number> => {
        const s = steps[k];
        const t0 = performance.now();
        let dropped = 0;
        if (s.kind === 'affine') {
          // a segment that reads only the sketched input: its outputs' exact marginal variances (see exactMarginals)
          const marginals = exactMarginals && s.segment.inputs.length === 1 && s.segment.inputs[0] === input;
          const padded = padRows(s.segment.inputs.map((t) => state.get(t)!));
          const ins = marginals ? [{ ...padded[0], r: exactMarginals! }] : padded;
          const withRows = marginals ? ins : appendResidualRows(ins, residualRows, new Rng(RESIDUAL_SEED + k));
          // (not remembered, as with the residual rows it replaces: the rescaled factor would
          // be held for the whole call, 0.9 GiB at ResNet-18's first Conv at rank 256)
          const remember = !marginals && withRows === ins && ins.every((x) => retained.has(x.F));
          const outs = await s.segment.run(withRows, remember);
          tape?.push({ kind: 'affine', segment: s.segment, inputs: s.segment.inputs, outputs: s.segment.outputs, means: ins.map((x) => x.m) });
          const at = ins[0].F.length / ins[0].m.length;
          // a factor the segment does not remember is this call's alone: rescaled in place
          outs.forEach((v, idx) =>
            state.set(
              s.segment.outputs[idx],
              marginals ? absorbResidualRows(v, v.probes, v.k, true) : withRows === ins ? v : absorbResidualRows(v, at, residualRows, !remember),
            ),
          );
          if (remember) for (const v of outs) retained.add(v.F);
          // the copies with residual rows (and padded inputs) are garbage now
          if (withRows !== ins) for (const x of withRows) dropped += x.F.byteLength;
          segmentSeconds += (performance.now() - t0) / 1000;
        } else {
          const x = state.get(s.input)!;
          const spare = readByAffine.has(s.output) ? residualRows : 0;
          const stepTape: StepTape | undefined = tape ? { hermiteColumns: options.reverseHermiteColumns ?? REVERSE_HERMITE_COLUMNS } : undefined;
          state.set(
            s.output,
            s.kind === 'unit'
              ? applyUnitRule(s.rule, x, hermiteOrder, hermiteColumns, spare, stepTape)
              : s.kind === 'softmax'
                ? (s.log ? applyLogSoftmax : applySoftmax)(x, s.slices, spare, stepTape)
                : applyMaxPool(s.windows, x, s.gram, hermiteOrder, s.floor, hermiteColumns, spare, stepTape),
          );
          if (tape && stepTape) tape.push({ kind: 'rule', input: s.input, output: s.output, inputSize: x.m.length, tape: stepTape });
          if (s.kind === 'maxpool' && !retained.has(x.F)) s.gram = {}; // its cache holds x.F
          ruleSeconds += (performance.now() - t0) / 1000;
        }
        let freed = dropped;
        for (const t of freeAfter.get(k) ?? []) {
          freed += state.get(t)?.F.byteLength ?? 0;
          state.delete(t);
        }
        return freed;
      };
      // the trace line and onTensor in their own functions too: a local of the loop holding the
      // step's output would keep that factor alive through the next step, after the step that drops
      // it (MobileNetV2's peak rose by one 1.85 GB factor with the trace on)
      const reportTensors = (k: number, onTensor: NonNullable<PropagatorOptions['onTensor']>): void => {
        const s = steps[k];
        for (const t of s.kind === 'affine' ? s.segment.outputs : [s.output]) {
          const v = state.get(t);
          if (v) onTensor(t, v);
        }
      };
      const traceStep = (k: number, t0: number, cpu0: NodeJS.CpuUsage): void => {
        const s = steps[k];
        const y = state.get(s.kind === 'affine' ? s.segment.outputs[0] : s.output);
        const rows = y ? y.F.length / y.m.length : 0;
        const cpu = process.cpuUsage(cpu0);
        process.stderr.write(
          `propagate step ${k} ${s.label}: ${((performance.now() - t0) / 1000).toFixed(2)} s (user ${(cpu.user / 1e6).toFixed(2)}, system ${(cpu.system / 1e6).toFixed(2)} CPU s), ${rows} rows, rss ${(process.memoryUsage.rss() / 2 ** 30).toFixed(2)} GiB\n`,
        );
      };
      for (let k = 0; k < steps.length; k++) {
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        const freed = await runStep(k);
        if (options.onTensor) reportTensors(k, options.onTensor);
        // a large factor dropped: collect it now (the step's locals are gone), before the next step
        // allocates its own (V8 frees typed arrays only when it collects; without this MobileNetV2's
        // resident memory ran gigabytes above what was live)
        if (freed >= COLLECT_BYTES) collectGarbage();
        if (trace) traceStep(k, t0, cpu0);
      }

      const y = state.get(output)!;
      let reverseSeconds = 0;
      let exact: { units: number[]; covariance: Float64Array } | undefined;
      if (tape) {
        const t0 = performance.now();
        const units = reverseUnitsOf(y.m);
        try {
          exact = { units, covariance: await reverseOutputCovariance(tape, input, n, output, d, units, noise, linalg) };
        } catch (e) {
          // a segment op without an adjoint rule (Gather, Tile, ...), or an adjoint model onnxruntime
          // cannot load: the factor's covariance, from now on (running out of memory is still an error)
          if (!(e instanceof MissingAdjointRuleError) && !(e instanceof NetmomentsError && e.code !== 'RESOURCE')) throw e;
          reverseUnavailable = e.message;
          if (trace) process.stderr.write(`propagate reverse pass unavailable (${e.message}): output covariance from the factor\n`);
        }
        tape.length = 0;
        reverseSeconds = (performance.now() - t0) / 1000;
        if (trace) process.stderr.write(`propagate reverse pass: ${reverseSeconds.toFixed(2)} s, ${units.length} output rows\n`);
      }
      let covariance: Float64Array;
      if (exact && exact.units.length === d) covariance = exact.covariance;
      else {
        // F^T F over the covariance rows (probes excluded) in float64 (the float32 rows widened
        // exactly), by onnxruntime's DGEMM: at d = 1000 and 1,440 rows (ResNet-18 at rank 256) the
        // plain loops took seconds
        const rowsCov = y.k;
        const Fc = y.F.subarray(y.probes * d, (y.probes + rowsCov) * d);
        covariance = rowsCov > 0 ? await linalg.gemm(Fc, rowsCov, d, Fc, rowsCov, d, { transA: true }) : new Float64Array(d * d);
        for (let a = 0; a < d; a++) {
          for (let b = 0; b < a; b++) covariance[a * d + b] = covariance[b * d + a] = 0.5 * (covariance[a * d + b] + covariance[b * d + a]); // exactly symmetric
          covariance[a * d + a] += y.r[a];
        }
        if (exact) {
          // D C D with D rescaling the selected units to their exact variances: positive
          // semi-definite as C is, their correlations (and all others) still the factor's
          const u = exact.units.length;
          const scale = new Float64Array(d).fill(1);
          exact.units.forEach((j, a) => {
            const v = covariance[j * d + j];
            if (v > 0) scale[j] = Math.sqrt(exact.covariance[a * u + a] / v);
          });
          for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) covariance[a * d + b] *= scale[a] * scale[b];
        }
      }
      const reverseUnits = exact?.units.length ?? 0;
      const variance = new Float64Array(d);
      for (let a = 0; a < d; a++) variance[a] = covariance[a * d + a];
      return {
        mean: Float64Array.from(y.m),
        covariance,
        variance,
        rank: start.moments.k,
        sketched: start.sketched,
        reverseUnits,
        stats: { segmentSeconds, ruleSeconds, reverseSeconds, steps: steps.length },
      };
    },
    async release() {
      for (const en of engines) await en.release();
    },
  };
}

/** The output units the reverse pass covers: all, or the REVERSE_TOP_OUTPUTS of largest mean. */
function reverseUnitsOf(mean: Float64Array): number[] {
  const all = [...mean.keys()];
  if (mean.length <= REVERSE_ALL_OUTPUTS) return all;
  return all.sort((a, b) => mean[b] - mean[a] || a - b).slice(0, REVERSE_TOP_OUTPUTS);
}

/**
 * The input's moments: F = the noise factor (sigma I, diag(sqrt v) or the given factor), or when
 * rank k < its columns a random sketch F G / sqrt(k) (E[G G^T] = I, so E[F G G^T F^T / k] = Sigma;
 * G Gaussian for a given factor, of random signs for isotropic or diagonal noise) with r set to the
 * marginal variance the sketch misses (diag Sigma - |F_i|^2, clamped at 0; 0 for a sketch of
 * signs), so every input unit keeps its exact variance. Before the factor's rows go `probes` probe
 * rows, the images N g of independent standard Gaussian vectors g under the full noise factor N
 * (N N^T = Sigma).
 */
export function inputMoments(
  mu: ArrayLike<number>,
  noise: InputNoise,
  n: number,
  rank: number | undefined,
  seed: number,
  probes = 0,
): { moments: TensorMoments; sketched: boolean; variance: Float64Array } {
  const m = Float64Array.from(mu);
  let cols: number;
  let at: (i: number, c: number) => number;
  const diagSigma = new Float64Array(n);
  if (noise.kind === 'isotropic') {
    cols = n;
    at = (i, c) => (i === c ? noise.sigma : 0);
    diagSigma.fill(noise.sigma * noise.sigma);
  } else if (noise.kind === 'diagonal') {
    if (noise.variance.length !== n)
      throw new NetmomentsError(`the noise variance has ${noise.variance.length} values for an input of ${n}`, { code: 'BAD_INPUT' });
    cols = n;
    at = (i, c) => (i === c ? Math.sqrt(noise.variance[i]) : 0);
    for (let i = 0; i < n; i++) diagSigma[i] = noise.variance[i];
  } else {
    cols = noise.columns;
    if (noise.factor.length !== n * cols)
      throw new NetmomentsError(`the noise factor has ${noise.factor.length} values for [${n}, ${cols}]`, { code: 'BAD_INPUT' });
    at = (i, c) => noise.factor[i * cols + c];
    for (let i = 0; i < n; i++) for (let c = 0; c < cols; c++) diagSigma[i] += noise.factor[i * cols + c] ** 2;
  }
  const k = rank !== undefined && rank > 0 && rank < cols ? Math.floor(rank) : cols;
  const F = new Float32Array((probes + k) * n);
  const r = new Float64Array(n);
  if (probes > 0) {
    const rng = new Rng(seed + 0x9e3779b9);
    const P = new Float64Array(probes * n);
    for (let c = 0; c < cols; c++) {
      for (let d = 0; d < probes; d++) {
        const g = rng.normal();
        if (noise.kind === 'lowrank') for (let i = 0; i < n; i++) P[d * n + i] += at(i, c) * g;
        else P[d * n + c] = at(c, c) * g;
      }
    }
    F.set(P);
  }
  const cov = F.subarray(probes * n);
  if (k === cols) {
    for (let c = 0; c < cols; c++) for (let i = 0; i < n; i++) cov[c * n + i] = at(i, c);
    return { moments: { m, F, probes, k, r }, sketched: false, variance: diagSigma };
  }
  const rng = new Rng(seed);
  if (noise.kind !== 'lowrank') {
    // isotropic or diagonal: the factor is diagonal, so sketch row j at unit i is sd_i s_ij /
    // sqrt(k) with random signs s_ij (a Rademacher sketch: E[s s^T] = I, and each unit's k rows
    // give its variance sd_i^2 exactly, so r = 0; the rows' Gram estimates a unit's variance after
    // an affine map L with relative variance 2 (1 - sum_j L_ij^4 / |L_i|^4) / k, below a Gaussian
    // sketch's 2 / k). Drawn 32 signs per random number, row by row: a Gaussian sketch took 38 M
    // normal draws at n = 150,528 and k = 256 (2.0-2.3 CPU s; docs/BENCHMARKS.md).
    const scale = 1 / Math.sqrt(k);
    const sd = new Float64Array(n);
    for (let i = 0; i < n; i++) sd[i] = at(i, i) * scale;
    for (let j = 0; j < k; j++) {
      const row = j * n;
      let bits = 0;
      for (let i = 0; i < n; i++) {
        if ((i & 31) === 0) bits = rng.nextUint32();
        cov[row + i] = bits & 1 ? -sd[i] : sd[i];
        bits >>>= 1;
      }
    }
  } else {
    const G = new Float64Array(cols * k);
    for (let i = 0; i < G.length; i++) G[i] = rng.normal() / Math.sqrt(k);
    const sketch = new Float64Array(k * n);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < cols; c++) {
        const a = at(i, c);
        if (a === 0) continue;
        for (let j = 0; j < k; j++) sketch[j * n + i] += a * G[c * k + j];
      }
    }
    cov.set(sketch);
  }
  const q = unitFactorNorms(cov, 0, k, n);
  for (let i = 0; i < n; i++) r[i] = Math.max(0, diagSigma[i] - q[i]);
  return { moments: { m, F, probes, k, r }, sketched: true, variance: diagSigma };
}

/**
 * The inputs of a segment with one number of factor rows: a tensor computed before later steps
 * appended columns has zero coefficients on them (rows are only ever appended at the end).
 */
function padRows(ins: TensorMoments[]): TensorMoments[] {
  const rows = Math.max(...ins.map((x) => x.F.length / x.m.length));
  return ins.map((x) => {
    if (x.F.length === rows * x.m.length) return x;
    const F = new Float32Array(rows * x.m.length);
    F.set(x.F);
    return { ...x, F, k: rows - x.probes };
  });
}

function copyNoise(noise: InputNoise): InputNoise {
  if (noise.kind === 'isotropic') return { ...noise };
  if (noise.kind === 'diagonal') return { kind: 'diagonal', variance: Float64Array.from(noise.variance) };
  return { kind: 'lowrank', factor: Float64Array.from(noise.factor), columns: noise.columns };
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameNoise(a: InputNoise, b: InputNoise): boolean {
  if (a.kind === 'isotropic') return b.kind === 'isotropic' && a.sigma === b.sigma;
  if (a.kind === 'diagonal') return b.kind === 'diagonal' && sameValues(a.variance, b.variance);
  return b.kind === 'lowrank' && a.columns === b.columns && sameValues(a.factor, b.factor);
}
