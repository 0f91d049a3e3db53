/**
 * Making the batch dimension dynamic. Exported models often fix batch 1 (a torch export without
 * dynamic_axes), and onnxruntime then refuses any other batch size. The rewrite:
 *
 * - every data input's leading dim becomes the symbol 'N' (an existing symbol is kept);
 * - model outputs that depend on the input get 'N' as leading dim when it was 1;
 * - value_info entries (intermediate shapes recorded at batch 1) are dropped;
 * - Reshape nodes whose data depends on the input and whose target shape is a constant with leading
 *   1 get a new shape constant: leading -1 when no other -1 is present (valid with or without
 *   allowzero); leading 0 ("copy dim 0 of the input") when another -1 is present and allowzero is 0;
 *   with allowzero = 1 and another -1, the other dims are made explicit from the shapes at batch 1
 *   (options.shapes) and the leading dim becomes -1.
 *
 * Shape -> Gather -> Concat -> Reshape chains already follow the real shape and are left alone.
 * Other constants that bake the batch in (Expand, Tile, ConstantOfShape shapes) are not rewritten;
 * docs/ONNX.md says so.
 */
import { NetmomentsError } from '../errors.js';
import type { Graph, GraphNode } from './graph.js';
import { attrInt, attrTensor } from './graph.js';
import { DataType } from './proto.js';
import { toIntegers, type TensorValue } from './tensor.js';

export interface BatchDynamicOptions {
  /** The batch symbol (default 'N'). */
  symbol?: string;
  /** Tensor dims at batch 1 (shapes.ts intermediateShapes): needed only for allowzero Reshapes that hold a -1. */
  shapes?: ReadonlyMap<string, readonly number[]>;
  file?: string;
}

function constantValue(graph: Graph, name: string): TensorValue | undefined {
  const init = graph.initializers.get(name);
  if (init) return init;
  const p = graph.producerOf(name);
  if (p && p.opType === 'Constant') return attrTensor(p, 'value');
  return undefined;
}

function freshName(graph: Graph, base: string): string {
  const taken = new Set<string>([...graph.initializers.keys(), ...graph.inputs.map((i) => i.name)]);
  for (const n of graph.nodes) for (const o of n.outputs) taken.add(o);
  let name = `${base}__batch`;
  for (let i = 1; taken.has(name); i++) name = `${base}__batch${i}`;
  return name;
}

/** A copy of `graph` that accepts any batch size (see the module comment for what is rewritten). */
export function makeBatchDynamic(graph: Graph, options: BatchDynamicOptions = {}): Graph {
  const symbol = options.symbol ?? 'N';
  const g = graph.clone();
  const batched = new Set<string>();
  g.inputs = g.inputs.map((inp) => {
    if (g.initializers.has(inp.name) || !inp.shape || inp.shape.length === 0) return inp;
    const d0 = inp.shape[0];
    if (d0 === 1 || d0 === null || typeof d0 === 'string') {
      batched.add(inp.name);
      return { ...inp, shape: [typeof d0 === 'string' && d0 ? d0 : symbol, ...inp.shape.slice(1)] };
    }
    return inp;
  });
  // Tensors that depend on a batched input.
  const dep = new Set<string>(batched);
  for (const n of g.nodes) {
    if (n.inputs.some((x) => x && dep.has(x))) for (const o of n.outputs) if (o) dep.add(o);
  }
  const replaced: GraphNode[] = [];
  const oldShapes = new Set<string>();
  g.nodes = g.nodes.map((n) => {
    if (n.opType !== 'Reshape' || (n.domain !== '' && n.domain !== 'ai.onnx')) return n;
    if (n.inputs.length < 2 || !dep.has(n.inputs[0])) return n;
    const shapeName = n.inputs[1];
    const value = constantValue(g, shapeName);
    if (!value) return n; // computed at run time (Shape/Gather/Concat): follows the batch already
    const s = toIntegers(value);
    if (s.length === 0 || s[0] !== 1) return n;
    const allowzero = attrInt(n, 'allowzero', 0) === 1;
    let next: number[];
    if (!s.slice(1).includes(-1)) next = [-1, ...s.slice(1)];
    else if (!allowzero) next = [0, ...s.slice(1)];
    else {
      const out = options.shapes?.get(n.outputs[0]);
      if (!out || out.length !== s.length || out.includes(0)) {
        throw new NetmomentsError(
          `Reshape '${n.name}' fixes batch 1 with allowzero=1 and a -1 elsewhere; pass the shapes at batch 1 to make the batch dynamic`,
          { file: options.file, code: 'UNSUPPORTED' },
        );
      }
      next = [-1, ...out.slice(1)];
    }
    const name = freshName(g, shapeName);
    g.initializers.set(name, { name, dataType: DataType.INT64, dims: [next.length], data: BigInt64Array.from(next, (x) => BigInt(x)) });
    oldShapes.add(shapeName);
    const producer = g.producerOf(shapeName);
    if (producer) replaced.push(producer);
    return { ...n, inputs: [n.inputs[0], name, ...n.inputs.slice(2)] };
  });
  // Drop Constant nodes that fed only rewritten Reshapes.
  for (const c of replaced) {
    if (c.outputs.every((o) => g.consumersOf(o).length === 0 && !g.outputs.some((x) => x.name === o))) {
      g.nodes = g.nodes.filter((n) => n !== c);
    }
  }
  // Drop old shape initializers that nothing reads any more.
  const read = new Set<string>();
  for (const n of g.nodes) for (const x of n.inputs) read.add(x);
  for (const name of oldShapes) {
    if (g.initializers.has(name) && !read.has(name) && !g.inputs.some((i) => i.name === name) && !g.outputs.some((o) => o.name === name)) {
      g.initializers.delete(name);
    }
  }
  g.outputs = g.outputs.map((o) =>
    dep.has(o.name) && o.shape && o.shape.length > 0 && (o.shape[0] === 1 || o.shape[0] === null)
      ? { ...o, shape: [symbol, ...o.shape.slice(1)] }
      : o,
  );
  g.valueInfo = new Map();
  return g;
}
