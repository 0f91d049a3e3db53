/**
 * Two-stage linearization of a PL network at its K-th ReLU (docs/ARCHITECTURE.md, section 3):
 *
 *   R(x) = top(relu(bottom(x)), skip(x)),   z = bottom(x) the ReLU's input (p units), g = top(...) (d outputs)
 *   A = d bottom/dx (xb),   B = d top/dy (yb),   D = d top/d skip * d skip/dx (xb)   (skip paths)
 *   c1 = bottom(xb) - A xb,   c2 = top(yb) - B yb - D xb,   yb = relu(bottom(xb))
 *
 * so that g(x) ~ B relu(A x + c1) + D x + c2, exact for an (Affine, ReLU, Affine) net. All
 * Jacobians are forward-mode JVPs through tangent models (src/onnx/tangent), one onnxruntime
 * session per part created once and reused for every point.
 *
 * The noise enters only through Sigma = F F^T: pushing the r columns of F through the JVP gives
 * A F, D F and, for every other ReLU / max-pool layer, the standard deviation of each unit under
 * the linearized noise, all from the same passes (docs/ARCHITECTURE.md, section 4, cost model: r directions instead of n).
 * F is a NoiseFactor (src/noise.ts): for isotropic and diagonal noise its columns are scaled
 * coordinate axes, made batch by batch by the Jacobian engine (DirectionBatches), never as a dense
 * r x n matrix. The linearization point's offset delta = mu - xb is one more direction. The result
 * is the surrogate of src/moments/surrogate.ts in its factored form.
 */
import { availableParallelism } from 'node:os';
import { NetmomentsError } from '../errors.js';
import { makeBatchDynamicProbed } from '../onnx/batch.js';
import type { Graph, GraphNode } from '../onnx/graph.js';
import type { LoadedModel } from '../onnx/load.js';
import { DataType, dataTypeName } from '../onnx/proto.js';
import { splitModelAt, type SplitResult } from '../onnx/split.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { ModelSession, type HostTensor, type Provider } from '../runtime/session.js';
import { isSmooth, kinksOf } from '../onnx/ops/registry.js';
import { applyPieces, pieceOf, splitPieces, type UnitPieces } from '../onnx/ops/splitPieces.js';
import { expandToRelu, isPlainRelu, reluTerms, type ReluTerm } from './pieces.js';
import type { Kinks } from '../onnx/ops/types.js';
import {
  createJacobianEngine,
  denseRows,
  factorColumns,
  scaledAxes,
  withExtraDirection,
  type DirectionBatches,
  type JacobianEngine,
  type JacobianMode,
} from './jacobian.js';
import { addFactorColumn, type NoiseFactor } from '../noise.js';
import { surrogateOffsets, type Surrogate } from '../moments/surrogate.js';
import { Phi } from '../moments/special.js';
import { Rng } from '../moments/montecarlo.js';
import { perInputShape } from '../data/layout.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { collectGarbageAfter } from '../util/gc.js';
import { stage } from '../util/timing.js';

export interface LinearizerOptions {
  /** ReLU index (0-based, graph order) or node/tensor name; default the last ReLU. */
  relu?: number | string;
  /** The tensor g: a model output or an intermediate tensor above the cut; default the first output. */
  output?: string;
  jacobian?: JacobianMode;
  threads?: number;
  /**
   * Worker threads for the reverse passes of the Gram form (two-stage with noise on a large input),
   * each with a session of the bottom's adjoint (default: defaultGramWorkers, as few as the memory
   * limit needs; 0: the main thread only).
   */
  workers?: number;
  provider?: Provider;
  /** One-line warnings (finite-difference fallback, ...). */
  onWarning?: (message: string) => void;
  /** Count expected sign flips of the other ReLU and max-pool layers (default true; false is diagnostics 'none'). */
  flips?: boolean;
  /**
   * How the expected state changes of the layers held fixed are computed: 'none' skips them;
   * 'full' sums over the noise directions when there are at most FLIP_DIRECTIONS and sketches them
   * with FLIP_DIRECTIONS random combinations otherwise; 'fast' sketches with FAST_FLIP_DIRECTIONS.
   * Default (defaultDiagnostics): 'full' for inputs of at most FULL_DIAGNOSTICS_MAX_INPUT elements, else 'fast'.
   */
  diagnostics?: Diagnostics;
}

export type Diagnostics = 'none' | 'fast' | 'full';

/** Inputs up to this many elements (MNIST, CIFAR) get 'full' diagnostics by default, larger ones (ImageNet) 'fast'. */
export const FULL_DIAGNOSTICS_MAX_INPUT = 65536;

/** The diagnostics level a run gets: the option, else by input size n (LinearizerOptions.diagnostics). */
export function defaultDiagnostics(options: Pick<LinearizerOptions, 'diagnostics' | 'flips'>, n: number): Diagnostics {
  if (options.flips === false) return 'none';
  return options.diagnostics ?? (n <= FULL_DIAGNOSTICS_MAX_INPUT ? 'full' : 'fast');
}

export interface TensorDescription {
  name: string;
  /** Per-sample shape (no batch axis). */
  shape: number[];
  size: number;
}

/**
 * Expected number of units that change state under the noise, per nonlinear layer: the layers
 * whose op has kinks in the op registry (src/onnx/ops/registry.ts kinksOf): unit-wise kinks (ReLU,
 * LeakyRelu, PRelu, Clip) and window kinks (max pooling).
 */
export interface LayerFlips {
  node: string;
  /** The layer's op type. */
  op: string;
  /** Units (unit-wise kinks) or pooling windows (window kinks). */
  units: number;
  /**
   * Sum over units of P(the unit leaves its linear piece), for ReLU a sign flip (unit-wise kinks:
   * ReLU, LeakyRelu and PRelu at 0, Clip at its min and max), or a union bound on P(winner
   * changes) (max pool), under the linearized noise.
   */
  expectedFlips: number;
  /** The ReLU the model is split at: its nonlinearity is handled exactly. */
  isSplit: boolean;
  /**
   * Present when the per-unit variances were estimated from this many random combinations of the
   * noise directions (a sketch: relative error of a variance about sqrt(2 / sketch)) instead of summed over all of them.
   */
  sketch?: number;
}

/**
 * The linearization at a point, projected on the noise factor F (Sigma = F F^T, r columns): the
 * surrogate in its factored form (A is A F, p x r; D is D F, d x r) plus the expected state changes
 * of the other layers.
 */
export interface PointLinearization extends Surrogate {
  point: Float32Array;
  /** A delta (p) for the offset delta = mu - xb, when one was given. */
  Adelta?: Float64Array;
  /** D delta (d). */
  Ddelta?: Float64Array;
  /** Columns of the factor. */
  r: number;
  flips: LayerFlips[];
  /**
   * The Gram form S = (A F)(A F)^T (p x p) when the linearization was asked for it (gram: true,
   * see Linearizer.gramPlanned): A F itself is then not formed and `A` is empty.
   */
  S?: Float64Array;
}

/** Options of one linearization. */
export interface LinearizeOptions {
  /**
   * Form S = (A F)(A F)^T instead of A F when Linearizer.gramPlanned says it applies (the factored
   * form would not fit: p x r float64 for ImageNet inputs is gigabytes).
   */
  gram?: boolean;
  /** gramPlanned's size threshold on A F (default GRAM_MIN_BYTES; tests lower it to compare both forms on small nets). */
  gramMinBytes?: number;
  /**
   * Float64 products (onnxruntime's, src/runtime/linalg.ts): with them the Gram form keeps A's rows
   * (float32, p x n) and forms S by float64 GEMM when they fit in GRAM_ROWS_MAX_BYTES (gramStrategy).
   */
  linalg?: LinearAlgebra;
  /** The Gram form's strategy, when the caller chose it (e.g. from the memory limit); default gramStrategy(p, n, linalg). */
  gramStrategy?: GramStrategy;
  /** Rows per GEMM tile of the 'gemm' strategy (default gramTile; tests make it small to cover the tiling). */
  gramTileRows?: number;
  /**
   * Worker threads that run the Gram form's reverse passes beside the main thread, each with its own
   * adjoint session (src/linearize/jacobian.ts reverseRows; default 0). Count their memory with
   * gramWorkerBytes.
   */
  gramWorkers?: number;
}

