/**
 * Jacobians of one model part (the bottom or the top of a split) at a linearization point.
 *
 * A JacobianEngine is created once per part and owns ONE onnxruntime session (onnxruntime-node
 * leaks memory when sessions are created and released in a loop): in 'jvp' mode the session of the
 * tangent model (src/onnx/tangent/build.ts), which takes the point as an input, so that one session
 * serves every point and every batch of directions; in 'fd' mode the session of the plain forward
 * model, run on batches of perturbed points (central differences). `auto` uses JVP and falls back
 * to finite differences, with a warning naming the op, when an op has no tangent rule.
 *
 * Direction by cost (issue 15): a Jacobian with fewer rows than the columns (or noise directions)
 * asked for is built in reverse mode, from the adjoint model (src/onnx/tangent/reverse.ts), one
 * batch of identity cotangent rows at a time (J^T U), when every op of the part has an adjoint
 * rule; otherwise, and when the columns are fewer, in forward mode. `forward` (alias `jvp`) never
 * uses reverse mode, `reverse` always does where it can. The adjoint session is created on first
 * use. `description` says which was used and, when reverse mode is unavailable, the op that lacks
 * an adjoint rule.
 *
 * Tangent runs are float32 (onnxruntime's CPU Conv has no float64 kernel); the results are stored
 * as float64. The full Jacobian J (rows = output elements, flattened in C order without the batch
 * axis, concatenated over the requested outputs; cols = input elements, concatenated over the
 * varying inputs) is J * I computed in chunks of identity columns sized from a memory budget.
 */
import { NetmomentsError } from '../errors.js';
import type { Graph, ValueInfo } from '../onnx/graph.js';
import { makeBatchDynamic } from '../onnx/batch.js';
import { DataType } from '../onnx/proto.js';
import { buildTangentModel, inputDims, type TangentModel } from '../onnx/tangent/build.js';
import { MissingAdjointRuleError, MissingTangentRuleError } from '../onnx/tangent/types.js';
import { buildAdjointModel, type AdjointModel } from '../onnx/tangent/reverse.js';
import { SessionWorkers } from '../runtime/workers.js';
import { ModelSession, type HostTensor, type Provider } from '../runtime/session.js';
import {
  defaultStep,
  finiteDifferenceJacobian,
  finiteDifferenceJvp,
  resolveColumns,
  type BatchFunction,
  type ColumnOptions,
  type JacobianResult,
} from './finiteDifference.js';
import { probeShapes } from './shapes.js';

export { finiteDifferenceJacobian, finiteDifferenceJvp, type BatchFunction, type JacobianResult, type ColumnOptions } from './finiteDifference.js';

/**
 * auto: forward or reverse by cost, finite differences when an op has no tangent rule; forward (or
 * its older name jvp): forward-mode JVPs only; reverse: reverse mode wherever the part has adjoint
 * rules (forward elsewhere); fd: central finite differences.
 */
export type JacobianMode = 'auto' | 'forward' | 'reverse' | 'jvp' | 'fd';

/** Which way a Jacobian is built: 'auto' picks by cost, per call. */
export type JacobianDirection = 'auto' | 'forward' | 'reverse';

export interface JacobianEngineOptions {
  /** Graph inputs to differentiate by (default: every data input). */
  varying?: string[];
  /** Tensors to differentiate (default: the graph outputs). */
  outputs?: string[];
  /** Default 'auto'. */
  mode?: JacobianMode;
  threads?: number;
  provider?: Provider;
  /** Called with a one-line message when auto mode falls back to finite differences. */
  onWarning?: (message: string) => void;
  /** Memory for one batch of tangent directions (default 256 MiB). */
  memoryBudgetBytes?: number;
  /** Finite-difference step (default: 1e-3 of the point's largest magnitude, at least 1e-3). */
  fdStep?: number;
  /**
   * Probe the part's static shapes once (one extra session, released at once) so that the tangent
   * rules can check axes and skip needless broadcasts (default true). Without them the rules use
   * run-time shapes only.
   */
  staticShapes?: boolean;
}

/** One tensor's place in a flattened vector (the point, the Jacobian's rows or columns). */
export interface TensorSlot {
  name: string;
  /** Per-sample dims (without the batch axis), or the full dims of an input that has no batch axis. */
  dims: number[];
  size: number;
  offset: number;
  /** Whether the tensor has a leading batch axis (fed as [1, ...dims]). */
  batched: boolean;
}

/** A linearization point: the concatenation of the primal inputs (in `primalInputs` order) or one array per input. */
export type Point = ArrayLike<number> | Record<string, ArrayLike<number>>;

export interface JvpResult {
  /** [k, rows]: J d_i for each direction. */
  tangents: Float64Array;
  outputValue: Float64Array;
}

const DEFAULT_BUDGET = 256 * 1024 * 1024;

/**
 * Tangent directions made batch by batch, never held whole: `fill(out, k0, m)` writes directions
 * k0..k0+m-1 as the rows of `out` ([m, size]; every entry is written). Noise directions are the
 * columns of a factor F of Sigma = F F^T (src/noise.ts NoiseFactor): for isotropic and diagonal
 * noise the scaled coordinate axes sd_k e_{support_k}, so a batch costs [m, size] and nothing else.
 */
export interface DirectionBatches {
  readonly count: number;
  readonly size: number;
  fill(out: Float32Array | Float64Array, k0: number, m: number): void;
}

