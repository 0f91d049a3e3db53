/**
 * Emits the nodes and initializers of a tangent model. Rules call it; it knows the opset and writes
 * the opset-correct form of every helper op (Slice, Squeeze, Unsqueeze, ReduceSum take attributes
 * or inputs depending on the opset), hands out fresh names, and memoizes the small shape
 * computations that many rules share (Shape of a primal tensor, the batch-k shape of a tangent).
 */
import { constantNodeValue, type Graph, type GraphNode } from '../graph.js';

export { constantNodeValue };
import { DataType, int64Of, makeAttribute, type AttributeProto, type AttributeValue } from '../proto.js';
import { elementCount, type TensorValue } from '../tensor.js';

const INT64_MAX = 9223372036854775807n;

export type Attrs = Record<string, AttributeValue | undefined>;

export class TangentBuilder {
  readonly nodes: GraphNode[] = [];
  readonly initializers = new Map<string, TensorValue>();
  readonly opset: number;
  private readonly used = new Set<string>();
  private readonly memo = new Map<string, string>();
  private readonly constants = new Map<string, TensorValue>();
  private kvecName: string | undefined;

  constructor(
    private readonly graph: Graph,
    private readonly shapes?: ReadonlyMap<string, readonly number[]>,
  ) {
    this.opset = graph.opset;
    for (const i of graph.inputs) this.used.add(i.name);
    for (const o of graph.outputs) this.used.add(o.name);
    for (const k of graph.initializers.keys()) this.used.add(k);
    for (const n of graph.nodes) {
      this.used.add(n.name);
      for (const x of [...n.inputs, ...n.outputs]) if (x) this.used.add(x);
      if (n.opType === 'Constant' && n.outputs[0]) {
        const v = constantNodeValue(n);
        if (v) this.constants.set(n.outputs[0], v);
      }
    }
  }