/**
 * Worker threads for the Gram form's reverse passes by default: one per core beyond the main
 * thread's, at most GRAM_WORKERS_MAX (each holds the bottom's weights once more). The reverse
 * passes of a large bottom run on one core (onnxruntime's ConvTranspose, the adjoint of Conv, does
 * not use a second intra-op thread); VGG-11's fc7 Gram rows take 660 s of a 785 s run on one core.
 */
export function defaultGramWorkers(cores = availableParallelism()): number {
  return Math.max(0, Math.min(GRAM_WORKERS_MAX, cores - 1));
}

/** Most worker threads defaultGramWorkers gives. */
export const GRAM_WORKERS_MAX = 3;

/** Resident bytes of a worker's session per byte of the serialized model (0.60 GiB for 515 MB measured: 1.25; rounded up). */
export const WORKER_SESSION_BYTES_PER_BYTE = 1.3;

/** A worker thread's own V8 heap and onnxruntime binding, without its session. */
export const WORKER_THREAD_BYTES = 48 * 1024 * 1024;

/**
 * Most bytes of A's rows (p x n float32) the Gram form keeps to form S by GEMM (gramStrategy): AlexNet's
 * and VGG's fc7 with noise on a 224 x 224 image take 2.3 GiB.
 */
export const GRAM_ROWS_MAX_BYTES = 3 * 1024 * 1024 * 1024;

/**
 * How the Gram form gets S = A Sigma A^T from the rows of A (reverse mode): 'gemm' keeps the rows
 * (scaled by the noise sds, float32) and multiplies them in float64 tiles (2 p^2 n flops at GEMM
 * speed); 'forward' pushes each block of rows, scaled by the variances, forward through the bottom
 * again (p more tangent passes, no p x n storage).
 */
export type GramStrategy = 'gemm' | 'forward';

/** The Gram form's strategy for p rows of n elements: gemm where products are given and the rows fit. */
export function gramStrategy(p: number, n: number, linalg: LinearAlgebra | undefined): GramStrategy {
  return linalg !== undefined && p * n * 4 <= GRAM_ROWS_MAX_BYTES ? 'gemm' : 'forward';
}

/** Rows per tile of the Gram form's GEMM: a tile's float64 copy (onnxruntime widens float32 operands) within 128 MiB. */
export function gramTile(n: number, p: number): number {
  return Math.max(1, Math.min(p, Math.floor((128 * 1024 * 1024) / (8 * Math.max(n, 1)))));
}

/** A F at or above this size is replaced by its Gram form S when gramPlanned allows (AlexNet fc7, full noise: 4.6 GiB). */
export const GRAM_MIN_BYTES = 512 * 1024 * 1024;

/** The surrogate over the n inputs with its plain offsets c1, c2 (surrogateOffsets), as `netmoments linearize` writes it. */
export interface AffineSurrogate extends Surrogate {
  c1: Float64Array; // p
  c2: Float64Array; // d
}

/** A factor of all n coordinates (F = I): the surrogate's plain matrices. */
function identityFactor(n: number): NoiseFactor {
  return { kind: 'axes', n, r: n, support: Int32Array.from({ length: n }, (_, i) => i), sd: new Float64Array(n).fill(1) };
}

/** F's columns as tangent directions, made batch by batch. */
function factorDirections(f: NoiseFactor): DirectionBatches {
  return f.kind === 'axes' ? scaledAxes(f.n, f.support, f.sd) : factorColumns(f.n, f.support, f.factor, f.r);
}

interface FlipLayerSpec {
  node: GraphNode;
  /** The tensor the kinks are in (the node's input 0). */
  tensor: string;
  kinks: Kinks;
}

const CHUNK_BYTES = 96 * 1024 * 1024;
/** Most noise directions the expected-flips statistics use exactly (more are sketched, see flipStatistics). */
/** Inputs per onnxruntime run of the whole model in `evaluate`. */
const EVALUATE_BATCH = 64;

export const FLIP_DIRECTIONS = 128;
/** Sketch size of diagnostics 'fast' (relative error of a unit's variance about sqrt(2/16) = 35%). */
export const FAST_FLIP_DIRECTIONS = 16;
const FLIP_SEED = 20180618;

/** Bytes of the initializers a graph holds (the weights a session of it copies). */
function weightBytes(g: Graph): number {
  let b = 0;
  for (const t of g.initializers.values()) b += t.data.byteLength;
  return b;
}

/**
 * Resident bytes of an onnxruntime session per byte of its weights, once made and the serialized
 * model collected: measured 1.31 for VGG-11 and 1.32 for AlexNet (the whole model, one run at batch 1;
 * docs/BENCHMARKS.md).
 */
const SESSION_BYTES_PER_WEIGHT = 1.35;

/** A session or engine made at its first use (get), once; made() is it when it exists, for release. */
interface Lazy<T> {
  get(): Promise<T>;
  made(): Promise<T | undefined>;
}
function lazy<T>(make: () => Promise<T>, weights: number): Lazy<T> {
  let value: Promise<T> | undefined;
  return {
    // the serialized model it was made from is garbage then (the part's weights once more): collected
    get: () => (value ??= make().then((v) => (collectGarbageAfter(weights), v))),
    made: () => (value ? value.catch(() => undefined) : Promise.resolve(undefined)),
  };
}

export class Linearizer {
  private constructor(
    readonly model: LoadedModel,
    readonly split: SplitPoint,
    /** Tensors the top reads from below the cut (besides the ReLU output). */
    readonly skip: string[],
    readonly input: TensorDescription,
    readonly output: TensorDescription,
    private readonly parts: {
      bottom: JacobianEngine;
      bottomFlipsEngine?: Lazy<JacobianEngine>;
      topB: JacobianEngine;
      topFlips?: JacobianEngine;
      forward: Lazy<ModelSession>;
      forwardBatched: { value: boolean };
      /** Bytes of the weights the deferred sessions hold (the whole model; the bottom), and the flips' output elements. */
      deferred: { modelWeights: number; bottomWeights: number; flipOutputs: number };
      bottomFlips: FlipLayerSpec[];
      topFlipSpecs: FlipLayerSpec[];
      /** Where the split op's slope changes. */
      splitKinks: readonly number[];
      /** The split op's pieces (src/onnx/ops/splitPieces.ts) and its ReLU terms (pieces.ts); no terms for a plain Relu. */
      pieces: UnitPieces;
      reluTerms?: ReluTerm[];
      /** The split op's type, for the flips report. */
      splitOp: string;
      diagnostics: Diagnostics;
      /** skip tensors that are the model input itself (identity Jacobian). */
      inputSkips: string[];
      innerSkips: string[];
      /** How the Jacobians were computed. */
      mode: string;
      /** Curved ops (Sigmoid, Tanh, Softmax) in the bottom or the top: the surrogate holds their tangent. */
      smoothOps: { node: string; op: string }[];
    },
  ) {}

