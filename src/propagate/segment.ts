/**
 * One affine segment of moment propagation (a maximal run of consecutive affine nodes), run by
 * onnxruntime in ONE session and ONE run per input: the segment's tangent model
 * (src/onnx/tangent/build.ts) gives the mean (the primal output at the incoming mean) and the rows
 * of the outgoing factor (JVPs along the incoming factor's rows, all rows as one batch), and the
 * "variance model" nodes of src/propagate/rules/affine.ts, merged into the same graph, push the residual
 * variances through the squared linear parts.
 *
 * The factor stays in the layout and type the tangent model takes and returns: [rows, size]
 * float32, row-major; a single-output segment hands onnxruntime's output buffer on without a copy.
 */
import { NetmomentsError } from '../errors.js';
import { Graph, type GraphNode } from '../onnx/graph.js';
import { DataType } from '../onnx/proto.js';
import { buildTangentModel, type TangentModel } from '../onnx/tangent/build.js';
import { buildAdjointModel, type AdjointModel } from '../onnx/tangent/reverse.js';
import { ModelSession, type HostTensor, type Provider } from '../runtime/session.js';
import { moveWeightsToInputs } from '../onnx/weightInputs.js';
import { varianceNodes, type TensorMoments } from './rules/index.js';

const rName = (t: string) => `${t}::netmoments_r`;

/**
 * Ops whose weights stay initializers of a segment's sessions: onnxruntime reorders a Conv's once
 * for its blocked kernels, which the wide runs of a segment pay back. The other large weights (a
 * Gemm's, a MatMul's) are fed as inputs (src/onnx/weightInputs.ts).
 */
export const CONV_OPS: ReadonlySet<string> = new Set(['Conv', 'ConvTranspose']);

/**
 * A segment whose tensors (inputs, intermediates and outputs at the most factor rows it can see)
 * take at most this many bytes keeps onnxruntime's memory arena (keepsArena): without it every run
 * gets fresh pages for its outputs, which doubled the segments' time on LeNet (0.13 -> 0.27 CPU s
 * per digit); with it a session keeps its run's peak, harmless at this size, gigabytes at ImageNet
 * size.
 */
export const ARENA_SEGMENT_BYTES = 64 * 2 ** 20;

/** Units of the noisy (variable) tensors a run of nodes reads or makes, each counted once (`size`: units of a tensor). */
export function segmentUnits(nodes: readonly GraphNode[], variable: ReadonlySet<string>, size: (t: string) => number): number {
  const tensors = new Set(nodes.flatMap((nd) => [...nd.inputs, ...nd.outputs]).filter((t) => t && variable.has(t)));
  return [...tensors].reduce((a, t) => a + size(t), 0);
}

/**
 * Whether the engine keeps onnxruntime's memory arena for the segment of step `k` (propagator.ts):
 * its variable tensors (`units`, segmentUnits) at an upper bound on the factor's rows there (`rows0`
 * at the input: the probes and the noise's columns, and `perStep`, K or R, more for each step
 * before it) fit in ARENA_SEGMENT_BYTES of float32. The arena then keeps the run's peak for the
 * session's life.
 */
export function keepsArena(k: number, units: number, rows0: number, perStep: number): boolean {
  return 4 * (rows0 + k * perStep) * units <= ARENA_SEGMENT_BYTES;
}

export interface SegmentOptions {
  threads?: number;
  provider?: Provider;
  /**
   * Keep onnxruntime's memory arena for the segment's session (default false): faster runs (no
   * fresh pages for every output), at the price of keeping the run's peak for the session's life.
   */
  memoryArena?: boolean;
}

export class AffineSegment {
  private constructor(
    readonly label: string,
    /** Variable tensors the segment reads, in the tangent model's input order. */
    readonly inputs: string[],
    /** Variable tensors it produces that later steps (or the caller) read. */
    readonly outputs: string[],
    private readonly sizes: Map<string, number>,
    private readonly dims: Map<string, number[]>,
    private readonly tm: TangentModel,
    private readonly session: ModelSession,
    /** The segment alone (its nodes, the constants they read), for the adjoint model. */
    private readonly graph: Graph,
    private readonly shapes: ReadonlyMap<string, readonly number[]>,
    private readonly options: SegmentOptions,
    /** The large weights the session takes as inputs (those no CONV_OPS node reads), fed at every run. */
    private readonly weights: Record<string, HostTensor>,
  ) {}

  /** The adjoint model's session, made at the first reverse pass (src/propagate/adjoint.ts), and its weights fed as inputs. */
  private adjoint?: { model: AdjointModel; session: ModelSession; weights: Record<string, HostTensor> };

  /**
   * The last run's factor and residual inputs and outputs. The segment is affine in its inputs, so
   * its outgoing factor and residuals depend on the incoming ones only, not on the mean: when the
   * same factor arrays (factors are never written after they are made) and residuals come again,
   * as the input noise's factor does for every input of a dataset, only the mean is recomputed.
   */
  private last?: { F: Float32Array[]; r: Float64Array[]; outF: Float32Array[]; outR: Float64Array[] };

