/**
 * Which engine computes the moments (issue 13): two-stage linearization (src/linearize/, the
 * Linearizer: exact moments of a surrogate that holds every kinked layer but the split one fixed)
 * or moment propagation through every layer (src/propagate/: each op's moment rule, no split).
 *
 * `auto` picks propagate when nothing asks for two-stage (a --relu split, a --variance paper
 * report, a linearization point), every op on the path from the input to the output has a moment
 * rule (propagationSupport) and the propagation fits the memory limit (propagateRank: full rank
 * when it fits, else fallbackRank halved down to MIN_AUTO_RANK); else two-stage. The decision
 * carries a one-line reason for stderr and the report.
 *
 * The propagate engine here wraps a Propagator (moments) and a ModelEvaluator (the real model for
 * clean outputs and Monte Carlo) over the model with its batch axis made dynamic, the same rewrite
 * the Linearizer applies.
 */
import { NetmomentsError } from './errors.js';
import { ModelEvaluator } from './linearize/evaluator.js';
import type { TensorDescription } from './linearize/linearizer.js';
import { probeShapes } from './linearize/shapes.js';
import type { Noise, NoiseFactor } from './noise.js';
import { makeBatchDynamicProbed } from './onnx/batch.js';
import type { Graph } from './onnx/graph.js';
import type { LoadedModel } from './onnx/load.js';
import { isKinked } from './onnx/ops/registry.js';
import {
  CONV_OPS,
  DEFAULT_HERMITE_COLUMNS,
  DEFAULT_HERMITE_PROBES,
  REVERSE_HERMITE_COLUMNS,
  DEFAULT_RESIDUAL_ROWS,
  REVERSE_ALL_OUTPUTS,
  REVERSE_TOP_OUTPUTS,
  UNIT_OPS,
  createPropagator,
  layoutPropagation,
  propagationMemory,
  propagationSupport,
  type InputNoise,
  type PropagatedMoments,
  type PropagationLayout,
  type Propagator,
} from './propagate/index.js';
import { checkMemory, formatBytes, type MemoryEstimate, type MemoryLimit } from './resources.js';
import type { Provider } from './runtime/session.js';

export type Method = 'two-stage' | 'propagate';
export type MethodChoice = 'auto' | Method;
export const METHOD_CHOICES = ['auto', 'two-stage', 'propagate'] as const;

/** The factor rank propagate falls back to when the full rank does not fit (issue 13); LARGE_INPUT_RANK above LARGE_INPUT inputs. */
export const FALLBACK_RANK = 256;

export interface MethodDecision {
  method: Method;
  /** Why, in a few words (stderr and the report's `methodReason`). */
  reason: string;
  /** With propagate: the factor's columns (the rank the report states). */
  rank?: number;
}

/** What the choice depends on. */
export interface MethodRequest {
  method?: MethodChoice;
  /** Why the caller fixed `method` (replaces the default reason). */
  methodReason?: string;
  relu?: number | string;
  output?: string;
  /** Factor columns (--rank); default full rank when it fits, else fallbackRank(plan). */
  rank?: number;
  /** A variance mode of 'paper' is the two-stage surrogate's Theorem 2. */
  variance?: string;
  /** A linearization point was given (analyze --at FILE). */
  pointGiven?: boolean;
  threads?: number;
  provider?: Provider;
}

/** The model prepared for propagation: batch axis dynamic, tensor shapes at batch 1. */
export interface PropagationPlan {
  graph: Graph;
  shapes: Map<string, number[]>;
  input: TensorDescription;
  output: TensorDescription;
  /** Nodes on the graph whose op has kinks (the layers two-stage holds fixed, but the split). */
  kinkedLayers: number;
  /** Relu nodes two-stage could split at. */
  relus: number;
  /** Ops on the path with no moment rule. */
  missing: string[];
  /** Non-affine steps (each adds Hermite rows). */
  nonAffine: number;
  /** The steps the propagation will run (for the memory estimate); absent when the path has an op with no moment rule. */
  layout?: PropagationLayout;
  /** Bytes of the model file (the sessions hold its weights). */
  modelBytes: number;
  /**
   * Resident memory the plan itself took, measured (resident memory after planPropagation less
   * before: the batch-rewritten graph, what the shape probes' sessions left): held on top of the
   * memory in use when the limit was taken, for the rest of the run.
   */
  planBytes?: number;
  /** Bytes of the weights Conv and ConvTranspose nodes read (the sessions hold those more often than the rest: convWeightBytes). */
  convWeightBytes?: number;
}