  /** n: input elements. */
  get n(): number {
    return this.input.size;
  }
  /** p: split width. */
  get p(): number {
    return this.split.width;
  }
  /** Units of the ReLU surrogate: p for a Relu split, p times its ReLU terms for LeakyRelu, PRelu, Clip (pieces.ts). */
  get units(): number {
    return this.p * (this.parts.reluTerms?.length ?? 1);
  }
  /** The diagnostics level (expected state changes of the layers held fixed). */
  get diagnostics(): Diagnostics {
    return this.parts.diagnostics;
  }
  /** d: output elements. */
  get d(): number {
    return this.output.size;
  }
  get jacobianMode(): string {
    return this.parts.mode;
  }
  /** How each part's Jacobians were built so far (forward or reverse mode, and why reverse was unavailable), in words. */
  get jacobianDescription(): string {
    return `bottom: ${this.parts.bottom.description}; top: ${this.parts.topB.description}`;
  }
  /** Non-piecewise-linear ops inside the linearized part (bottom and top), in graph order. */
  get smoothOps(): readonly { node: string; op: string }[] {
    return this.parts.smoothOps;
  }

  /** Per-sample shape of the model's (single) data input, without the batch axis. */
  static inputShapeOf(model: LoadedModel): number[] {
    const inputs = model.graph.dataInputs;
    if (inputs.length !== 1) {
      throw new NetmomentsError(manyInputs(inputs), { file: model.file, code: 'UNSUPPORTED' });
    }
    if (!inputs[0].shape) throw new NetmomentsError(`the model input '${inputs[0].name}' has no declared shape`, { file: model.file, code: 'UNSUPPORTED' });
    return perInputShape(inputs[0].shape, model.file, inputs[0].name);
  }

  static async create(model: LoadedModel, options: LinearizerOptions = {}): Promise<Linearizer> {
    const file = model.file;
    Linearizer.inputShapeOf(model);
    if (options.output === undefined && model.graph.outputs.length > 0) {
      const first = model.graph.outputs[0].name;
      const producer = model.graph.producerOf(first);
      if (producer && ['Softmax', 'LogSoftmax', 'Sigmoid'].includes(producer.opType)) {
        options.onWarning?.(
          `the model's output '${first}' comes from ${producer.opType}, which is not piecewise linear; the moments are of the linearized ${producer.opType}. ` +
            `For the logits use --output ${producer.inputs[0]}`,
        );
      }
    }
    // batch-1 exports accept batches after this rewrite; the same one inspect and split apply
    const graph = await makeBatchDynamicProbed(model.graph, { file, threads: options.threads, provider: options.provider });
    const dataInputs = graph.dataInputs;
    if (dataInputs.length !== 1) {
      throw new NetmomentsError(manyInputs(dataInputs), { file, code: 'UNSUPPORTED' });
    }
    const inp = dataInputs[0];
    if (inp.elemType !== DataType.FLOAT) {
      throw new NetmomentsError(`the model input '${inp.name}' is ${dataTypeName(inp.elemType)}, not float32; netmoments analyses float32 models`, {
        file,
        code: 'UNSUPPORTED',
      });
    }
    const quantized = quantization(graph);
    if (quantized) {
      throw new NetmomentsError(
        `the model is ${quantized.type}-quantized (${quantized.op} node '${quantized.node}'); netmoments analyses float32 models: use the model as exported before quantization`,
        { file, code: 'UNSUPPORTED' },
      );
    }
    const relus = graph.relus();
    const relu = options.relu ?? (relus.length > 0 ? relus.length - 1 : 0);
    const sessionOptions = { threads: options.threads, provider: options.provider, file };
    const sr: SplitResult & { info: Map<string, { dims: (number | string | null)[] }> } = await splitModelAt(graph, relu, {
      output: options.output,
      ...sessionOptions,
    });
    const dimsOf = (name: string): number[] => {
      const t = sr.info.get(name);
      if (!t) throw new NetmomentsError(`the shape of tensor '${name}' is unknown`, { file });
      return t.dims.slice(1).map((d) => {
        if (typeof d !== 'number') throw new NetmomentsError(`tensor '${name}' has a dynamic dimension besides the batch axis`, { file, code: 'UNSUPPORTED' });
        return d;
      });
    };
    const describe = (name: string): TensorDescription => {
      const shape = dimsOf(name);
      return { name, shape, size: shape.reduce((a, b) => a * b, 1) };
    };
    const input = describe(inp.name);
    const outName = sr.top.outputs[0].name;
    const output = describe(outName);

    const inputSkips = sr.skip.filter((s) => s === inp.name);
    const innerSkips = sr.skip.filter((s) => s !== inp.name);
    const splitNode = relus[sr.relu.index];
    let pieces: UnitPieces;
    try {
      pieces = splitPieces(graph, splitNode, sr.relu.shape);
    } catch (e) {
      throw e instanceof NetmomentsError && !e.file ? new NetmomentsError(e.message, { file, code: e.code, cause: e }) : e;
    }
    const terms = reluTerms(pieces);
    const diagnostics = defaultDiagnostics(options, input.size);
    const flipsWanted = diagnostics !== 'none';
    // the kinked layers besides the split ReLU, in graph order (the op registry says where each one's derivative jumps)
    const flipSpecs = (part: Graph): FlipLayerSpec[] => {
      if (!flipsWanted) return [];
      const out: FlipLayerSpec[] = [];
      for (const node of part.nodes) {
        if (node.outputs[0] === sr.relu.output) continue;
        const kinks = kinksOf(graph, node, dimsOf);
        if (kinks) out.push({ node, tensor: node.inputs[0], kinks });
      }
      return out;
    };
    const bottomFlips = flipSpecs(sr.bottom);
    const topFlipSpecs = flipSpecs(sr.top);
    const unique = (names: string[]) => [...new Set(names)];
    const engineOptions = { mode: options.jacobian ?? 'auto', threads: options.threads, provider: options.provider, onWarning: options.onWarning };
    const bottom = await createJacobianEngine(sr.bottom, {
      ...engineOptions,
      varying: [inp.name],
      outputs: unique([sr.relu.input, ...innerSkips]),
    });
    // a second bottom session exposes the other layers' tangents for the expected flips; it runs on
    // at most FLIP_DIRECTIONS directions, the main one on all r noise directions. Made at its first
    // use (after the bottom Jacobian), so that its copy of the bottom's weights is not resident
    // while the Gram form keeps A's rows (VGG-11: 0.5 GB of weights beside 2.3 GiB of rows)
    const bottomFlipsEngine =
      bottomFlips.length + topFlipSpecs.length > 0
        ? lazy(
            () =>
              createJacobianEngine(sr.bottom, {
                ...engineOptions,
                varying: [inp.name],
                outputs: unique([sr.relu.input, ...innerSkips, ...bottomFlips.map((f) => f.tensor)]),
              }),
            weightBytes(sr.bottom),
          )
        : undefined;
    const topVarying = [sr.relu.output, ...sr.skip];
    const topB = await createJacobianEngine(sr.top, { ...engineOptions, varying: topVarying, outputs: [outName] });
    const topFlips =
      topFlipSpecs.length > 0
        ? await createJacobianEngine(sr.top, { ...engineOptions, varying: topVarying, outputs: unique([outName, ...topFlipSpecs.map((f) => f.tensor)]) })
        : undefined;
    const fwd = graph.clone();
    fwd.outputs = [{ name: outName, elemType: DataType.FLOAT }];
    fwd.valueInfo.delete(outName);
    fwd.prune();
    // the whole model, for evaluate (the clean output, Monte Carlo): made at its first use, for the
    // same reason as the flips' bottom engine (it holds every weight of the model once more)
    const forward = lazy(() => ModelSession.create(fwd.toBytes(), sessionOptions), weightBytes(fwd));
    const modes = new Set([bottom.mode, topB.mode, ...(topFlips ? [topFlips.mode] : [])]);
    return new Linearizer(model, sr.relu, sr.skip, input, output, {
      bottom,
      bottomFlipsEngine,
      topB,
      topFlips,
      forward,
      forwardBatched: { value: true },
      deferred: {
        modelWeights: weightBytes(fwd),
        bottomWeights: weightBytes(sr.bottom),
        flipOutputs: bottomFlips.reduce((a, f) => a + dimsOf(f.tensor).reduce((x, y) => x * y, 1), 0),
      },
      bottomFlips,
      topFlipSpecs,
      splitKinks: pieces.at,
      pieces,
      reluTerms: isPlainRelu(terms) ? undefined : terms,
      splitOp: splitNode.opType,
      diagnostics,
      inputSkips,
      innerSkips,
      mode: modes.size === 1 ? [...modes][0] : 'mixed',
      smoothOps: [...sr.bottom.nodes, ...sr.top.nodes].filter((nd) => isSmooth(nd.opType, nd.domain)).map((nd) => ({ node: nd.name, op: nd.opType })),
    });
  }