  /**
   * Build the segment's session. `variable` holds the tensors that depend on the noisy input,
   * `sampleShape` gives per-sample shapes, `shapes` the batch-1 shapes of the whole graph (for the
   * tangent rules), `keep` says whether a produced tensor is read after the segment.
   */
  static async create(
    graph: Graph,
    seg: GraphNode[],
    variable: Set<string>,
    shapes: ReadonlyMap<string, readonly number[]>,
    sampleShape: (t: string) => number[],
    keep: (t: string) => boolean,
    options: SegmentOptions,
  ): Promise<AffineSegment> {
    const produced = new Set(seg.flatMap((n) => n.outputs));
    const inputs = [...new Set(seg.flatMap((n) => n.inputs).filter((x) => variable.has(x) && !produced.has(x)))];
    const outputs = [...produced].filter((t) => t && variable.has(t) && keep(t));
    // constant producers the segment reads (Shape/Gather/Constant chains), pulled in whole
    const constNodes: GraphNode[] = [];
    const needConst = new Set(seg.flatMap((n) => n.inputs).filter((x) => x && !variable.has(x)));
    for (let i = graph.nodes.length - 1; i >= 0; i--) {
      const n = graph.nodes[i];
      if (n.outputs.some((o) => needConst.has(o)) && !n.inputs.some((x) => variable.has(x))) {
        constNodes.unshift(n);
        for (const x of n.inputs) if (x) needConst.add(x);
      }
    }
    const g = new Graph();
    g.opsetImports = graph.opsetImports.map((o) => ({ ...o }));
    g.irVersion = graph.irVersion;
    for (const name of needConst) {
      const t = graph.initializers.get(name);
      if (t) g.initializers.set(name, t);
    }
    g.nodes = [...constNodes, ...seg].map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs] }));
    g.inputs = inputs.map((name) => ({ name, elemType: DataType.FLOAT, shape: ['N', ...sampleShape(name)] }));
    g.outputs = outputs.map((name) => ({ name, elemType: DataType.FLOAT }));
    const tm = buildTangentModel(g, { varying: inputs, outputs, shapes });

    // the variance model, merged into the tangent graph: r inputs [1, ...], r outputs
    const tg = tm.graph;
    let counter = 0;
    const ctx = {
      isVariable: (t: string) => variable.has(t),
      rName,
      shape: sampleShape,
      opset: graph.opset,
      fresh: (hint: string) => `${hint}::netmoments_${counter++}`,
      constant: (values: number[], dims: number[]) => {
        const name = `netmoments_const_${counter++}`;
        tg.initializers.set(name, { name, dataType: DataType.FLOAT, dims, data: Float32Array.from(values) });
        return name;
      },
    };
    for (const name of needConst) {
      const t = graph.initializers.get(name);
      if (t && !tg.initializers.has(name)) tg.initializers.set(name, t);
    }
    const present = new Set(tg.nodes.flatMap((n) => n.outputs));
    for (const n of constNodes) if (!n.outputs.some((o) => present.has(o))) tg.nodes.push({ ...n });
    for (const n of seg) tg.nodes.push(...varianceNodes(n, ctx));
    tg.inputs = [...tg.inputs, ...inputs.map((name) => ({ name: rName(name), elemType: DataType.FLOAT, shape: [1, ...sampleShape(name)] }))];
    tg.outputs = [...tg.outputs, ...outputs.map((name) => ({ name: rName(name), elemType: DataType.FLOAT }))];
    tg.sortTopologically();
    tg.prune();
    const weights = moveWeightsToInputs(tg, CONV_OPS);
    // no memory arena unless asked (small segments): a segment runs once per input at the factor's
    // width, and an arena would keep every segment's peak for the whole propagation (src/method.ts,
    // estimatePropagateMemory)
    const session = await ModelSession.create(tg.toBytes(), {
      threads: options.threads,
      provider: options.provider,
      memoryArena: options.memoryArena ?? false,
    });
    const sizes = new Map<string, number>();
    const dims = new Map<string, number[]>();
    for (const t of [...inputs, ...outputs]) {
      dims.set(t, sampleShape(t));
      sizes.set(
        t,
        sampleShape(t).reduce((a, d) => a * d, 1),
      );
    }
    return new AffineSegment(`affine[${seg.map((n) => n.opType).join(',')}]`, inputs, outputs, sizes, dims, tm, session, g, shapes, options, weights);
  }

  /**
   * Moments of the outputs from the inputs' moments. Every input's factor has the same number of
   * rows (the caller pads a factor that predates later columns with zero rows). `remember` keeps
   * this run's factors for the next call (see `last`): only worth it where the same factor arrays
   * can come again (the input noise's factor); elsewhere it would hold a tensor's factor, the
   * largest arrays of a propagation, past its last use.
   */
  async run(ins: TensorMoments[], remember = true): Promise<TensorMoments[]> {
    const rows = ins[0].F.length / ins[0].m.length;
    const last = this.last;
    const reuse = last !== undefined && ins.every((x, i) => x.F === last.F[i] && x.r.length === last.r[i].length && x.r.every((v, j) => v === last.r[i][j]));
    const feeds: Record<string, HostTensor> = { ...this.weights };
    this.inputs.forEach((t, i) => {
      const x = ins[i];
      const dims = this.dims.get(t)!;
      if (x.F.length !== rows * x.m.length) throw new NetmomentsError(`internal: factor rows differ between the inputs of ${this.label}`);
      feeds[t] = { type: 'float32', data: Float32Array.from(x.m), dims: [1, ...dims] };
      feeds[this.tm.tangentInputs[t]] = reuse
        ? { type: 'float32', data: new Float32Array(x.m.length), dims: [1, ...dims] }
        : { type: 'float32', data: x.F, dims: [rows, ...dims] };
      feeds[rName(t)] = { type: 'float32', data: Float32Array.from(x.r), dims: [1, ...dims] };
    });
    const names = this.outputs.flatMap((o) => [this.tm.primalOutputs[o], this.tm.tangentOutputs[o], rName(o)]);
    const out = await this.session.run(feeds, names);
    const result = this.outputs.map((o, idx) => {
      const size = this.sizes.get(o)!;
      const m = Float64Array.from(out[this.tm.primalOutputs[o]].data as Float32Array);
      if (reuse) return { ...ins[0], m, F: last.outF[idx], r: last.outR[idx] };
      const F = out[this.tm.tangentOutputs[o]].data as Float32Array;
      if (F.length !== rows * size) throw new NetmomentsError(`internal: ${this.label} returned ${F.length} tangent values for ${rows} rows of ${size}`);
      const rv = out[rName(o)].data as Float32Array;
      const r = new Float64Array(size);
      for (let i = 0; i < size; i++) r[i] = rv[i] > 0 ? rv[i] : 0;
      return { ...ins[0], m, F, r, k: rows - ins[0].probes };
    });
    if (!remember) this.last = undefined;
    else if (!reuse)
      this.last = { F: ins.map((x) => x.F), r: ins.map((x) => Float64Array.from(x.r)), outF: result.map((x) => x.F), outR: result.map((x) => x.r) };
    return result;
  }

  /**
   * The reverse pass (VJP) of the segment's linear part: given `rows` cotangent rows per output
   * ([rows, size] float64, row-major; undefined for an output nothing downstream reads), the rows
   * u^T L for each input. The segment is affine, so these do not depend on the mean (still fed as
   * the primal point: the model keeps its primal inputs, though without primal outputs it has no
   * node that reads them). Run in float32, as the forward rows are.
   */
  async vjp(means: Float64Array[], cotangents: (Float64Array | undefined)[], rows: number): Promise<Float64Array[]> {
    if (!this.adjoint) {
      const model = buildAdjointModel(this.graph, { varying: this.inputs, outputs: this.outputs, shapes: this.shapes, primalOutputs: false });
      const weights = moveWeightsToInputs(model.graph, CONV_OPS);
      const session = await ModelSession.create(model.bytes, { threads: this.options.threads, provider: this.options.provider, memoryArena: false });
      this.adjoint = { model, session, weights };
    }
    const { model, session } = this.adjoint;
    const feeds: Record<string, HostTensor> = { ...this.adjoint.weights };
    for (const p of model.primalInputs) {
      const i = this.inputs.indexOf(p.name);
      if (i < 0) throw new NetmomentsError(`internal: the adjoint of ${this.label} reads '${p.name}', which is not a segment input`);
      feeds[p.name] = { type: 'float32', data: Float32Array.from(means[i]), dims: [1, ...this.dims.get(p.name)!] };
    }
    this.outputs.forEach((o, idx) => {
      const size = this.sizes.get(o)!;
      const ct = cotangents[idx];
      feeds[model.cotangentInputs[o]] = {
        type: 'float32',
        data: ct ? Float32Array.from(ct) : new Float32Array(rows * size),
        dims: [rows, ...this.dims.get(o)!],
      };
    });
    const names = this.inputs.map((t) => model.cotangentOutputs[t]);
    const out = await session.run(feeds, names);
    return this.inputs.map((t) => {
      const v = out[model.cotangentOutputs[t]].data as Float32Array;
      const size = this.sizes.get(t)!;
      if (v.length !== rows * size) throw new NetmomentsError(`internal: the adjoint of ${this.label} returned ${v.length} values for ${rows} rows of ${size}`);
      return Float64Array.from(v);
    });
  }

  async release(): Promise<void> {
    await this.session.release();
    if (this.adjoint) await this.adjoint.session.release();
    this.adjoint = undefined;
  }
}