const describe = (name: string, shapes: Map<string, number[]>, file: string): TensorDescription => {
  const s = shapes.get(name);
  if (!s) throw new NetmomentsError(`no shape for tensor '${name}'`, { code: 'UNSUPPORTED', file });
  const shape = s.slice(1);
  return { name, shape, size: shape.reduce((a, b) => a * b, 1) };
};

/** The batch rewrite, the shapes and the moment-rule coverage of the path to the output. */
export async function planPropagation(model: LoadedModel, request: MethodRequest): Promise<PropagationPlan> {
  const file = model.file;
  const rss0 = process.memoryUsage.rss();
  const graph = await makeBatchDynamicProbed(model.graph, { file, threads: request.threads, provider: request.provider });
  const g = graph.clone();
  g.sortTopologically(file);
  const outName = request.output ?? g.outputs[0]?.name;
  if (!outName || !g.producerOf(outName)) throw new NetmomentsError(`--output '${outName}' is not a tensor the model computes`, { code: 'BAD_USAGE', file });
  const support = propagationSupport(g, outName);
  const shapes = await probeShapes(g, { threads: request.threads });
  if (!shapes) throw new NetmomentsError('cannot run the model once to find its tensor shapes', { code: 'UNSUPPORTED', file });
  const inputName = g.dataInputs[0].name;
  const kinkedLayers = g.nodes.filter((n) => isKinked(n.opType, n.domain)).length;
  const nonAffine = g.nodes.filter((n) => isKinked(n.opType, n.domain) || ((n.domain === '' || n.domain === 'ai.onnx') && UNIT_OPS.has(n.opType))).length;
  const layout = support.missing.length === 0 ? layoutPropagation(g.clone(), shapes, g.dataInputs[0].name, outName, file) : undefined;
  return {
    graph,
    shapes,
    layout,
    modelBytes: model.bytes.length,
    input: describe(inputName, shapes, file),
    output: describe(outName, shapes, file),
    kinkedLayers,
    relus: g.relus().length,
    missing: support.missing,
    nonAffine,
    planBytes: Math.max(0, process.memoryUsage.rss() - rss0),
    convWeightBytes: convWeightBytes(g),
  };
}

/** Bytes of the initializers that the segments keep in their sessions (CONV_OPS: Conv and ConvTranspose; float32: 4 bytes an element). */
function convWeightBytes(g: Graph): number {
  const names = new Set(g.nodes.filter((n) => CONV_OPS.has(n.opType)).flatMap((n) => n.inputs));
  let bytes = 0;
  for (const [name, t] of g.initializers) if (names.has(name)) bytes += 4 * t.dims.reduce((a, d) => a * d, 1);
  return bytes;
}