  /**
   * The real model's output g on `count` inputs ([count, n] float32), float64 [count, d]. Runs
   * in batches of at most EVALUATE_BATCH inputs: onnxruntime plans and allocates its buffers for
   * each new batch size, and one 1,000-input run of LeNet took 163 ms cold against 97 ms for the
   * same inputs in 64s (warm: 92 vs 87 ms), with far smaller intermediate tensors.
   */
  async evaluate(xs: Float32Array, count: number): Promise<Float64Array> {
    if (xs.length !== count * this.n) throw new NetmomentsError(`${xs.length} values for ${count} inputs of ${this.n} elements`);
    const out = new Float64Array(count * this.d);
    const run = async (start: number, m: number) => {
      const feed: HostTensor = { type: 'float32', data: xs.subarray(start * this.n, (start + m) * this.n), dims: [m, ...this.input.shape] };
      const r = await (await this.parts.forward.get()).run({ [this.input.name]: feed }, [this.output.name]);
      const t = r[this.output.name].data as Float32Array;
      if (t.length !== m * this.d)
        throw new NetmomentsError(`the model returned ${t.length} values for ${m} inputs, expected ${m * this.d}`, { file: this.model.file });
      for (let i = 0; i < m * this.d; i++) out[start * this.d + i] = t[i];
    };
    if (count > 1 && this.parts.forwardBatched.value) {
      try {
        for (let start = 0; start < count; start += EVALUATE_BATCH) await run(start, Math.min(EVALUATE_BATCH, count - start));
        return out;
      } catch {
        // a model that bakes batch 1 in somewhere the rewrite did not reach: one input at a time
        this.parts.forwardBatched.value = false;
      }
    }
    for (let i = 0; i < count; i++) await run(i, 1);
    return out;
  }

  /**
   * Linearize at `point` and project on the noise factor F (Sigma = F F^T; src/noise.ts
   * noiseFactor); `delta` is the offset mu - xb (omitted when zero).
   */
  async linearize(point: Float32Array, factor: NoiseFactor, delta?: Float64Array, options: LinearizeOptions = {}): Promise<PointLinearization> {
    const { n, p, d } = this;
    if (point.length !== n) throw new NetmomentsError(`the linearization point has ${point.length} elements, the model input has ${n}`);
    if (factor.n !== n) throw new Error(`linearize: a noise factor for ${factor.n} elements, the input has ${n}`);
    const r = factor.r;
    const withDelta = delta !== undefined && delta.some((v) => v !== 0);
    const noiseDirs = factorDirections(factor);
    const directions = withDelta ? withExtraDirection(noiseDirs, delta!) : noiseDirs;
    const kTotal = directions.count;

    // ---- bottom: A F, J_skip F, and the flip statistics of bottom layers
    const bottom = this.parts.bottom;
    const slotOf = (e: JacobianEngine, name: string) => {
      const s = e.outputs.find((o) => o.name === name);
      if (!s) throw new Error(`internal: engine has no output ${name}`);
      return s;
    };
    const base = await bottom.jvp(point, new Float64Array(0), 0);
    const zSlot = slotOf(bottom, this.split.input);
    const zb = base.outputValue.slice(zSlot.offset, zSlot.offset + zSlot.size);
    const gram = options.gram === true && (await this.gramPlanned(factor, options.gramMinBytes));
    const AF = new Float64Array(gram ? 0 : p * r);
    const Adelta = withDelta ? new Float64Array(p) : undefined;
    let S: Float64Array | undefined;
    const skipSlots = this.parts.innerSkips.map((s) => slotOf(bottom, s));
    const skipSize = skipSlots.reduce((a, s) => a + s.size, 0) + this.parts.inputSkips.length * n;
    // directions of the top's inputs [y (p), skip tensors in split order] with y' = 0, for D F
    const K = p + skipSize;
    const skipDirs = this.skip.length > 0 ? new Float64Array(kTotal * K) : undefined;
    const chunk = Math.max(1, Math.min(kTotal, Math.floor(CHUNK_BYTES / (4 * Math.max(bottom.outputSize, n)))));
    // the split op's slope at the point (ReLU: z > 0), for the top's flip statistics
    const pieces = this.parts.pieces;
    const mask = Float64Array.from(zb, (v, u) => pieces.slopes[pieceOf(v, pieces.at)][u]);
    const doneBottom = stage(`bottom Jacobian (p = ${p}, r = ${r}${gram ? ', Gram form' : ''})`);
    if (gram) {
      S = await this.gramByReverse(point, factor, withDelta ? delta! : undefined, Adelta, options);
      // A's kept rows (gemm: p x n float32, 2.3 GiB for VGG's fc7) are garbage now: collected before
      // the sessions made at their first use (flips, the whole model) allocate
      const keptRows = options.linalg && (options.gramStrategy ?? gramStrategy(p, n, options.linalg)) === 'gemm';
      collectGarbageAfter(keptRows ? p * n * 4 : 0);
    } else if (bottom.prefersReverse(kTotal) && (await bottom.reverseReady())) {
      await this.bottomByReverse(point, factor, withDelta ? delta! : undefined, directions, { AF, Adelta, skipDirs, K, zOffset: zSlot.offset, skipSlots });
    } else {
      await bottom.jvpBatches(point, directions, chunk, (k0, m, t, dirs) => {
        const tz = t[this.split.input];
        for (let k = 0; k < m; k++) {
          const kk = k0 + k;
          const zk = k * p;
          if (kk < r) for (let u = 0; u < p; u++) AF[u * r + kk] = tz[zk + u];
          else for (let u = 0; u < p; u++) Adelta![u] = tz[zk + u];
          if (!skipDirs) continue;
          const td = skipDirs.subarray(kk * K, (kk + 1) * K);
          let off = p;
          for (const s of this.skip) {
            if (this.parts.inputSkips.includes(s)) {
              td.set(dirs.subarray(k * n, (k + 1) * n), off);
              off += n;
            } else {
              const sl = skipSlots[this.parts.innerSkips.indexOf(s)];
              td.set(t[s].subarray(k * sl.size, (k + 1) * sl.size), off);
              off += sl.size;
            }
          }
        }
      });
    }

    doneBottom();
    // ---- top: B (identity on y), D F (y' = 0, skips), and flips of top layers
    const doneTop = stage(`top Jacobian B (${d} x ${p})`);
    const topPoint: Record<string, Float64Array | Float32Array> = { [this.split.output]: Float64Array.from(zb, (v, u) => applyPieces(pieces, u, v)) };
    for (const s of this.skip) {
      if (this.parts.inputSkips.includes(s)) topPoint[s] = point;
      else {
        const sl = skipSlots[this.parts.innerSkips.indexOf(s)];
        topPoint[s] = base.outputValue.slice(sl.offset, sl.offset + sl.size);
      }
    }
    const topB = this.parts.topB;
    // with skip paths and B built in reverse mode, the same d reverse passes give the skip columns
    // too: D F = J_skip (d x (K - p)) times the skip part of the top-input directions
    const topRows = skipDirs !== undefined && kTotal > 0 && topB.prefersReverse(p) && (await topB.reverseReady());
    const bRes = await topB.jacobian(topPoint, { columns: topRows ? undefined : Int32Array.from({ length: p }, (_, i) => i) });
    const cols = bRes.cols;
    const B = cols === p ? bRes.J : new Float64Array(d * p); // d x p
    if (cols !== p) for (let i = 0; i < d; i++) B.set(bRes.J.subarray(i * cols, i * cols + p), i * p);
    const gb = bRes.outputValue.slice(0, d);
    let DF: Float64Array | undefined;
    let Ddelta: Float64Array | undefined;
    if (skipDirs && kTotal > 0 && topRows) {
      DF = new Float64Array(d * r);
      if (withDelta) Ddelta = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        const row = bRes.J.subarray(i * cols, (i + 1) * cols);
        for (let k = 0; k < kTotal; k++) {
          const dir = skipDirs.subarray(k * K, (k + 1) * K);
          let acc = 0;
          for (let j = p; j < K; j++) acc += row[j] * dir[j];
          if (k < r) DF[i * r + k] = acc;
          else Ddelta![i] = acc;
        }
      }
    } else if (skipDirs && kTotal > 0) {
      const t = (await topB.jvp(topPoint, skipDirs, kTotal)).tangents;
      DF = new Float64Array(d * r);
      for (let k = 0; k < r; k++) for (let i = 0; i < d; i++) DF[i * r + k] = t[k * d + i];
      if (withDelta) Ddelta = t.slice(r * d, r * d + d);
    }
    doneTop();
    const doneFlips = stage(`expected state changes (diagnostics ${this.parts.diagnostics})`);
    const { bottomStats, topStats } = await this.flipStatistics(point, topPoint, factor, n, delta && withDelta ? delta : undefined, mask, skipSize);