/** Directions sd_k e_{support_k}, k < support.length: the support's coordinate axes, scaled. */
export function scaledAxes(size: number, support: Int32Array, sd: Float64Array): DirectionBatches {
  if (sd.length !== support.length) throw new Error(`scaledAxes: ${sd.length} scales for ${support.length} axes`);
  return {
    count: support.length,
    size,
    fill(out, k0, m) {
      out.fill(0, 0, m * size);
      for (let k = 0; k < m; k++) out[k * size + support[k0 + k]] = sd[k0 + k];
    },
  };
}

/** The r columns of a factor held on its nonzero rows `support` (support.length x r, row-major). */
export function factorColumns(size: number, support: Int32Array, factor: Float64Array, r: number): DirectionBatches {
  if (factor.length !== support.length * r) throw new Error(`factorColumns: ${factor.length} values for ${support.length} x ${r}`);
  return {
    count: r,
    size,
    fill(out, k0, m) {
      out.fill(0, 0, m * size);
      for (let k = 0; k < m; k++) for (let i = 0; i < support.length; i++) out[k * size + support[i]] = factor[i * r + k0 + k];
    },
  };
}

/** The rows of a dense [count, size] matrix. */
export function denseRows(rows: ArrayLike<number>, count: number, size: number): DirectionBatches {
  if (rows.length !== count * size) throw new Error(`denseRows: ${rows.length} values for ${count} x ${size}`);
  return {
    count,
    size,
    fill(out, k0, m) {
      for (let i = 0; i < m * size; i++) out[i] = rows[k0 * size + i];
    },
  };
}

/** `base`'s directions followed by one more, `extra` (size values). */
export function withExtraDirection(base: DirectionBatches, extra: ArrayLike<number>): DirectionBatches {
  const { count, size } = base;
  if (extra.length !== size) throw new Error(`withExtraDirection: ${extra.length} values, directions have ${size}`);
  return {
    count: count + 1,
    size,
    fill(out, k0, m) {
      const own = Math.max(0, Math.min(m, count - k0));
      if (own > 0) base.fill(out, k0, own);
      for (let k = own; k < m; k++) for (let i = 0; i < size; i++) out[k * size + i] = extra[i];
    },
  };
}

function slots(items: { name: string; dims: number[]; batched?: boolean }[]): TensorSlot[] {
  let offset = 0;
  return items.map(({ name, dims, batched }) => {
    const size = dims.reduce((a, d) => a * d, 1);
    const s = { name, dims, size, offset, batched: batched ?? true };
    offset += size;
    return s;
  });
}

const total = (s: TensorSlot[]) => s.reduce((a, x) => a + x.size, 0);

export class JacobianEngine {
  /** How Jacobians are computed: forward-mode tangent model, or central finite differences. */
  readonly mode: 'jvp' | 'fd';
  /** Why auto mode fell back to finite differences, when it did. */
  readonly fallback?: { opType: string; reason: string };
  /** Inputs the point covers (the varying ones and any others the outputs read). */
  readonly primalInputs: TensorSlot[];
  /** The Jacobian's columns: the varying inputs, concatenated. */
  readonly inputs: TensorSlot[];
  /** The Jacobian's rows: the requested outputs, concatenated. */
  readonly outputs: TensorSlot[];
  readonly inputSize: number;
  readonly outputSize: number;
  /** Directions per tangent run when none is asked for. */
  readonly defaultChunk: number;
  /** Bytes one tangent direction takes in a run (the estimate defaultChunk is sized from: 8 per element of every tangent tensor). */
  readonly directionBytes: number;
  /** Forward or reverse mode for jacobian() and reverse-capable callers (jvp mode only). */
  readonly direction: JacobianDirection;
  /** Why reverse mode is unavailable for this part (an op without an adjoint rule), once that is known. */
  reverseFallback?: { opType: string; reason: string };
  /** Whether reverse mode has been used (for the description). */
  private reverseUsed = false;
  private reverse?: Promise<{ model: AdjointModel; session: ModelSession; chunk: number; rowBytes: number; modelBytes: number } | undefined>;
  private graph?: Graph;
  private shapes?: ReadonlyMap<string, readonly number[]>;
  private engineOptions: JacobianEngineOptions = {};

  private constructor(
    private readonly session: ModelSession,
    init: {
      mode: 'jvp' | 'fd';
      fallback?: { opType: string; reason: string };
      primalInputs: TensorSlot[];
      varying: string[];
      outputs: TensorSlot[];
      defaultChunk: number;
      directionBytes?: number;
      tangent?: TangentModel;
      fd?: { batched: boolean; step?: number };
      direction?: JacobianDirection;
    },
  ) {
    this.direction = init.direction ?? 'forward';
    this.mode = init.mode;
    this.fallback = init.fallback;
    this.primalInputs = init.primalInputs;
    this.inputs = slots(init.varying.map((v) => init.primalInputs.find((p) => p.name === v)!));
    this.outputs = init.outputs;
    this.inputSize = total(this.inputs);
    this.outputSize = total(this.outputs);
    this.defaultChunk = init.defaultChunk;
    this.directionBytes = init.directionBytes ?? 0;
    this.tangent = init.tangent;
    this.fd = init.fd;
  }

  private readonly tangent?: TangentModel;
  private readonly fd?: { batched: boolean; step?: number };