/** Inputs above this many elements are "large" (ImageNet-size: 150,528): a lower fallback rank, fewer Hermite and residual rows per kinked op. */
export const LARGE_INPUT = 65_536;
/**
 * A large input's sketch rank (when the full rank does not fit) and its rows per kinked op: at most
 * LARGE_INPUT_HERMITE_COLUMNS Hermite rows (K) per non-affine step and LARGE_INPUT_RESIDUAL_ROWS
 * residual rows (R) per affine segment, K lowered (not below LARGE_INPUT_MIN_HERMITE_COLUMNS) so
 * that the steps add at most LARGE_INPUT_ADDED_ROWS rows in all. Chosen on ResNet-18 and AlexNet
 * against 10,000-sample Monte Carlo references, three sketch seeds each (docs/BENCHMARKS.md, "Rank
 * 128 with 48 Hermite rows"): the logits' mean error follows the Hermite rows carried more than the
 * rank. Rank 128 with K = 48, R = 16 beat rank 256 with K = R = 16 at every seed on both nets
 * (ResNet-18 all-logit median 0.027-0.028 against 0.029-0.034 MC sd, worst top-5 0.035-0.085
 * against 0.084-0.090; AlexNet worst top-5 0.042-0.052 against 0.026-0.093) at no more CPU; R = 4
 * lost the gain (median 0.031-0.035). Every step after a kinked op carries its rows, so a net with
 * many (MobileNetV2: 35 Clips) gets fewer each: at K = 48 its time doubled.
 */
export const LARGE_INPUT_RANK = 128;
export const LARGE_INPUT_HERMITE_COLUMNS = 48;
export const LARGE_INPUT_MIN_HERMITE_COLUMNS = 16;
export const LARGE_INPUT_RESIDUAL_ROWS = 16;
/** ResNet-18's 17 non-affine steps at 48 + 16 rows each. */
export const LARGE_INPUT_ADDED_ROWS = 1_088;

/**
 * The propagation's non-affine steps (kinked and curved ops, a MaxPool with the Relu it absorbs
 * counted once) from the plan's layout, else its non-affine nodes: what sets the rows a large
 * input carries (propagateRows) and the depth src/trust.ts judges.
 */
export function nonAffineSteps(plan: Pick<PropagationPlan, 'layout' | 'nonAffine'>): number {
  return plan.layout ? plan.layout.steps.filter((s) => s.kind !== 'affine').length : plan.nonAffine;
}

/** The rank auto falls back to when the full rank does not fit: LARGE_INPUT_RANK for a large input, else FALLBACK_RANK. */
export function fallbackRank(plan: Pick<PropagationPlan, 'input'>): number {
  return plan.input.size > LARGE_INPUT ? LARGE_INPUT_RANK : FALLBACK_RANK;
}

/**
 * The Hermite and residual rows per kinked op (src/propagate/rules/index.ts) for a plan: the
 * defaults (K = 128 Hermite columns from 32 probes and R = 32, tuned on LeNet), or for a large input
 * the rows above (K from the non-affine steps of the plan's layout, else of its nodes). Every
 * kinked op adds K + R rows to the factor and every later step carries them, so on a deep net at
 * ImageNet size they, more than the rank, set the cost: ResNet-18 ends with 160 + 17 x 64 = 1,248
 * rows (its first steps, at 112 x 112 and 56 x 56, carry 160-224). The reverse pass records
 * REVERSE_HERMITE_COLUMNS Hermite columns per kinked op either way: they cost no rows in the steps
 * after, and its output covariance's sketch noise is set by them.
 */
export function propagateRows(plan: Pick<PropagationPlan, 'input' | 'layout' | 'nonAffine'>): {
  hermiteColumns: number;
  residualRows: number;
  reverseHermiteColumns: number;
} {
  if (plan.input.size <= LARGE_INPUT)
    return { hermiteColumns: DEFAULT_HERMITE_COLUMNS, residualRows: DEFAULT_RESIDUAL_ROWS, reverseHermiteColumns: REVERSE_HERMITE_COLUMNS };
  const K = Math.floor(LARGE_INPUT_ADDED_ROWS / Math.max(1, nonAffineSteps(plan))) - LARGE_INPUT_RESIDUAL_ROWS;
  return {
    hermiteColumns: Math.max(LARGE_INPUT_MIN_HERMITE_COLUMNS, Math.min(LARGE_INPUT_HERMITE_COLUMNS, K)),
    residualRows: LARGE_INPUT_RESIDUAL_ROWS,
    reverseHermiteColumns: REVERSE_HERMITE_COLUMNS,
  };
}