    // the split ReLU itself: P(sign flips) of each unit from its exact marginal
    const splitFlips: LayerFlips = (() => {
      let e = 0;
      doneFlips();
      for (let u = 0; u < p; u++) {
        let v = 0;
        if (S) v = S[u * p + u];
        else for (let k = 0; k < r; k++) v += AF[u * r + k] ** 2;
        const m = zb[u] + (Adelta ? Adelta[u] : 0);
        e += pieceChangeProbability(m, zb[u], Math.sqrt(v), this.parts.splitKinks);
      }
      return { node: this.split.node, op: this.parts.splitOp, units: p, expectedFlips: e, isSplit: true };
    })();
    const sketch = r > flipSketch(this.parts.diagnostics) ? { sketch: flipSketch(this.parts.diagnostics) } : {};
    const flips = [...bottomStats.map((st) => ({ ...finish(st), ...sketch })), splitFlips, ...topStats.map((st) => ({ ...finish(st), ...sketch }))];
    const terms = this.parts.reluTerms;
    if (!terms) return { point, zb, gb, A: AF, Adelta, B, D: DF, Ddelta, r, flips, ...(S ? { S } : {}) };
    // LeakyRelu, PRelu, Clip: the same surrogate with ReLU units (pieces.ts)
    const relu = expandToRelu({ A: AF, B, zb, Adelta }, terms, r, d);
    return { point, zb: relu.zb, gb, A: relu.A, Adelta: relu.Adelta, B: relu.B, D: DF, Ddelta, r, flips };
  }

  /**
   * Memory of the sessions made at their first use, after the bottom Jacobian (the flips' bottom
   * engine and the whole model; the split's measured memory does not hold them): each session
   * SESSION_BYTES_PER_WEIGHT times its weights, the flips' runs (their chunk of directions through
   * the bottom, as flipStatistics sizes it, and their tangents), and the serialized model while a
   * session is made (the larger one's weights).
   */
  deferredSessionsBytes(): number {
    const { modelWeights, bottomWeights, flipOutputs } = this.parts.deferred;
    let bytes = SESSION_BYTES_PER_WEIGHT * modelWeights;
    let transient = modelWeights;
    if (this.parts.bottomFlipsEngine) {
      const bottom = this.parts.bottom;
      const outputs = bottom.outputSize + flipOutputs;
      const chunk = Math.max(1, Math.min(FLIP_DIRECTIONS + 1, Math.floor(CHUNK_BYTES / (4 * Math.max(outputs, this.n)))));
      bytes += SESSION_BYTES_PER_WEIGHT * bottomWeights + chunk * (bottom.directionBytes + 4 * outputs);
      transient = Math.max(transient, bottomWeights);
    }
    return bytes + transient;
  }

  /**
   * Whether linearize(..., { gram: true }) forms the Gram form S = (A F)(A F)^T (p x p) instead of
   * A F (p x r): for isotropic and diagonal noise (F's columns are scaled axes), a plain Relu split
   * with no tensor skipping the cut, a bottom built in reverse mode (its p rows fewer than the r
   * noise directions and every op with an adjoint rule; asking builds the adjoint session), and A F
   * of at least GRAM_MIN_BYTES.
   */
  async gramPlanned(factor: NoiseFactor, minBytes = GRAM_MIN_BYTES): Promise<boolean> {
    if (factor.kind !== 'axes' || this.skip.length > 0 || this.parts.reluTerms) return false;
    if (this.p * factor.r * 8 < minBytes) return false;
    const bottom = this.parts.bottom;
    return bottom.outputSize === this.p && bottom.prefersReverse(factor.r + 1) && (await bottom.reverseReady());
  }

  /**
   * Tangent passes a linearization on r noise directions takes, by the direction each part would
   * use (the engines' preference by cost; a part without adjoint rules runs forward instead), in
   * words for a refusal: the bottom's r directions, or its p rows (twice with the Gram form), and
   * B's p columns or d rows.
   */
  jacobianPasses(r: number, gram: boolean): { passes: number; text: string } {
    const { p, d } = this;
    const units = this.units;
    const bottomRev = this.parts.bottom.prefersReverse(r + 1);
    const bottom = gram ? 2 * p : bottomRev ? this.parts.bottom.outputSize : r;
    const bottomText = gram
      ? `${p} reverse and ${p} forward passes for A Sigma A^T`
      : bottomRev
        ? `${this.parts.bottom.outputSize} reverse passes for A`
        : `${r} noise directions for A`;
    const topRev = this.parts.topB.prefersReverse(units, d);
    const top = topRev ? d : units;
    return { passes: bottom + top, text: `${bottomText}, ${top} ${topRev ? 'reverse passes' : 'columns'} for B` };
  }

  /** Rows per block of the Gram form under `strategy` (gramChunk with this bottom's per-row bytes); after gramPlanned. */
  async gramRows(strategy: GramStrategy): Promise<number> {
    const bottom = this.parts.bottom;
    const rowBytes = (await bottom.reverseRowBytes()) ?? bottom.directionBytes;
    return gramChunk(this.n, this.p, rowBytes, strategy === 'forward' ? bottom.directionBytes : undefined);
  }

  /**
   * What one block of the Gram form holds in onnxruntime under `strategy`: its rows times the
   * adjoint's bytes per row (each session's arena keeps its largest run), and for 'forward' the
   * same rows through the tangent model too.
   */
  async gramBlockBytes(strategy: GramStrategy): Promise<number> {
    const bottom = this.parts.bottom;
    const m = await this.gramRows(strategy);
    const rowBytes = (await bottom.reverseRowBytes()) ?? bottom.directionBytes;
    return m * (rowBytes + (strategy === 'forward' ? bottom.directionBytes : 0));
  }

  /**
   * What each of the Gram form's worker threads holds (gramWorkers): a session of the bottom's
   * adjoint model (WORKER_SESSION_BYTES_PER_BYTE of its serialized size: measured 0.60 GiB for
   * VGG-11's 515 MB, no pre-packed weights), its arena for one block, the block's cotangent rows
   * twice (in the worker and copied out) and the thread's own heap.
   */
  async gramWorkerBytes(strategy: GramStrategy): Promise<number> {
    const bottom = this.parts.bottom;
    const m = await this.gramRows(strategy);
    const rowBytes = (await bottom.reverseRowBytes()) ?? bottom.directionBytes;
    const modelBytes = (await bottom.reverseModelBytes()) ?? 0;
    return WORKER_SESSION_BYTES_PER_BYTE * modelBytes + m * rowBytes + 2 * m * this.n * 4 + WORKER_THREAD_BYTES;
  }

  /**
   * S = A Sigma A^T (p x p) for noise on scaled axes (Sigma = F F^T = diag(sd_k^2) on the support,
   * 0 elsewhere), A = d bottom/dx at the point, without forming A F in float64: reverse mode gives
   * the rows a_u = A^T e_u in blocks of m (float32, as every tangent run is), then (gramStrategy)
   *   gemm     the rows scaled by the sds, a~_u = F^T a_u (float32, p x n), kept whole; S = A~ A~^T by
   *            float64 GEMM (`linalg`, the float32 operands widened exactly) over tiles of rows, the
   *            lower triangle of tiles mirrored: 2 p^2 n flops, p x n x 4 bytes;
   *   forward  each block, multiplied by Sigma's diagonal, pushed forward through the same bottom
   *            (JVP): A (Sigma a_u) = S e_u, a column of S; p more tangent passes and never more
   *            than one [m, n] block; the two passes round differently, so S is symmetrized.
   * For isotropic noise S = sigma^2 A A^T. A delta (the offset's image) comes from the same rows:
   * a_u . delta.
   */
  private async gramByReverse(
    point: Float32Array,
    factor: NoiseFactor,
    delta: Float64Array | undefined,
    Adelta: Float64Array | undefined,
    options: Pick<LinearizeOptions, 'linalg' | 'gramStrategy' | 'gramTileRows' | 'gramWorkers'>,
  ): Promise<Float64Array> {
    const linalg = options.linalg;
    const { n, p } = this;
    if (factor.kind !== 'axes') throw new Error('internal: the Gram form needs noise on scaled axes');
    const bottom = this.parts.bottom;
    const strategy = linalg ? (options.gramStrategy ?? gramStrategy(p, n, linalg)) : 'forward';
    const scale = new Float32Array(n); // sd (gemm) or sd^2 (forward) on the support, 0 elsewhere
    for (let k = 0; k < factor.r; k++) scale[factor.support[k]] = strategy === 'gemm' ? factor.sd[k] : factor.sd[k] * factor.sd[k];
    const S = new Float64Array(p * p);
    const chunk = await this.gramRows(strategy);
    const rows = Int32Array.from({ length: p }, (_, i) => i);
    const kept = strategy === 'gemm' ? new Float32Array(p * n) : undefined;
    let logged = 0;
    const workers = options.gramWorkers ?? 0;
    const progress = stage(
      `Gram form rows (${strategy}, blocks of ${chunk}${workers > 0 ? `, ${workers} worker thread${workers > 1 ? 's' : ''} beside the main thread` : ''})`,
    );
    await bottom.reverseRows(
      point,
      rows,
      chunk,
      async (r0, m, block) => {
        if (r0 + m >= logged + p / 8 || r0 + m === p) {
          logged = r0 + m;
          progress(`${logged} of ${p} rows`);
        }
        for (let i = 0; i < m; i++) {
          const o = i * n;
          if (Adelta && delta) {
            let dot = 0;
            for (let j = 0; j < n; j++) dot += block[o + j] * delta[j];
            Adelta[r0 + i] = dot;
          }
          if (kept) {
            const dst = (r0 + i) * n;
            for (let j = 0; j < n; j++) kept[dst + j] = block[o + j] * scale[j];
          } else for (let j = 0; j < n; j++) block[o + j] *= scale[j];
        }
        if (kept) return;
        const t = (await bottom.jvpByOutput(point, block.length === m * n ? block : block.subarray(0, m * n), m))[this.split.input];
        for (let i = 0; i < m; i++) for (let v = 0; v < p; v++) S[(r0 + i) * p + v] = t[i * p + v];
      },
      { workers },
    );
    if (kept) {
      const done = stage(`Gram form: S by float64 GEMM of the kept rows (${p} x ${n})`);
      const tile = options.gramTileRows ?? gramTile(n, p);
      for (let i0 = 0; i0 < p; i0 += tile) {
        const ti = Math.min(tile, p - i0);
        for (let j0 = 0; j0 <= i0; j0 += tile) {
          const tj = Math.min(tile, p - j0);
          const P = await linalg!.gemm(kept.subarray(i0 * n, (i0 + ti) * n), ti, n, kept.subarray(j0 * n, (j0 + tj) * n), tj, n, { transB: true });
          for (let i = 0; i < ti; i++) {
            for (let j = 0; j < tj; j++) {
              S[(i0 + i) * p + j0 + j] = P[i * tj + j];
              S[(j0 + j) * p + i0 + i] = P[i * tj + j];
            }
          }
        }
      }
      done();
      return S;
    }
    for (let u = 0; u < p; u++) {
      for (let v = u + 1; v < p; v++) {
        const x = 0.5 * (S[u * p + v] + S[v * p + u]);
        S[u * p + v] = x;
        S[v * p + u] = x;
      }
    }
    return S;
  }

  /**
   * The bottom's projections by reverse mode (cheaper when its output width, the split width p plus
   * the inner skip tensors, is below the noise rank r): the rows of J_bottom come from batches of
   * identity cotangents, [m, n] at a time within the linearizer's chunk of 96 MiB, and each row j is
   * projected on the directions at once: (J F)_jk = J_j . F_k (for isotropic and diagonal noise
   * J_j[support_k] sd_k), J_j . delta for the offset. Fills the same A F, A delta and top-input
   * directions (rows p.. of the skip tensors; the input skips are the directions themselves) as
   * the forward pass.
   */
  private async bottomByReverse(
    point: Float32Array,
    factor: NoiseFactor,
    delta: Float64Array | undefined,
    directions: DirectionBatches,
    out: {
      AF: Float64Array;
      Adelta?: Float64Array;
      skipDirs?: Float64Array;
      K: number;
      zOffset: number;
      skipSlots: { name: string; offset: number; size: number }[];
    },
  ): Promise<void> {
    const { n, p } = this;
    const r = factor.r;
    const kTotal = directions.count;
    const bottom = this.parts.bottom;
    const rows = bottom.outputSize;
    // where each skip tensor's directions start within a top-input direction [y (p), skips in split order]
    const skipStart = new Map<string, number>();
    let off = p;
    for (const s of this.skip) {
      skipStart.set(s, off);
      off += this.parts.inputSkips.includes(s) ? n : out.skipSlots[this.parts.innerSkips.indexOf(s)].size;
    }
    const proj = new Float64Array(kTotal);
    // rows per block as the estimate's bottom step has them (src/resources.ts: 96 MiB over 8 bytes per element)
    const chunk = Math.max(1, Math.min(rows, Math.floor(CHUNK_BYTES / (8 * Math.max(rows, n))), await bottom.reverseChunk()));
    await bottom.reverseRows(
      point,
      Int32Array.from({ length: rows }, (_, i) => i),
      chunk,
      (r0, m, block) => {
        for (let i = 0; i < m; i++) {
          const row = block.subarray(i * n, (i + 1) * n);
          if (factor.kind === 'axes') {
            for (let k = 0; k < r; k++) proj[k] = row[factor.support[k]] * factor.sd[k];
          } else {
            proj.fill(0, 0, r);
            for (let j = 0; j < factor.support.length; j++) {
              const v = row[factor.support[j]];
              if (v === 0) continue;
              for (let k = 0; k < r; k++) proj[k] += v * factor.factor[j * r + k];
            }
          }
          if (delta) {
            let dot = 0;
            for (let j = 0; j < n; j++) dot += row[j] * delta[j];
            proj[r] = dot;
          }
          const jRow = r0 + i;
          if (jRow >= out.zOffset && jRow < out.zOffset + p) {
            const u = jRow - out.zOffset;
            for (let k = 0; k < r; k++) out.AF[u * r + k] = proj[k];
            if (out.Adelta) out.Adelta[u] = proj[r];
            continue;
          }
          if (!out.skipDirs) continue;
          const sl = out.skipSlots.find((x) => jRow >= x.offset && jRow < x.offset + x.size);
          if (!sl) continue;
          const at = skipStart.get(sl.name)! + (jRow - sl.offset);
          for (let k = 0; k < kTotal; k++) out.skipDirs[k * out.K + at] = proj[k];
        }
      },
    );
    // skips of the model input itself: their directions are the noise directions
    if (out.skipDirs && this.parts.inputSkips.length > 0) {
      const step = Math.max(1, Math.min(kTotal, Math.floor(CHUNK_BYTES / (4 * n))));
      const buf = new Float32Array(step * n);
      for (let k0 = 0; k0 < kTotal; k0 += step) {
        const m = Math.min(step, kTotal - k0);
        directions.fill(buf, k0, m);
        for (let k = 0; k < m; k++) {
          for (const s of this.parts.inputSkips) out.skipDirs.set(buf.subarray(k * n, (k + 1) * n), (k0 + k) * out.K + skipStart.get(s)!);
        }
      }
    }
  }

  /**
   * Per-unit statistics of the other ReLU and max-pool layers under the linearized noise. With at
   * most FLIP_DIRECTIONS noise directions they are exact sums over the directions; with more, they
   * are estimated from FLIP_DIRECTIONS fixed random combinations w_j = F g_j / sqrt(s), g_j ~ N(0, I)
   * (E[(J w_j)^2] summed over j equals sum_k (J F_k)^2; relative error of a variance about
   * sqrt(2/s) = 12.5%), which keeps the large layer tensors off the main JVP pass.
   */
  private async flipStatistics(
    point: Float32Array,
    topPoint: Record<string, Float64Array | Float32Array>,
    factor: NoiseFactor,
    n: number,
    delta: Float64Array | undefined,
    mask: Float64Array,
    skipSize: number,
  ): Promise<{ bottomStats: Stats[]; topStats: Stats[] }> {
    if (!this.parts.bottomFlipsEngine) return { bottomStats: [], topStats: [] };
    const engine = await this.parts.bottomFlipsEngine.get();
    const p = this.p;
    const r = factor.r;
    let s = r;
    let dirs: DirectionBatches = factorDirections(factor);
    const most = flipSketch(this.parts.diagnostics);
    if (r > most) {
      s = most;
      const sketch = new Float64Array(s * n);
      const rng = new Rng(FLIP_SEED);
      const scale = 1 / Math.sqrt(s);
      // F's columns are sparse for isotropic, diagonal and window noise (one element each)
      for (let j = 0; j < s; j++) {
        const row = sketch.subarray(j * n, (j + 1) * n);
        for (let k = 0; k < r; k++) addFactorColumn(factor, k, row, rng.normal() * scale);
      }
      dirs = denseRows(sketch, s, n);
    }
    const kTotal = s + (delta ? 1 : 0);
    const flat = new Float32Array(kTotal * n);
    dirs.fill(flat, 0, s);
    if (delta) for (let i = 0; i < n; i++) flat[s * n + i] = delta[i];
    const base = await engine.jvp(point, new Float64Array(0), 0);
    const slot = (name: string) => engine.outputs.find((o) => o.name === name)!;
    const bottomStats = this.parts.bottomFlips.map((f) => newStats(f, base.outputValue, slot(f.tensor)));
    const K = p + skipSize;
    const topDirs = new Float32Array(kTotal * K);
    const chunk = Math.max(1, Math.min(kTotal, Math.floor(CHUNK_BYTES / (4 * Math.max(engine.outputSize, n)))));
    for (let k0 = 0; k0 < kTotal; k0 += chunk) {
      const m = Math.min(chunk, kTotal - k0);
      const t = await engine.jvpByOutput(point, flat.subarray(k0 * n, (k0 + m) * n), m);
      for (const st of bottomStats) accumulateChunk(st, t[st.spec.tensor], m, k0, s);
      const tz = t[this.split.input];
      for (let k = 0; k < m; k++) {
        const td = topDirs.subarray((k0 + k) * K, (k0 + k + 1) * K);
        for (let u = 0; u < p; u++) td[u] = mask[u] * tz[k * p + u];
        let off = p;
        for (const name of this.skip) {
          if (this.parts.inputSkips.includes(name)) {
            td.set(flat.subarray((k0 + k) * n, (k0 + k + 1) * n), off);
            off += n;
          } else {
            const size = slot(name).size;
            td.set(t[name].subarray(k * size, (k + 1) * size), off);
            off += size;
          }
        }
      }
    }
    let topStats: Stats[] = [];
    const tf = this.parts.topFlips;
    if (tf) {
      const baseTop = await tf.jvp(topPoint, new Float64Array(0), 0);
      topStats = this.parts.topFlipSpecs.map((f) =>
        newStats(
          f,
          baseTop.outputValue,
          tf.outputs.find((o) => o.name === f.tensor)!,
        ),
      );
      const ch = Math.max(1, Math.min(kTotal, Math.floor(CHUNK_BYTES / (4 * Math.max(tf.outputSize, K)))));
      for (let k0 = 0; k0 < kTotal; k0 += ch) {
        const m = Math.min(ch, kTotal - k0);
        const t = await tf.jvpByOutput(topPoint, topDirs.subarray(k0 * K, (k0 + m) * K), m);
        for (const st of topStats) accumulateChunk(st, t[st.spec.tensor], m, k0, s);
      }
    }
    return { bottomStats, topStats };
  }

  /** The plain surrogate matrices A, c1, B, c2 (and D) at `point`: n identity directions. */
  async surrogate(point: Float32Array): Promise<AffineSurrogate> {
    const lin = await this.linearize(point, identityFactor(this.n));
    // with F = I: A F = A (p x n), D F = D (d x n)
    const s: Surrogate = { A: lin.A, B: lin.B, D: lin.D, zb: lin.zb, gb: lin.gb };
    return { ...s, ...surrogateOffsets(s, point) };
  }

  async release(): Promise<void> {
    await this.parts.bottom.release();
    await (await this.parts.bottomFlipsEngine?.made())?.release();
    await this.parts.topB.release();
    await this.parts.topFlips?.release();
    await (await this.parts.forward.made())?.release();
  }
}