  /** A name no tensor or node of the model uses yet. */
  fresh(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_.:/-]/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Emit a node; `outputs` is a count (fresh names) or explicit names. Returns the output names. */
  emit(opType: string, inputs: string[], outputs: number | string[] = 1, attrs: Attrs | AttributeProto[] = {}, floatAttrs: string[] = []): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(`tan_${opType}`)) : outputs;
    const attributes: AttributeProto[] = Array.isArray(attrs)
      ? attrs
      : Object.entries(attrs)
          .filter((e): e is [string, AttributeValue] => e[1] !== undefined)
          .map(([k, v]) => makeAttribute(k, v, floatAttrs.includes(k)));
    this.nodes.push({ name: this.fresh(`tan_${opType}_node`), opType, domain: '', inputs, outputs: outs, attributes });
    return outs;
  }

  /** Emit a single-output node and return its output name. */
  op(opType: string, inputs: string[], attrs: Attrs | AttributeProto[] = {}, floatAttrs: string[] = []): string {
    return this.emit(opType, inputs, 1, attrs, floatAttrs)[0];
  }

  /** Copy of a primal node's attributes, minus `drop`. */
  attrsOf(node: GraphNode, drop: string[] = []): AttributeProto[] {
    return node.attributes.filter((a) => !drop.includes(a.name ?? ''));
  }

  // -------------------------------------------------------------------------------------------
  // Constants

  private constant(kind: 'f' | 'i', values: readonly number[], dims: readonly number[]): string {
    const key = `const:${kind}:${dims.join(',')}:${values.join(',')}`;
    const hit = this.memo.get(key);
    if (hit) return hit;
    const name = this.fresh(kind === 'f' ? 'tan_const_f' : 'tan_const_i');
    const data = kind === 'f' ? Float32Array.from(values) : BigInt64Array.from(values, int64Of);
    this.initializers.set(name, { name, dataType: kind === 'f' ? DataType.FLOAT : DataType.INT64, dims: [...dims], data });
    this.memo.set(key, name);
    return name;
  }

  /** float32 initializer. */
  floats(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant('f', values, dims);
  }
  /** float32 scalar (rank 0). */
  scalar(v: number): string {
    return this.constant('f', [v], []);
  }
  /** int64 initializer (1-D by default). */
  ints(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant('i', values, dims);
  }
  private int64Max(): string {
    const key = 'const:i64max';
    const hit = this.memo.get(key);
    if (hit) return hit;
    const name = this.fresh('tan_const_i64max');
    this.initializers.set(name, { name, dataType: DataType.INT64, dims: [1], data: BigInt64Array.from([INT64_MAX]) });
    this.memo.set(key, name);
    return name;
  }

  /** An initializer of the same dims as `like`, filled with zeros (float32). */
  zerosInitializer(like: TensorValue): string {
    return this.floats(new Array<number>(elementCount(like.dims)).fill(0), like.dims);
  }

  /** Value of a tensor known at build time: an initializer or the output of a Constant node. */
  constantValue(name: string): TensorValue | undefined {
    if (!name) return undefined;
    return this.graph.initializers.get(name) ?? this.constants.get(name);
  }

  /** Integer values of a build-time constant, or undefined. */
  constantInts(name: string): number[] | undefined {
    const v = this.constantValue(name);
    if (!v) return undefined;
    return Array.from(v.data as ArrayLike<number | bigint>, (x) => Number(x));
  }

  /** Static shape of a primal tensor (batch 1), when known. */
  shape(name: string): readonly number[] | undefined {
    const s = this.shapes?.get(name);
    if (s) return s;
    const c = this.constantValue(name);
    if (c) return c.dims;
    const inp = this.graph.inputs.find((i) => i.name === name);
    if (inp?.shape && inp.shape.slice(1).every((d) => typeof d === 'number')) {
      return [1, ...(inp.shape.slice(1) as number[])];
    }
    return undefined;
  }

  rank(name: string): number | undefined {
    return this.shape(name)?.length;
  }

  // -------------------------------------------------------------------------------------------
  // Shape helpers (memoized)

  /** Set by the driver: the 1-D int64 tensor [k] read from the first tangent input. */
  setBatchSource(tangentInput: string): void {
    this.kvecName = this.slice1d(this.op('Shape', [tangentInput]), 0, 1);
  }

  /** [k] as a 1-D int64 tensor. */
  kvec(): string {
    if (!this.kvecName) throw new Error('tangent builder: batch source not set');
    return this.kvecName;
  }

  shapeOf(primal: string): string {
    const key = `shape:${primal}`;
    let s = this.memo.get(key);
    if (!s) {
      s = this.op('Shape', [primal]);
      this.memo.set(key, s);
    }
    return s;
  }

  /**
   * Shape of a primal tensor without its leading (batch) entry: a constant where the static shapes
   * give it (the per-sample dims do not change from run to run), else read from the primal at run
   * time. The constant leaves no node that reads the primal only for its shape: an adjoint model
   * without primal outputs (reverse.ts) then drops a Conv or Gemm whose output a Flatten reshapes.
   */
  tailShape(primal: string): string {
    const key = `tail:${primal}`;
    let s = this.memo.get(key);
    if (!s) {
      const known = this.shape(primal);
      s =
        known && known.length > 0 && known.every((d) => Number.isInteger(d) && d >= 0)
          ? this.ints(known.slice(1))
          : this.slice1d(this.shapeOf(primal), 1, undefined);
      this.memo.set(key, s);
    }
    return s;
  }

  /** [k, ...shape(primal)[1:]]: the shape of the tangent of `primal`. */
  batchShape(primal: string): string {
    const key = `bshape:${primal}`;
    let s = this.memo.get(key);
    if (!s) {
      s = this.op('Concat', [this.kvec(), this.tailShape(primal)], { axis: 0 });
      this.memo.set(key, s);
    }
    return s;
  }

  /** Reshape a tangent to the tangent shape of `primal` (same per-sample elements, row-major). */
  reshapeLike(t: string, primal: string): string {
    return this.op('Reshape', [t, this.batchShape(primal)]);
  }

  /** Zero tangent of `primal`: shape [k, ...]. */
  zerosLike(primal: string): string {
    this.requireOpset(8, 'Expand');
    return this.op('Expand', [this.scalar(0), this.batchShape(primal)]);
  }

  /**
   * Broadcast a tangent `t` (of primal `from`, or of the broadcast of several primals) to the shape
   * of primal `to` (for Add/Sub/Sum, where a constant operand takes no part in the tangent but can
   * still widen the output). A no-op when the static shapes say it is one.
   */
  expandLike(t: string, from: string | string[], to: string): string {
    const froms = Array.isArray(from) ? from : [from];
    const c = this.shape(to);
    const shapes = froms.map((f) => this.shape(f));
    if (c && shapes.every((s) => s !== undefined)) {
      const b = broadcastShapes(shapes as (readonly number[])[]);
      if (b && b.length === c.length && b.every((d, i) => i === 0 || d === c[i])) return t;
    }
    this.requireOpset(8, 'Expand');
    return this.op('Expand', [t, this.shapeOf(to)]);
  }

  /** Float mask (1 where x > 0, else 0) of a primal tensor: ReLU'(x) with ReLU'(0) = 0. */
  positiveMask(x: string): string {
    return this.floatMask(this.op('Greater', [x, this.scalar(0)]));
  }

  /** bool -> float32. */
  floatMask(b: string): string {
    return this.op('Cast', [b], { to: DataType.FLOAT });
  }

  /** 1-D slice [start, end) of a 1-D int64 tensor (end undefined: to the end). */
  slice1d(x: string, start: number, end: number | undefined): string {
    if (this.opset < 10) {
      return this.op('Slice', [x], { axes: [0], starts: [start], ends: [end ?? 2147483647] });
    }
    return this.op('Slice', [x, this.ints([start]), end === undefined ? this.int64Max() : this.ints([end]), this.ints([0])]);
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.opset < 13 ? this.op('Unsqueeze', [x], { axes }) : this.op('Unsqueeze', [x, this.ints(axes)]);
  }

  squeeze(x: string, axes: number[]): string {
    return this.opset < 13 ? this.op('Squeeze', [x], { axes }) : this.op('Squeeze', [x, this.ints(axes)]);
  }

  reduceSum(x: string, axes: number[], keepdims: boolean): string {
    return this.opset < 13
      ? this.op('ReduceSum', [x], { axes, keepdims: keepdims ? 1 : 0 })
      : this.op('ReduceSum', [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  requireOpset(min: number, what: string): void {
    if (this.opset < min) throw new OpsetTooOld(`${what} needs opset ${min}, the model has opset ${this.opset}`);
  }
}

/** Thrown by helpers that need a newer opset; the driver reports it as an unsupported rule. */
export class OpsetTooOld extends Error {}

/** numpy-style broadcast of static shapes; undefined when they do not broadcast. */
export function broadcastShapes(shapes: readonly (readonly number[])[]): number[] | undefined {
  const r = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(r).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = r - s.length + i;
      if (s[i] === out[j] || s[i] === 1) continue;
      if (out[j] === 1) out[j] = s[i];
      else return undefined;
    }
  }
  return out;
}