/**
 * onnxruntime's state per session beyond the weights (kernels, allocators, the graph; measured:
 * 1.5 MiB for a session of a 50 kB model) and the JS graph each segment is built from.
 */
export const SESSION_BYTES = 3 * 2 ** 20;
/**
 * Copies of a Conv's weights the sessions hold: per segment their squares (the variance model's,
 * folded by onnxruntime) and the filters onnxruntime reorders into its NCHWc layout for the primal,
 * tangent and variance nodes, and the weights themselves (src/propagate/segment.ts keeps Conv weights
 * as initializers; the evaluator's one-run session takes them as inputs). Measured after a full V8
 * collection (`node --expose-gc bench/propagate-memory.mjs --sessions MODEL`, docs/BENCHMARKS.md):
 * ResNet-18's 18 segment sessions and the propagator took 362 MiB for 42.6 MiB of Conv weights (the
 * estimate: 20 sessions and 7 copies, 358 MiB), SqueezeNet 1.1's 29 took 122 MiB for 4.7 MiB (126).
 * The other weights (a Gemm's, a MatMul's) of FED_WEIGHT_ELEMENTS or more are fed to the sessions
 * as inputs (src/onnx/weightInputs.ts): no session holds a copy of them (AlexNet's segment sessions:
 * 98 MiB for 224 MiB of Gemm weights). Smaller ones stay initializers and are not counted (16 MB at
 * most per weight; AlexNet's fc8, ResNet-18's fc, LeNet's fc1).
 */
export const CONV_WEIGHT_COPIES = 7;

/**
 * Copies of the Conv weights in the reverse pass's adjoint sessions (src/propagate/segment.ts vjp:
 * the ConvTranspose's weights and the layout onnxruntime packs them into; the other weights are fed).
 */
export const ADJOINT_WEIGHT_COPIES = 2;

/**
 * Memory of a propagation at factor rank k (`fullRank`: the noise's columns; a smaller k is a
 * sketch), on top of the memory in use when the limit was taken: the peak of what the engine holds
 * at once, walked step by step over the same layout (src/propagate/memory.ts, checked step by step
 * against the peak resident memory of real runs), plus what the plan took (measured), the onnxruntime
 * sessions (a segment session per affine step, the evaluator's and the float64 GEMM's: SESSION_BYTES
 * each, CONV_WEIGHT_COPIES copies of the Conv weights; the other weights are fed as inputs) and the
 * d x d float64 output covariance (twice: onnxruntime's GEMM output and the copy handed back, then
 * the propagation's and the report's) with the covariance rows widened to float64 for the GEMM
 * (twice, one per operand).
 */
export function estimatePropagateMemory(plan: PropagationPlan, rank: number, fullRank = plan.input.size): MemoryEstimate {
  const d = plan.output.size;
  const lever = `a lower --rank (now ${rank}), or --method two-stage`;
  const rows = propagateRows(plan);
  const mem = plan.layout
    ? propagationMemory(plan.layout, {
        rank,
        sketched: rank < fullRank,
        hermiteRows: rows.hermiteColumns,
        hermiteProbes: DEFAULT_HERMITE_PROBES,
        residualRows: rows.residualRows,
        // the output covariance by reverse passes (src/propagate/adjoint.ts): one cotangent row per output unit covered
        reverse: { rows: d <= REVERSE_ALL_OUTPUTS ? d : REVERSE_TOP_OUTPUTS, hermiteColumns: rows.reverseHermiteColumns },
      })
    : undefined;
  const segments = plan.layout ? plan.layout.steps.filter((s) => s.kind === 'affine').length : 0;
  // a segment session per affine step and its adjoint's (made at the first reverse pass), the evaluator's and the GEMM's
  const sessions = 2 * segments + 2;
  const parts = [
    { what: `factors of rank ${rank}${mem ? ` (${mem.rows} rows at the output; at the peak, ${mem.at})` : ''}`, bytes: mem?.peak ?? 0, lever },
    { what: `onnxruntime sessions (${sessions})`, bytes: sessionBytes(plan, sessions), lever: 'a smaller model' },
    { what: 'the propagation plan (measured)', bytes: plan.planBytes ?? 0, lever: 'a smaller model' },
    { what: 'output covariance', bytes: 2 * 8 * d * d + 2 * 8 * d * (mem?.rows ?? 0), lever: 'a smaller --output' },
  ].filter((p) => p.bytes > 0);
  return { total: parts.reduce((a, p) => a + p.bytes, 0), parts };
}