  static async create(graph: Graph, options: JacobianEngineOptions = {}): Promise<JacobianEngine> {
    const mode = options.mode ?? 'auto';
    const varying = options.varying ?? graph.dataInputs.map((i) => i.name);
    const outputs = options.outputs ?? graph.outputs.map((o) => o.name);
    const budget = options.memoryBudgetBytes ?? DEFAULT_BUDGET;
    const sessionOptions = { threads: options.threads, provider: options.provider };
    for (const name of varying) {
      const inp = graph.dataInputs.find((i) => i.name === name);
      if (!inp) throw new NetmomentsError(`'${name}' is not an input of the model part`, { code: 'BAD_USAGE' });
      if (inp.elemType !== DataType.FLOAT) throw new NetmomentsError(`input '${name}' is not float32; Jacobians need float32 inputs`, { code: 'UNSUPPORTED' });
    }
    let fallback: { opType: string; reason: string } | undefined;
    if (mode !== 'fd') {
      const shapes = options.staticShapes === false ? undefined : await probedShapes(graph, options.threads);
      let tm: TangentModel | undefined;
      let session: ModelSession | undefined;
      try {
        tm = buildTangentModel(graph, { varying, outputs, shapes });
        session = await ModelSession.create(tm.bytes, sessionOptions);
        // the session holds the model now: the serialized copy (the part's weights once more, 0.5 GB
        // for VGG's bottom) is not kept
        tm = { ...tm, bytes: new Uint8Array(0) };
        const primalInputs = slots(tm.primalInputs);
        const engine = new JacobianEngine(session, {
          mode: 'jvp',
          primalInputs,
          varying,
          outputs: [],
          defaultChunk: 1,
          tangent: tm,
        });
        // One warm-up run at the zero point: finds the output shapes and surfaces run-time errors now.
        const warm = await engine.runTangent(new Float32Array(total(primalInputs)), new Float32Array(engine.inputSize), 1);
        const outSlots = slots(outputs.map((o) => ({ name: o, dims: warm.dims[o] })));
        const perDirection = 8 * tangentElements(tm, shapes, engine.inputSize + total(outSlots));
        const defaultChunk = Math.max(1, Math.floor(budget / perDirection));
        const direction: JacobianDirection = mode === 'reverse' ? 'reverse' : mode === 'auto' ? 'auto' : 'forward';
        const made = new JacobianEngine(session, {
          mode: 'jvp',
          primalInputs,
          varying,
          outputs: outSlots,
          defaultChunk,
          directionBytes: perDirection,
          tangent: tm,
          direction,
        });
        made.graph = graph;
        made.shapes = shapes;
        made.engineOptions = options;
        return made;
      } catch (e) {
        await session?.release();
        if (mode === 'jvp' || mode === 'forward') {
          if (e instanceof NetmomentsError) throw e;
          throw new NetmomentsError(`the tangent model failed: ${e instanceof Error ? e.message : String(e)}`, { code: 'UNSUPPORTED', cause: e });
        }
        if (e instanceof MissingTangentRuleError) {
          fallback = { opType: e.opType, reason: e.message };
        } else {
          fallback = { opType: '(tangent model)', reason: e instanceof Error ? e.message : String(e) };
        }
        options.onWarning?.(`${fallback.reason}; computing Jacobians by central finite differences instead (slower, step-dependent near kinks)`);
      }
    }
    return JacobianEngine.createFd(graph, varying, outputs, options, fallback);
  }