/**
 * Rows per block of the Gram form (gramByReverse) where memory allows. Each block re-runs the
 * bottom's primal part once (the adjoint model takes the point, not its activations), so one or two
 * rows a block waste much of a run; large blocks fall out of the caches. Measured on this project's
 * 2-core machine, CPU s per reverse row of the fc7 bottom (docs/BENCHMARKS.md): VGG-11 0.28 (1 row a
 * block), 0.20 (2), 0.16 (4), 0.17 (8), 0.24 (16); AlexNet 0.021 (4), 0.019 (8), 0.020 (16), 0.028
 * (32), 0.035 (64).
 */
export const GRAM_BLOCK_ROWS = 8;

/** Most bytes one Gram block may hold in each onnxruntime session (rows times the engine's bytes per row). */
export const GRAM_BLOCK_BYTES = 512 * 1024 * 1024;

/**
 * Rows per block of the Gram form: GRAM_BLOCK_ROWS, within GRAM_BLOCK_BYTES of the adjoint's working
 * set (rowBytes a row) and, for the 'forward' strategy, of the tangent model's (forwardBytes a
 * direction), and [m, n] float32 within the linearizer's chunk of CHUNK_BYTES (src/resources.ts
 * counts the same block). VGG-11's fc7: 4 rows (133 MB a row); AlexNet's: 8.
 */