/** What `sessions` onnxruntime sessions of the plan's model hold (see SESSION_BYTES and the weight copies). */
function sessionBytes(plan: PropagationPlan, sessions: number): number {
  const conv = Math.min(plan.convWeightBytes ?? 0, plan.modelBytes);
  // + the adjoint sessions of the reverse pass: ADJOINT_WEIGHT_COPIES of the Conv (and ConvTranspose) weights
  return sessions * SESSION_BYTES + (CONV_WEIGHT_COPIES + ADJOINT_WEIGHT_COPIES) * conv;
}

/** The lowest rank auto halves the fallback rank down to when it does not fit (a wide net at ImageNet size). */
export const MIN_AUTO_RANK = 16;

/**
 * The rank to run at: the asked one, else full rank when it fits `limit`, else fallbackRank(plan)
 * (or the full rank when it is smaller), halved down to MIN_AUTO_RANK while it does not fit (where
 * none fits, the fallback rank: the caller refuses it or falls back to two-stage).
 */
export function propagateRank(plan: PropagationPlan, fullRank: number, limit: MemoryLimit, asked?: number): number {
  if (asked !== undefined) return Math.max(1, Math.min(asked, fullRank));
  if (estimatePropagateMemory(plan, fullRank, fullRank).total <= limit.bytes) return fullRank;
  const fallback = Math.min(fallbackRank(plan), fullRank);
  for (let rank = fallback; rank >= MIN_AUTO_RANK; rank = Math.floor(rank / 2))
    if (estimatePropagateMemory(plan, rank, fullRank).total <= limit.bytes) return rank;
  return fallback;
}

/**
 * The engine for a request: `method` as asked, or under auto the rules in the file comment. A
 * request that cannot be met (propagate asked with a --relu, or with an op that has no moment rule)
 * is an error; auto never fails here (two-stage then says what is wrong with the model).
 */
export async function chooseMethod(
  model: LoadedModel,
  request: MethodRequest,
  fullRank: number,
  limit: MemoryLimit,
): Promise<{ decision: MethodDecision; plan?: PropagationPlan }> {
  const asked = request.method ?? 'auto';
  if (request.rank !== undefined && !(Number.isInteger(request.rank) && request.rank >= 1))
    throw new NetmomentsError(`--rank must be a whole number >= 1, got ${request.rank}`, { code: 'BAD_USAGE' });
  if (asked === 'two-stage') return { decision: { method: 'two-stage', reason: request.methodReason ?? 'asked for with --method two-stage' } };
  const twoStageBecause =
    request.relu !== undefined
      ? '--relu sets a split point'
      : request.variance === 'paper'
        ? "--variance paper is the two-stage surrogate's Theorem 2"
        : request.pointGiven
          ? '--at sets a linearization point'
          : undefined;
  if (twoStageBecause) {
    if (asked === 'propagate')
      throw new NetmomentsError(`--method propagate: ${twoStageBecause}, which only two-stage linearization has; drop it`, { code: 'BAD_USAGE' });
    return { decision: { method: 'two-stage', reason: twoStageBecause } };
  }
  let plan: PropagationPlan;
  try {
    plan = await planPropagation(model, request);
  } catch (e) {
    if (asked === 'propagate' || !(e instanceof NetmomentsError) || e.code === 'BAD_USAGE') throw e;
    return { decision: { method: 'two-stage', reason: `propagate cannot run this model: ${e.message}` } };
  }
  if (plan.missing.length > 0) {
    const what = `no moment rule for ${plan.missing.join(', ')}`;
    if (asked === 'propagate') return { decision: { method: 'propagate', reason: what }, plan }; // createPropagator says it
    return { decision: { method: 'two-stage', reason: what }, plan };
  }
  const rank = propagateRank(plan, fullRank, limit, request.rank);
  const estimate = estimatePropagateMemory(plan, rank, fullRank);
  if (estimate.total > limit.bytes && asked === 'auto') {
    return { decision: { method: 'two-stage', reason: `propagate at rank ${rank} would need ${formatBytes(estimate.total)}, over the memory limit` }, plan };
  }
  // asked for: refused here, before any session or factor is allocated, with what lowers it
  if (asked === 'propagate') checkMemory(estimate, limit, model.file);
  const held = Math.max(0, plan.kinkedLayers - 1);
  const reason =
    asked === 'propagate'
      ? (request.methodReason ?? 'asked for with --method propagate')
      : plan.relus === 0
        ? 'every op has a moment rule; the model has no Relu for two-stage to split at'
        : `every op has a moment rule; two-stage would hold ${held} kinked layer${held === 1 ? '' : 's'} fixed`;
  return { decision: { method: 'propagate', reason, rank }, plan };
}