  private static async createFd(
    graph: Graph,
    varying: string[],
    outputs: string[],
    options: JacobianEngineOptions,
    fallback: { opType: string; reason: string } | undefined,
  ): Promise<JacobianEngine> {
    let g = graph.clone();
    g.sortTopologically();
    try {
      // Fixed batch-1 exports (Reshape to [1, ...]) run batches of perturbed points after this rewrite.
      g = makeBatchDynamic(g);
    } catch {
      // keep the model as it is; the batch function then runs one point at a time
    }
    const needed = new Set(outputs);
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i];
      if (n.outputs.some((o) => needed.has(o))) for (const x of n.inputs) if (x) needed.add(x);
    }
    const used = g.dataInputs.filter((i) => needed.has(i.name) || varying.includes(i.name));
    // A model whose batch axis is fixed runs one point at a time; a symbolic batch axis runs batches.
    const batched = used.every((i) => (i.shape !== undefined && typeof i.shape[0] !== 'number') || !inputDims(i, varying.includes(i.name)).batched);
    const primalInputs = slots(used.map((i) => ({ name: i.name, ...inputDims(i, varying.includes(i.name)) })));
    g.inputs = used.map((i, k): ValueInfo => {
      const s = primalInputs[k];
      return { ...i, shape: s.batched ? [batched ? 'N' : 1, ...s.dims] : s.dims };
    });
    g.outputs = outputs.map((o) => ({ name: o, elemType: DataType.FLOAT }));
    g.valueInfo.clear();
    g.prune();
    const session = await ModelSession.create(g.toBytes(), { threads: options.threads, provider: options.provider });
    const engine = new JacobianEngine(session, {
      mode: 'fd',
      fallback,
      primalInputs,
      varying,
      outputs: [],
      defaultChunk: 1,
      fd: { batched, step: options.fdStep },
    });
    const dims = await engine.forwardDims();
    const outSlots = slots(outputs.map((o) => ({ name: o, dims: dims[o] })));
    const perDirection = 2 * 4 * (total(primalInputs) + total(outSlots)) * 4;
    const defaultChunk = Math.max(1, Math.min(4096, Math.floor((options.memoryBudgetBytes ?? DEFAULT_BUDGET) / perDirection)));
    return new JacobianEngine(session, {
      mode: 'fd',
      fallback,
      primalInputs,
      varying,
      outputs: outSlots,
      defaultChunk,
      directionBytes: perDirection,
      fd: { batched, step: options.fdStep },
    });
  }

  /** How this engine computes Jacobians, in words (reports and warnings). */
  get description(): string {
    if (this.mode === 'fd') return `central finite differences${this.fallback ? ` (${this.fallback.reason})` : ''}`;
    const base = this.reverseUsed ? 'reverse-mode VJPs (fewer output rows than columns)' : 'forward-mode JVPs';
    if (this.direction !== 'forward' && this.reverseFallback) return `${base}; reverse mode unavailable: ${this.reverseFallback.reason}`;
    return base;
  }

  /**
   * Whether a Jacobian of `rows` output rows over `columns` columns (or noise directions) is built
   * in reverse mode: never in fd or forward mode; in reverse mode always; in auto mode when the rows
   * are no more than the columns (reverse needs one pass per row, forward one per column). Only a
   * preference: reverseReady() says whether the part has adjoint rules.
   */
  prefersReverse(columns: number, rows = this.outputSize): boolean {
    if (this.mode !== 'jvp' || this.direction === 'forward') return false;
    return this.direction === 'reverse' || rows <= columns;
  }

  /**
   * The adjoint session, created on first use; undefined when an op of the part has no adjoint rule
   * (then `reverseFallback` says which, and the forward path is used; in reverse mode with a warning).
   */
  private reverseSession(): Promise<{ model: AdjointModel; session: ModelSession; chunk: number; rowBytes: number; modelBytes: number } | undefined> {
    this.reverse ??= (async () => {
      const graph = this.graph;
      if (!graph) return undefined;
      let session: ModelSession | undefined;
      try {
        const built = this.buildAdjoint(graph);
        session = await ModelSession.create(built.bytes, { threads: this.engineOptions.threads, provider: this.engineOptions.provider });
        // as for the tangent model: the session holds the model, its serialized copy is not kept
        const model: AdjointModel = { ...built, bytes: new Uint8Array(0) };
        const perRow = 8 * adjointElements(model, this.shapes, this.inputSize + this.outputSize);
        const chunk = Math.max(1, Math.floor((this.engineOptions.memoryBudgetBytes ?? DEFAULT_BUDGET) / perRow));
        return { model, session, chunk, rowBytes: perRow, modelBytes: built.bytes.length };
      } catch (e) {
        await session?.release();
        this.reverseFallback =
          e instanceof MissingAdjointRuleError
            ? { opType: e.opType, reason: e.message }
            : { opType: '(adjoint model)', reason: `the adjoint model failed: ${e instanceof Error ? e.message : String(e)}` };
        if (this.direction === 'reverse') this.engineOptions.onWarning?.(`${this.reverseFallback.reason}; building this Jacobian in forward mode instead`);
        return undefined;
      }
    })();
    return this.reverse;
  }

  /** Whether reverse mode works for this part (builds the adjoint session on first call). */
  async reverseReady(): Promise<boolean> {
    if (this.mode !== 'jvp' || this.direction === 'forward') return false;
    return (await this.reverseSession()) !== undefined;
  }

  /**
   * Bytes one cotangent row takes in an adjoint run (8 per element of every adjoint tensor, the
   * estimate reverseChunk is sized from; VGG-11's bottom at fc7: 133 MB, of which onnxruntime's
   * arena measured about 85 MB a row); undefined without reverse mode.
   */
  async reverseRowBytes(): Promise<number | undefined> {
    return (await this.reverseSession())?.rowBytes;
  }

  /** Bytes of the serialized adjoint model (what each of reverseRows' worker threads loads); undefined without reverse mode. */
  async reverseModelBytes(): Promise<number | undefined> {
    return (await this.reverseSession())?.modelBytes;
  }

  /** The part's adjoint model (the session's, and again for reverseRows' workers: its bytes are not kept). */
  private buildAdjoint(graph: Graph): AdjointModel {
    return buildAdjointModel(graph, { varying: this.inputs.map((s) => s.name), outputs: this.outputs.map((o) => o.name), shapes: this.shapes });
  }

  /** The adjoint session for a reverse pass about to run; an error where reverse mode is unavailable. */
  private async usedReverseSession(): Promise<{ model: AdjointModel; session: ModelSession }> {
    const rev = await this.reverseSession();
    if (!rev)
      throw new NetmomentsError(`reverse mode is unavailable: ${this.reverseFallback?.reason ?? 'not a tangent-model engine'}`, { code: 'UNSUPPORTED' });
    this.reverseUsed = true;
    return rev;
  }

  /** Cotangent rows per adjoint run when none is asked for (after reverseReady()). */
  async reverseChunk(): Promise<number> {
    return (await this.reverseSession())?.chunk ?? this.defaultChunk;
  }

  /**
   * U J for k cotangent rows U ([k, outputSize] float32, over the outputs concatenated): the rows
   * [k, inputSize] (float32, over the varying inputs concatenated) and the output value.
   * Needs reverseReady().
   */
  async vjp(point: Point | Record<string, HostTensor>, rows: Float32Array, k: number): Promise<{ cotangents: Float32Array; outputValue: Float64Array }> {
    const rev = await this.usedReverseSession();
    const feeds = { ...(isFeeds(point) ? point : this.pointFeeds(point)), ...this.cotangentFeeds(rev.model, rows, k) };
    return this.vjpResult(rev.model, await rev.session.run(feeds, this.vjpOutputNames(rev.model)), k);
  }

  /** The adjoint model's cotangent inputs for k rows U ([k, outputSize] float32). */
  private cotangentFeeds(model: AdjointModel, rows: Float32Array, k: number): Record<string, HostTensor> {
    if (rows.length !== k * this.outputSize)
      throw new NetmomentsError(`${rows.length} cotangent values for ${k} rows of ${this.outputSize} elements`, { code: 'BAD_USAGE' });
    const feeds: Record<string, HostTensor> = {};
    for (const o of this.outputs) {
      let data: Float32Array;
      if (this.outputs.length === 1) data = rows.subarray(0, k * o.size);
      else {
        data = new Float32Array(k * o.size);
        for (let d = 0; d < k; d++) data.set(rows.subarray(d * this.outputSize + o.offset, d * this.outputSize + o.offset + o.size), d * o.size);
      }
      feeds[model.cotangentInputs[o.name]] = { type: 'float32', data, dims: [k, ...o.dims] };
    }
    return feeds;
  }

  private vjpOutputNames(model: AdjointModel): string[] {
    return [...this.outputs.map((o) => model.primalOutputs[o.name]), ...this.inputs.map((s) => model.cotangentOutputs[s.name])];
  }

  /** U J ([k, inputSize], over the varying inputs concatenated) and the output value from an adjoint run's outputs. */
  private vjpResult(model: AdjointModel, out: Record<string, HostTensor>, k: number): { cotangents: Float32Array; outputValue: Float64Array } {
    const cotangents = new Float32Array(k * this.inputSize);
    for (const s of this.inputs) {
      const t = out[model.cotangentOutputs[s.name]];
      if (t.dims[0] !== k) throw new Error(`adjoint model: cotangent of '${s.name}' has batch ${t.dims[0]}, expected ${k}`);
      const data = toFloat32(t);
      if (this.inputs.length === 1) cotangents.set(data);
      else for (let d = 0; d < k; d++) cotangents.set(data.subarray(d * s.size, (d + 1) * s.size), d * this.inputSize + s.offset);
    }
    const outputValue = new Float64Array(this.outputSize);
    for (const o of this.outputs) outputValue.set(toFloat32(out[model.primalOutputs[o.name]]), o.offset);
    return { cotangents, outputValue };
  }

  /**
   * Rows of J for the output elements `rows` (indices into the concatenated outputs), `chunk` at a
   * time by reverse mode: each block of m rows ([m, inputSize] float32, row i of the block is row
   * rows[r0 + i] of J) goes to `visit`, in order of r0. Needs reverseReady().
   * With `workers` > 0, that many worker threads with their own adjoint sessions (src/runtime/workers.ts)
   * run blocks beside the main thread's session: each lane holds one block at a time, and waits
   * for its turn to visit, so at most workers + 1 blocks exist at once. The workers exist for this
   * call only (each holds the part's weights once more); when they cannot be made, the rows are
   * done on the main thread alone, with a warning.
   */
  async reverseRows(
    point: Point | Record<string, HostTensor>,
    rows: Int32Array,
    chunk: number,
    visit: (r0: number, m: number, block: Float32Array, outputValue: Float64Array) => void | Promise<void>,
    options: { workers?: number } = {},
  ): Promise<void> {
    const feeds = isFeeds(point) ? point : this.pointFeeds(point);
    const step = Math.max(1, Math.min(rows.length, chunk));
    const blocks = Math.ceil(rows.length / step);
    const identity = (r0: number, m: number): Float32Array => {
      const U = new Float32Array(m * this.outputSize);
      for (let i = 0; i < m; i++) {
        const row = rows[r0 + i];
        if (!(row >= 0 && row < this.outputSize))
          throw new NetmomentsError(`row ${row} is outside the ${this.outputSize} output elements`, { code: 'BAD_USAGE' });
        U[i * this.outputSize + row] = 1;
      }
      return U;
    };
    const workers = Math.max(0, Math.min(options.workers ?? 0, blocks - 1));
    if (workers === 0 || !this.graph) {
      for (let r0 = 0; r0 < rows.length; r0 += step) {
        const m = Math.min(step, rows.length - r0);
        const r = await this.vjp(feeds, identity(r0, m), m);
        await visit(r0, m, r.cotangents, r.outputValue);
      }
      return;
    }
    const rev = await this.usedReverseSession();
    const names = this.vjpOutputNames(rev.model);
    const turns = new BlockTurns();
    let claimed = 0;
    const lane = async (run: (U: Float32Array, m: number) => Promise<Record<string, HostTensor>>) => {
      try {
        while (!turns.failed && claimed < blocks) {
          const b = claimed++;
          const r0 = b * step;
          const m = Math.min(step, rows.length - r0);
          const r = this.vjpResult(rev.model, await run(identity(r0, m), m), m);
          await turns.wait(b);
          if (turns.failed) return;
          await visit(r0, m, r.cotangents, r.outputValue);
          turns.advance();
        }
      } catch (e) {
        turns.fail(e);
      }
    };
    const graph = this.graph;
    const made = (async () => {
      const bytes = this.buildAdjoint(graph).bytes;
      const pool = await SessionWorkers.create(bytes, workers, { provider: this.engineOptions.provider });
      await pool.setConstants(feeds);
      return pool;
    })().catch((e: unknown) => {
      this.engineOptions.onWarning?.(
        `the reverse passes run on the main thread only: worker threads could not be made (${e instanceof Error ? e.message : String(e)})`,
      );
      return undefined;
    });
    const lanes = [lane((U, m) => rev.session.run({ ...feeds, ...this.cotangentFeeds(rev.model, U, m) }, names))];
    for (let i = 0; i < workers; i++) {
      lanes.push(made.then((pool) => (pool ? lane((U, m) => pool.run(i, this.cotangentFeeds(rev.model, U, m), names)) : undefined)));
    }
    try {
      await Promise.all(lanes);
    } finally {
      await (await made)?.release();
    }
    if (turns.failed) throw turns.error;
  }

  /** The tangent model (jvp mode), e.g. for inspection; its `bytes` are empty (the session holds the model, no serialized copy is kept). */
  get tangentModel(): TangentModel | undefined {
    return this.tangent;
  }

  /** Split a point into per-input float32 arrays. */
  private pointFeeds(point: Point): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    const isArray = (p: Point): p is ArrayLike<number> => typeof (p as ArrayLike<number>).length === 'number';
    if (isArray(point)) {
      const n = total(this.primalInputs);
      if (point.length !== n) {
        throw new NetmomentsError(
          `the point has ${point.length} values; the model part reads ${n} (${this.primalInputs.map((s) => `${s.name} [${s.dims.join(', ')}]`).join(', ')})`,
        );
      }
      for (const s of this.primalInputs) {
        const data = new Float32Array(s.size);
        for (let i = 0; i < s.size; i++) data[i] = point[s.offset + i];
        feeds[s.name] = { type: 'float32', data, dims: feedDims(s) };
      }
    } else {
      for (const s of this.primalInputs) {
        const v = point[s.name];
        if (!v) throw new NetmomentsError(`the point gives no value for input '${s.name}'`);
        if (v.length !== s.size) throw new NetmomentsError(`the point's '${s.name}' has ${v.length} values, expected ${s.size}`);
        feeds[s.name] = { type: 'float32', data: Float32Array.from(v), dims: feedDims(s) };
      }
    }
    for (const f of Object.values(feeds)) {
      for (const v of f.data as Float32Array) if (!Number.isFinite(v)) throw new NetmomentsError('the point holds a non-finite value');
    }
    return feeds;
  }

  /** One run of the tangent model: k directions, row-major [k, inputSize]. */
  private async runTangent(
    point: Point | Record<string, HostTensor>,
    directions: Float32Array,
    k: number,
  ): Promise<{ tangents: Record<string, Float32Array>; primal: Record<string, Float32Array>; dims: Record<string, number[]> }> {
    const tm = this.tangent!;
    const feeds = isFeeds(point) ? { ...point } : this.pointFeeds(point);
    for (const s of this.inputs) {
      let data: Float32Array;
      if (this.inputs.length === 1) data = directions.subarray(0, k * s.size);
      else {
        data = new Float32Array(k * s.size);
        for (let d = 0; d < k; d++) data.set(directions.subarray(d * this.inputSize + s.offset, d * this.inputSize + s.offset + s.size), d * s.size);
      }
      feeds[tm.tangentInputs[s.name]] = { type: 'float32', data, dims: [k, ...s.dims] };
    }
    const names = Object.keys(tm.primalOutputs);
    const out = await this.session.run(feeds, [...names.map((o) => tm.primalOutputs[o]), ...names.map((o) => tm.tangentOutputs[o])]);
    const tangents: Record<string, Float32Array> = {};
    const primal: Record<string, Float32Array> = {};
    const dims: Record<string, number[]> = {};
    for (const o of names) {
      const p = out[tm.primalOutputs[o]];
      const t = out[tm.tangentOutputs[o]];
      primal[o] = toFloat32(p);
      tangents[o] = toFloat32(t);
      dims[o] = t.dims.slice(1);
      if (t.dims[0] !== k) throw new Error(`tangent model: output '${o}' has batch ${t.dims[0]}, expected ${k}`);
    }
    return { tangents, primal, dims };
  }

  /** Output dims of the forward model (fd mode), from one run at the zero point. */
  private async forwardDims(): Promise<Record<string, number[]>> {
    const feeds: Record<string, HostTensor> = {};
    for (const s of this.primalInputs) feeds[s.name] = { type: 'float32', data: new Float32Array(s.size), dims: feedDims(s) };
    const out = await this.session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.dims.slice(1)]));
  }

  /** The forward model on `count` points given as [count, inputSize] over the varying inputs; others from `base`. */
  private batchFunction(base: Record<string, HostTensor>): BatchFunction {
    return async (points, count) => {
      const out = new Float64Array(count * this.outputSize);
      const runOnce = async (start: number, m: number) => {
        const feeds: Record<string, HostTensor> = {};
        for (const s of this.primalInputs) {
          if (!s.batched) {
            feeds[s.name] = base[s.name];
            continue;
          }
          const v = this.inputs.find((x) => x.name === s.name);
          const data = new Float32Array(m * s.size);
          for (let d = 0; d < m; d++) {
            if (v) data.set(points.subarray((start + d) * this.inputSize + v.offset, (start + d) * this.inputSize + v.offset + v.size), d * s.size);
            else data.set(base[s.name].data as Float32Array, d * s.size);
          }
          feeds[s.name] = { type: 'float32', data, dims: [m, ...s.dims] };
        }
        const r = await this.session.run(feeds);
        for (const o of this.outputs) {
          const t = toFloat32(r[o.name]);
          for (let d = 0; d < m; d++) {
            const dst = (start + d) * this.outputSize + o.offset;
            for (let i = 0; i < o.size; i++) out[dst + i] = t[d * o.size + i];
          }
        }
      };
      if (this.fd!.batched && count > 1) {
        try {
          await runOnce(0, count);
          return out;
        } catch {
          // A symbolic batch axis that the model fixes inside (Reshape to [1, ...]): one point at a time.
          this.fd!.batched = false;
        }
      }
      for (let d = 0; d < count; d++) await runOnce(d, 1);
      return out;
    };
  }

  private varyingPoint(feeds: Record<string, HostTensor>): Float32Array {
    const x = new Float32Array(this.inputSize);
    for (const s of this.inputs) x.set(feeds[s.name].data as Float32Array, s.offset);
    return x;
  }

  /**
   * The Jacobian at `point` (columns: all varying input elements, or the given subset in that
   * order), with the output value there.
   */
  async jacobian(point: Point, options: ColumnOptions = {}): Promise<JacobianResult> {
    const feeds = this.pointFeeds(point);
    if (this.mode === 'fd') {
      const x = this.varyingPoint(feeds);
      return finiteDifferenceJacobian(this.batchFunction(feeds), x, this.fd!.step ?? defaultStep(x), {
        columns: options.columns,
        chunk: options.chunk ?? this.defaultChunk,
      });
    }
    const cols = resolveColumns(options.columns, this.inputSize);
    const rows = this.outputSize;
    if (this.prefersReverse(cols.length, rows) && (await this.reverseReady())) {
      // reverse mode: rows of J from identity cotangents, the asked-for columns picked out
      const J = new Float64Array(rows * cols.length);
      let outputValue: Float64Array | undefined;
      const all = Int32Array.from({ length: rows }, (_, i) => i);
      await this.reverseRows(feeds, all, options.chunk ?? (await this.reverseChunk()), (r0, m, block, value) => {
        outputValue ??= value;
        for (let i = 0; i < m; i++) {
          const src = i * this.inputSize;
          const dst = (r0 + i) * cols.length;
          for (let c = 0; c < cols.length; c++) J[dst + c] = block[src + cols[c]];
        }
      });
      outputValue ??= this.concatOutputs((await this.runTangent(feeds, new Float32Array(this.inputSize), 1)).primal);
      return { J, rows, cols: cols.length, outputValue };
    }
    const chunk = Math.max(1, Math.min(cols.length, options.chunk ?? this.defaultChunk));
    const J = new Float64Array(rows * cols.length);
    const directions = new Float32Array(chunk * this.inputSize);
    let outputValue: Float64Array | undefined;
    for (let c0 = 0; c0 < cols.length || outputValue === undefined; c0 += chunk) {
      const m = Math.max(1, Math.min(chunk, cols.length - c0));
      directions.fill(0, 0, m * this.inputSize);
      for (let d = 0; d < m && c0 + d < cols.length; d++) directions[d * this.inputSize + cols[c0 + d]] = 1;
      const r = await this.runTangent(feeds, directions, m);
      if (!outputValue) outputValue = this.concatOutputs(r.primal);
      for (const o of this.outputs) {
        const t = r.tangents[o.name];
        for (let d = 0; d < m && c0 + d < cols.length; d++) {
          const col = c0 + d;
          for (let i = 0; i < o.size; i++) J[(o.offset + i) * cols.length + col] = t[d * o.size + i];
        }
      }
    }
    return { J, rows, cols: cols.length, outputValue: outputValue! };
  }

  /** J d for k directions (row-major [k, inputSize]); returns [k, outputSize] and the output value. */
  /**
   * J d for k directions ([k, inputSize] float32), one tensor per output ([k, size], float32), for
   * callers that reduce the tangents at once (the linearizer's per-unit statistics): no float64
   * copy of a [k, outputSize] block. The caller chunks k; in fd mode this goes through jvp().
   */
  async jvpByOutput(point: Point, directions: Float32Array, k: number): Promise<Record<string, Float32Array>> {
    if (directions.length !== k * this.inputSize) {
      throw new NetmomentsError(`${directions.length} tangent values for ${k} directions of ${this.inputSize} elements`, { code: 'BAD_USAGE' });
    }
    if (this.mode === 'fd' || k === 0) {
      const r = await this.jvp(point, directions, k);
      const out: Record<string, Float32Array> = {};
      for (const o of this.outputs) {
        const t = new Float32Array(k * o.size);
        for (let d = 0; d < k; d++) for (let i = 0; i < o.size; i++) t[d * o.size + i] = r.tangents[d * this.outputSize + o.offset + i];
        out[o.name] = t;
      }
      return out;
    }
    return (await this.runTangent(point, directions, k)).tangents;
  }

  /**
   * J d for every direction of `directions`, `chunk` at a time: each batch is made (fill) into one
   * [chunk, inputSize] buffer and its tangents, one tensor per output ([m, size], float32), go to
   * `visit` with the batch itself. Only one batch of directions exists at a time.
   */
  async jvpBatches(
    point: Point,
    directions: DirectionBatches,
    chunk: number,
    visit: (k0: number, m: number, tangents: Record<string, Float32Array>, batch: Float32Array) => void | Promise<void>,
  ): Promise<void> {
    const size = this.inputSize;
    if (directions.size !== size) throw new NetmomentsError(`directions of ${directions.size} elements for an input of ${size}`, { code: 'BAD_USAGE' });
    const total = directions.count;
    const step = Math.max(1, Math.min(total, chunk));
    let buf: Float32Array | undefined;
    for (let k0 = 0; k0 < total; k0 += step) {
      const m = Math.min(step, total - k0);
      // a full batch reuses one buffer; the last, shorter one gets its own (onnxruntime takes the whole array)
      const batch = m === step ? (buf ??= new Float32Array(step * size)) : new Float32Array(m * size);
      directions.fill(batch, k0, m);
      await visit(k0, m, await this.jvpByOutput(point, batch, m), batch);
    }
  }

  async jvp(point: Point, directions: ArrayLike<number>, k: number, options: { chunk?: number } = {}): Promise<JvpResult> {
    if (directions.length !== k * this.inputSize) {
      throw new NetmomentsError(`${directions.length} tangent values for ${k} directions of ${this.inputSize} elements`, { code: 'BAD_USAGE' });
    }
    const feeds = this.pointFeeds(point);
    if (this.mode === 'fd') {
      const x = this.varyingPoint(feeds);
      return finiteDifferenceJvp(this.batchFunction(feeds), x, directions, k, this.fd!.step ?? defaultStep(x), options.chunk ?? this.defaultChunk);
    }
    const chunk = Math.max(1, Math.min(Math.max(k, 1), options.chunk ?? this.defaultChunk));
    const out = new Float64Array(k * this.outputSize);
    const buf = new Float32Array(chunk * this.inputSize);
    let outputValue: Float64Array | undefined;
    for (let d0 = 0; d0 < k || outputValue === undefined; d0 += chunk) {
      const m = Math.max(1, Math.min(chunk, k - d0));
      if (k === 0) buf.fill(0);
      else for (let i = 0; i < m * this.inputSize; i++) buf[i] = directions[d0 * this.inputSize + i];
      const r = await this.runTangent(feeds, buf, m);
      if (!outputValue) outputValue = this.concatOutputs(r.primal);
      if (k === 0) break;
      for (const o of this.outputs) {
        const t = r.tangents[o.name];
        for (let d = 0; d < m; d++) for (let i = 0; i < o.size; i++) out[(d0 + d) * this.outputSize + o.offset + i] = t[d * o.size + i];
      }
    }
    return { tangents: out, outputValue: outputValue! };
  }

  private concatOutputs(values: Record<string, Float32Array>): Float64Array {
    const v = new Float64Array(this.outputSize);
    for (const o of this.outputs) v.set(values[o.name], o.offset);
    return v;
  }

  async release(): Promise<void> {
    await this.session.release();
    const rev = await this.reverse;
    await rev?.session.release();
  }
}