export function gramChunk(n: number, p: number, rowBytes: number, forwardBytes?: number): number {
  const within = (bytes: number | undefined) => (bytes && bytes > 0 ? Math.floor(GRAM_BLOCK_BYTES / bytes) : GRAM_BLOCK_ROWS);
  return Math.max(1, Math.min(p, GRAM_BLOCK_ROWS, within(rowBytes), within(forwardBytes), Math.floor(CHUNK_BYTES / (4 * n))));
}

/** Most noise directions the flip statistics sum over exactly; more are sketched with this many. */
function flipSketch(diagnostics: Diagnostics): number {
  return diagnostics === 'fast' ? FAST_FLIP_DIRECTIONS : FLIP_DIRECTIONS;
}

/** Ops of quantized models (their derivative is zero almost everywhere; no Jacobian means anything). */
const QUANTIZATION_OPS = new Set([
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'QLinearConv',
  'QLinearMatMul',
  'MatMulInteger',
  'ConvInteger',
  'QLinearAdd',
  'QLinearMul',
  'QLinearAveragePool',
  'QLinearGlobalAveragePool',
  'QLinearLeakyRelu',
  'QLinearSigmoid',
  'QLinearConcat',
  'DynamicQuantizeMatMul',
  'MatMulIntegerToFloat',
  'QGemm',
]);