/**
 * The noise as the propagator takes it: isotropic or diagonal over all n elements when the noise
 * reaches all of them, else the factor's columns over the n rows (a window, a full covariance).
 */
export function propagatorNoise(noise: Noise, factor: NoiseFactor): InputNoise {
  const n = factor.n;
  if (factor.kind === 'axes' && factor.support.length === n) {
    if (noise.sigma.kind === 'isotropic') return { kind: 'isotropic', sigma: noise.sigma.sigma };
    const variance = new Float64Array(n);
    factor.support.forEach((i, k) => (variance[i] = factor.sd[k] ** 2));
    return { kind: 'diagonal', variance };
  }
  // no noise at all (sigma 0): one zero column
  const r = Math.max(1, factor.r);
  const F = new Float64Array(n * r);
  if (factor.kind === 'axes') factor.support.forEach((i, k) => (F[i * r + k] = factor.sd[k]));
  else factor.support.forEach((i, t) => F.set(factor.factor.subarray(t * r, (t + 1) * r), i * r));
  return { kind: 'lowrank', factor: F, columns: r };
}

/** Moments through every layer (a Propagator) and the real model (a ModelEvaluator), one model and output. */
export class PropagateEngine {
  private constructor(
    readonly propagator: Propagator,
    readonly evaluator: ModelEvaluator,
    readonly input: TensorDescription,
    readonly output: TensorDescription,
    readonly rank: number,
    /** nonAffineSteps of the plan: the depth src/trust.ts judges. */
    readonly nonAffineSteps: number,
  ) {}

  static async create(model: LoadedModel, plan: PropagationPlan, options: { rank: number; threads?: number; provider?: Provider }): Promise<PropagateEngine> {
    const propagator = await createPropagator(
      { ...model, graph: plan.graph },
      { output: plan.output.name, rank: options.rank, ...propagateRows(plan), shapes: plan.shapes, threads: options.threads, provider: options.provider },
    );
    try {
      const evaluator = await ModelEvaluator.create(plan.graph, plan.input, plan.output, {
        threads: options.threads,
        provider: options.provider,
        file: model.file,
      });
      return new PropagateEngine(propagator, evaluator, plan.input, plan.output, options.rank, nonAffineSteps(plan));
    } catch (e) {
      await propagator.release();
      throw e;
    }
  }

  moments(mu: Float64Array, noise: InputNoise): Promise<PropagatedMoments> {
    return this.propagator.moments(mu, noise);
  }

  evaluate(xs: Float32Array, count: number): Promise<Float64Array> {
    return this.evaluator.evaluate(xs, count);
  }

  async release(): Promise<void> {
    await this.propagator.release();
    await this.evaluator.release();
  }
}