/**
 * probeShapes once per model part: the linearizer makes two engines of the same bottom (and of the
 * same top), and each probe is a session running the whole part (seconds for an ImageNet model).
 */
const probed = new WeakMap<Graph, Promise<Map<string, number[]> | undefined>>();
function probedShapes(graph: Graph, threads: number | undefined): Promise<Map<string, number[]> | undefined> {
  let p = probed.get(graph);
  if (!p) {
    p = probeShapes(graph, { threads });
    probed.set(graph, p);
  }
  return p;
}

/** Factory: one engine per model part (see JacobianEngine). */
export function createJacobianEngine(graph: Graph, options: JacobianEngineOptions = {}): Promise<JacobianEngine> {
  return JacobianEngine.create(graph, options);
}

function feedDims(s: TensorSlot): number[] {
  return s.batched ? [1, ...s.dims] : s.dims;
}

function isFeeds(p: unknown): p is Record<string, HostTensor> {
  if (!p || typeof p !== 'object' || typeof (p as ArrayLike<number>).length === 'number') return false;
  const first = Object.values(p as object)[0] as unknown;
  return !!first && typeof first === 'object' && 'dims' in (first as object) && 'type' in (first as object);
}

function toFloat32(t: HostTensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
}

/** Elements of all cotangent tensors per cotangent row (an upper bound on a reverse run's working set). */
function adjointElements(model: AdjointModel, shapes: ReadonlyMap<string, readonly number[]> | undefined, fallback: number): number {
  if (!shapes) return 64 * fallback;
  let n = 0;
  for (const name of model.adjointTensors) {
    const s = shapes.get(name);
    n += s ? s.slice(1).reduce((a, d) => a * d, 1) : fallback;
  }
  return Math.max(n, fallback);
}

/** Elements of all tangent tensors per direction (an upper bound on a run's working set). */
function tangentElements(tm: TangentModel, shapes: ReadonlyMap<string, readonly number[]> | undefined, fallback: number): number {
  if (!shapes) return 64 * fallback;
  let n = 0;
  for (const name of tm.tangentTensors) {
    const s = shapes.get(name);
    n += s ? s.slice(1).reduce((a, d) => a * d, 1) : fallback;
  }
  return Math.max(n, fallback);
}

/**
 * Whose turn it is to visit a block in reverseRows' lanes: wait(b) resolves once blocks 0..b-1 are
 * visited (advance() after each), or at once after fail().
 */
class BlockTurns {
  private visited = 0;
  private readonly waiting = new Map<number, () => void>();
  failed = false;
  error: unknown;

  wait(b: number): Promise<void> {
    if (this.failed || this.visited >= b) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiting.set(b, resolve));
  }

  advance(): void {
    this.visited++;
    this.waiting.get(this.visited)?.();
    this.waiting.delete(this.visited);
  }

  fail(e: unknown): void {
    if (!this.failed) this.error = e;
    this.failed = true;
    for (const resolve of this.waiting.values()) resolve();
    this.waiting.clear();
  }
}