/** The first quantization node and the integer type it works in (from its zero point; ONNX's default is uint8). */
function quantization(graph: Graph): { op: string; node: string; type: string } | undefined {
  const node = graph.nodes.find((n) => QUANTIZATION_OPS.has(n.opType));
  if (!node) return undefined;
  let type = 'uint8';
  for (const name of node.inputs) {
    const t = name ? graph.initializers.get(name) : undefined;
    if (t && (t.dataType === DataType.INT8 || t.dataType === DataType.UINT8)) {
      type = dataTypeName(t.dataType);
      break;
    }
  }
  return { op: node.opType, node: node.name, type };
}

// ---------------------------------------------------------------------------------------------
// Expected flips of a nonlinear layer under the linearized noise.

/**
 * P(a unit leaves the linear piece it is on at the point) when its linearized value is Gaussian
 * with mean m and sd s, for a unit-wise piecewise-linear op with slope changes at the sorted
 * `kinks` (ReLU: [0]; Clip: [min, max]). The piece of a value v is the number of kinks below it
 * (a value on a kink belongs to the piece below, as ReLU's v > 0 test has it); for the piece
 * [lo, hi] of the point's value the probability is Phi((lo - m) / s) + Phi((m - hi) / s), the two
 * tails, without the cancellation of 1 - (Phi(hi') - Phi(lo')). With s = 0 it is 0 or 1.
 */
export function pieceChangeProbability(m: number, atPoint: number, s: number, kinks: readonly number[]): number {
  let piece = 0;
  while (piece < kinks.length && atPoint > kinks[piece]) piece++;
  const lo = piece > 0 ? kinks[piece - 1] : -Infinity;
  const hi = piece < kinks.length ? kinks[piece] : Infinity;
  if (!(s > 0)) return m > lo && m <= hi ? 0 : 1;
  return (lo === -Infinity ? 0 : Phi((lo - m) / s)) + (hi === Infinity ? 0 : Phi((m - hi) / s));
}

interface Stats {
  spec: FlipLayerSpec;
  /** values of the layer's input tensor at the point */
  value: Float64Array;
  /** Relu: per-unit sum of squares and offset shift; MaxPool: per (window, member) pair. */
  sumsq: Float64Array;
  shift: Float64Array;
  winners?: Int32Array;
}

function newStats(spec: FlipLayerSpec, values: Float64Array, slot: { offset: number; size: number }): Stats {
  const value = values.slice(slot.offset, slot.offset + slot.size);
  if (spec.kinks.kind === 'unit') return { spec, value, sumsq: new Float64Array(slot.size), shift: new Float64Array(slot.size) };
  const w = spec.kinks.windows;
  const winners = new Int32Array(w.windows);
  for (let i = 0; i < w.windows; i++) {
    let best = -1;
    for (let j = 0; j < w.kernel; j++) {
      const idx = w.members[i * w.kernel + j];
      if (idx < 0) continue;
      if (best < 0 || value[idx] > value[best]) best = idx; // strict: first maximal element wins ties
    }
    winners[i] = best;
  }
  return { spec, value, sumsq: new Float64Array(w.windows * w.kernel), shift: new Float64Array(w.windows * w.kernel), winners };
}

/**
 * Add a chunk of m directions' tangents of the layer's input tensor ([m, size], directions k0..k0+m-1):
 * noise directions (index < r) to the variances, the offset direction to the mean shift.
 */
function accumulateChunk(st: Stats, t: Float32Array, m: number, k0: number, r: number): void {
  const size = st.value.length;
  const kinks = st.spec.kinks;
  if (kinks.kind === 'unit') {
    for (let k = 0; k < m; k++) {
      const base = k * size;
      if (k0 + k < r) for (let u = 0; u < size; u++) st.sumsq[u] += t[base + u] * t[base + u];
      else for (let u = 0; u < size; u++) st.shift[u] += t[base + u];
    }
    return;
  }
  const w = kinks.windows;
  for (let k = 0; k < m; k++) {
    const base = k * size;
    const isNoise = k0 + k < r;
    for (let i = 0; i < w.windows; i++) {
      const win = st.winners![i];
      if (win < 0) continue;
      const tw = t[base + win];
      for (let j = 0; j < w.kernel; j++) {
        const idx = w.members[i * w.kernel + j];
        if (idx < 0 || idx === win) continue;
        const diff = tw - t[base + idx];
        if (isNoise) st.sumsq[i * w.kernel + j] += diff * diff;
        else st.shift[i * w.kernel + j] += diff;
      }
    }
  }
}

function finish(st: Stats): LayerFlips {
  const { name, opType: op } = st.spec.node;
  const kinks = st.spec.kinks;
  if (kinks.kind === 'unit') {
    let e = 0;
    for (let u = 0; u < st.value.length; u++) e += pieceChangeProbability(st.value[u] + st.shift[u], st.value[u], Math.sqrt(st.sumsq[u]), kinks.at);
    return { node: name, op, units: st.value.length, expectedFlips: e, isSplit: false };
  }
  const w = kinks.windows;
  let e = 0;
  for (let i = 0; i < w.windows; i++) {
    const win = st.winners![i];
    if (win < 0) continue;
    let pw = 0;
    for (let j = 0; j < w.kernel; j++) {
      const idx = w.members[i * w.kernel + j];
      if (idx < 0 || idx === win) continue;
      // margin winner - other: mean (value gap + shift), sd sqrt(sumsq); P(margin < 0), ties that stay tied do not count
      const gap = st.value[win] - st.value[idx] + st.shift[i * w.kernel + j];
      const s = Math.sqrt(st.sumsq[i * w.kernel + j]);
      pw += s > 0 ? Phi(-gap / s) : gap < 0 ? 1 : 0;
    }
    e += Math.min(1, pw);
  }
  return { node: name, op, units: w.windows, expectedFlips: e, isSplit: false };
}

/** Why a model with several data inputs is refused, and what would make it work (one line). */
function manyInputs(inputs: readonly { name: string }[]): string {
  const [first, ...rest] = inputs.map((i) => i.name);
  return (
    `the model has ${inputs.length} data inputs (${inputs.map((i) => `'${i.name}'`).join(', ')}); the noise goes on one of them: ` +
    `name it and fix the others, e.g. --noise-input ${first} ${rest.map((n) => `--feed ${n}=FILE.npy`).join(' ')}`
  );
}
