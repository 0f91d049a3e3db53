/**
 * Giving a model a batch axis of 1 at load time, for the two kinds of export whose axis 0 is not
 * the batch of 1 (or symbolic batch) the rest of netmoments expects:
 *
 * - a fixed batch B > 1 (a LeNet exported with dummy input [10, 1, 28, 28]): the input's and the
 *   outputs' leading B becomes 1 and every Reshape constant that leads with B gets a copy that
 *   leads with 1. Only when the data path holds no op that acts across axis 0 (see `acrossAxis0`):
 *   then the rows of a batch are independent inputs and the model at batch 1 computes what the
 *   export computes for each row. The outputs must lead with B too; a model whose outputs do not
 *   is not read as batched.
 * - no batch axis at all (an MLP on x [5] with MatMul(W, x), output [10]): a leading axis is added
 *   to the input and to the outputs that depend on it, and every node on the data path is rewritten
 *   to carry it: elementwise ops as they are (numpy broadcasting aligns the trailing axes),
 *   MatMul(W, x) with a vector x becomes MatMul(x, W^T) (row vectors), Softmax/LogSoftmax/Concat
 *   axes move by one. Any other op on the data path leaves the model as it is.
 *
 * Neither rewrite changes what the model computes for one input; a model neither applies to is
 * left unchanged, and the analysis then says what it needs. The symbolic batch that the analysis
 * runs with comes later (batch.ts makeBatchDynamic).
 */
import type { Graph, GraphNode, ValueInfo } from './graph.js';
import { attrInt, attrInts, freshBatchName, graphConstant } from './graph.js';
import { DataType, makeAttribute } from './proto.js';
import { toIntegers, type TensorValue } from './tensor.js';

/** What normalizeBatchAxis did, for a note to the user; undefined when the model was left as it is. */
export type BatchAxisNote = string | undefined;

function isDefaultDomain(n: GraphNode): boolean {
  return n.domain === '' || n.domain === 'ai.onnx';
}

/** `roots` and every tensor a node computes from them (graph order is topological). */
function dependents(graph: Graph, roots: Iterable<string>): Set<string> {
  const dep = new Set<string>(roots);
  for (const n of graph.nodes) {
    if (n.inputs.some((x) => x && dep.has(x))) for (const o of n.outputs) if (o) dep.add(o);
  }
  return dep;
}

function withAttr(n: GraphNode, name: string, value: number): GraphNode {
  return { ...n, attributes: [...n.attributes.filter((a) => a.name !== name), makeAttribute(name, value)] };
}

/**
 * Give the model's single float data input a batch axis of 1 where its axis 0 is a fixed batch
 * B > 1 or not a batch at all (see the module comment). Rewrites `graph` in place; returns a note
 * saying what it did, or undefined when it left the model as it is.
 */
export function normalizeBatchAxis(graph: Graph): BatchAxisNote {
  const data = graph.dataInputs;
  if (data.length !== 1) return undefined;
  const inp = data[0];
  const shape = inp.shape;
  if (inp.elemType !== DataType.FLOAT || !shape || shape.length === 0) return undefined;
  if (shape.some((d) => typeof d !== 'number' || d <= 0)) return undefined;
  const d0 = shape[0] as number;
  if (d0 === 1) return undefined;
  const dep = dependents(graph, [inp.name]);
  const outs = graph.outputs.filter((o) => dep.has(o.name));
  if (outs.length === 0) return undefined;
  const batchLike = shape.length >= 2 && outs.every((o) => o.shape && o.shape.length > 0 && o.shape[0] === d0);
  if (batchLike) {
    return fixedBatchToOne(graph, inp, d0, dep)
      ? `the model input '${inp.name}' has a fixed batch of ${d0} (${fmt(shape)}); its inputs are analysed one at a time, at batch 1`
      : undefined;
  }
  if (outs.some((o) => !o.shape)) return undefined;
  return addBatchAxis(graph, inp, dep)
    ? `the model input '${inp.name}' ${fmt(shape)} has no batch axis; netmoments added one (input ${fmt([1, ...shape])})`
    : undefined;
}

function fmt(dims: readonly (number | string | null)[]): string {
  return `[${dims.join(', ')}]`;
}

/** An int64 list held by an attribute or (opset >= 13 style) by a constant input. */
function axesOf(graph: Graph, n: GraphNode, inputIndex: number): number[] | undefined {
  const attr = attrInts(n, 'axes');
  if (attr) return attr;
  const name = n.inputs[inputIndex];
  if (!name) return undefined;
  const c = graphConstant(graph, name);
  return c ? toIntegers(c) : undefined;
}

function toIntegersOf(graph: Graph, name: string): number[] | undefined {
  const c = graphConstant(graph, name);
  return c ? toIntegers(c) : undefined;
}

/** Ops whose `axis` attribute names an axis of a data tensor, with the attribute's default. */
function axisDefault(n: GraphNode, opset: number): number | undefined {
  switch (n.opType) {
    case 'Concat':
      return 0; // required; 0 when absent only in malformed files
    case 'Split':
    case 'Gather':
    case 'GatherElements':
    case 'ArgMax':
    case 'ArgMin':
    case 'Compress':
      return 0;
    case 'Softmax':
    case 'LogSoftmax':
    case 'Hardmax':
      return opset >= 13 ? -1 : 1;
    case 'Flatten':
      return 1;
    case 'TopK':
      return -1;
    default:
      return undefined;
  }
}

/**
 * The first node of the data path that acts across axis 0 (so that a fixed axis 0 of B is not a
 * batch of independent rows), or undefined. Negative axes are taken as not 0 (the rank they count
 * from is not tracked here; exports write 0 for the batch axis).
 */
function acrossAxis0(graph: Graph, dep: ReadonlySet<string>, batch: number): GraphNode | undefined {
  for (const n of graph.nodes) {
    const reads = n.inputs.map((x) => !!x && dep.has(x));
    if (!reads.some(Boolean)) continue;
    if (!isDefaultDomain(n) || n.attributes.some((a) => a.g || (a.graphs && a.graphs.length > 0))) return n;
    const axisDef = axisDefault(n, graph.opset);
    if (axisDef !== undefined && attrInt(n, 'axis', axisDef) === 0) return n;
    switch (n.opType) {
      case 'Transpose': {
        const perm = attrInts(n, 'perm');
        if (!perm || perm[0] !== 0) return n;
        break;
      }
      case 'Squeeze':
      case 'Unsqueeze':
      case 'Slice': {
        const axes = axesOf(graph, n, n.opType === 'Slice' ? 3 : 1);
        if (!axes || axes.includes(0)) return n;
        break;
      }
      case 'ReduceSum':
      case 'ReduceMean':
      case 'ReduceMax':
      case 'ReduceMin':
      case 'ReduceProd':
      case 'ReduceL1':
      case 'ReduceL2':
      case 'ReduceLogSumExp':
      case 'ReduceSumSquare': {
        const axes = axesOf(graph, n, 1);
        if (!axes || axes.length === 0 || axes.includes(0)) return n;
        break;
      }
      case 'Gemm':
        // the batch must be the rows of A
        if (!reads[0] || attrInt(n, 'transA', 0) !== 0 || reads[1] || reads[2]) return n;
        break;
      case 'MatMul':
        if (!reads[0]) return n;
        break;
      case 'Reshape': {
        const s = graphConstant(graph, n.inputs[1]);
        if (s) {
          const lead = toIntegers(s)[0];
          if (lead !== batch && lead !== -1 && lead !== 0) return n;
        } else if (
          !dependents(
            graph,
            graph.dataInputs.map((i) => i.name),
          ).has(n.inputs[1])
        )
          return n; // computed from constants only
        break;
      }
      case 'Pad': {
        // pads [x1_begin, x2_begin, ..., x1_end, x2_end, ...]: nothing added along axis 0
        const pads = attrInts(n, 'pads') ?? (n.inputs[1] ? toIntegersOf(graph, n.inputs[1]) : undefined);
        if (!pads || pads[0] !== 0 || pads[pads.length / 2] !== 0) return n;
        break;
      }
      case 'Tile':
      case 'CumSum':
        return n;
      case 'BatchNormalization':
        // in training mode (extra outputs) it pools its statistics over the batch
        if (n.outputs.filter(Boolean).length > 1 || attrInt(n, 'training_mode', 0) !== 0) return n;
        break;
      default:
        break;
    }
    // a constant operand sized for the batch ([B, ...]) ties rows to positions
    for (let i = 0; i < n.inputs.length; i++) {
      if (reads[i] || !n.inputs[i]) continue;
      const c = graphConstant(graph, n.inputs[i]);
      if (
        c &&
        c.dataType === DataType.FLOAT &&
        c.dims.length >= 2 &&
        c.dims[0] === batch &&
        ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Where', 'Sum'].includes(n.opType)
      )
        return n;
    }
  }
  return undefined;
}

/** Fixed batch B -> 1 (see the module comment); false, with `graph` untouched, when it does not apply. */
function fixedBatchToOne(graph: Graph, inp: ValueInfo, batch: number, dep: ReadonlySet<string>): boolean {
  if (acrossAxis0(graph, dep, batch)) return false;
  const newShapes = new Map<GraphNode, TensorValue>();
  for (const n of graph.nodes) {
    if (n.opType !== 'Reshape' || !dep.has(n.inputs[0])) continue;
    const s = graphConstant(graph, n.inputs[1]);
    if (!s) continue;
    const v = toIntegers(s);
    if (v[0] !== batch) continue;
    const name = freshBatchName(graph, n.inputs[1]);
    newShapes.set(n, { name, dataType: DataType.INT64, dims: [v.length], data: BigInt64Array.from([1, ...v.slice(1)], (x) => BigInt(x)) });
  }
  for (const [n, t] of newShapes) {
    graph.initializers.set(t.name, t);
    n.inputs = [n.inputs[0], t.name, ...n.inputs.slice(2)];
  }
  inp.shape = [1, ...inp.shape!.slice(1)];
  graph.outputs = graph.outputs.map((o) => (dep.has(o.name) && o.shape ? { ...o, shape: [1, ...o.shape.slice(1)] } : o));
  graph.valueInfo = new Map();
  return true;
}

const UNARY = new Set([
  'Relu',
  'LeakyRelu',
  'Sigmoid',
  'Tanh',
  'Elu',
  'Selu',
  'Celu',
  'Softplus',
  'Softsign',
  'HardSigmoid',
  'HardSwish',
  'Abs',
  'Neg',
  'Exp',
  'Log',
  'Sqrt',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'Erf',
  'Identity',
  'Dropout',
  'Cast',
  'Clip',
]);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu']);

/**
 * A leading axis for a model whose input has none (see the module comment); false, with `graph`
 * untouched, when some node on the data path is not one the rewrite knows how to carry it through.
 * The ranks of the data tensors (without the new axis) are tracked to tell a vector MatMul operand.
 */
function addBatchAxis(graph: Graph, inp: ValueInfo, dep: ReadonlySet<string>): boolean {
  const rank = new Map<string, number>([[inp.name, inp.shape!.length]]);
  const replaced = new Map<GraphNode, GraphNode>();
  const transposed: TensorValue[] = [];
  for (const n of graph.nodes) {
    const reads = n.inputs.map((x) => !!x && dep.has(x));
    if (!reads.some(Boolean)) continue;
    if (!isDefaultDomain(n)) return false;
    const dataRanks = n.inputs.filter((x, i) => reads[i]).map((x) => rank.get(x));
    if (dataRanks.some((r) => r === undefined)) return false;
    const r0 = Math.max(...(dataRanks as number[]));
    let out: number;
    if (UNARY.has(n.opType)) {
      // Clip's min/max and Dropout's ratio are scalars; only the first input may be data
      if (reads.slice(1).some(Boolean)) return false;
      out = r0;
    } else if (BINARY.has(n.opType)) {
      for (let i = 0; i < n.inputs.length; i++) {
        if (reads[i]) continue;
        const c = graphConstant(graph, n.inputs[i]);
        // a constant of higher rank would broadcast over the new axis instead of beside it
        if (!c || c.dims.length > r0) return false;
      }
      out = r0;
    } else if (n.opType === 'MatMul') {
      if (reads[0] && !reads[1]) {
        const w = graphConstant(graph, n.inputs[1]);
        if (!w || w.dims.length !== 2 || r0 < 1) return false;
        out = r0; // [k] @ [k, m] -> [m]; [..., k] @ [k, m] -> [..., m]: batched rows do the same
      } else if (!reads[0] && reads[1] && r0 === 1) {
        const w = graphConstant(graph, n.inputs[0]);
        if (!w || w.dims.length !== 2 || w.dataType !== DataType.FLOAT) return false;
        // W x with a vector x is x^T W^T: with a batch of rows, MatMul(X, W^T)
        const [m, k] = w.dims;
        const t = new Float32Array(k * m);
        for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) t[j * m + i] = (w.data as Float32Array)[i * k + j];
        const name = freshBatchName(graph, `${n.inputs[0]}_T`);
        transposed.push({ name, dataType: DataType.FLOAT, dims: [k, m], data: t });
        replaced.set(n, { ...n, inputs: [n.inputs[1], name] });
        out = 1;
      } else return false;
    } else if (n.opType === 'Softmax' || n.opType === 'LogSoftmax' || n.opType === 'Concat') {
      const axis = attrInt(n, 'axis', n.opType === 'Concat' ? 0 : graph.opset >= 13 ? -1 : 1);
      if (n.opType === 'Concat' && n.inputs.some((x, i) => !reads[i] && x)) return false;
      if (axis >= 0) replaced.set(n, withAttr(n, 'axis', axis + 1));
      out = r0;
    } else return false;
    for (const o of n.outputs) if (o) rank.set(o, out);
  }
  for (const t of transposed) graph.initializers.set(t.name, t);
  graph.nodes = graph.nodes.map((n) => replaced.get(n) ?? n);
  // the untransposed weights, when nothing else reads them
  const read = new Set(graph.nodes.flatMap((n) => n.inputs));
  for (const [n] of replaced) if (n.opType === 'MatMul' && !read.has(n.inputs[0])) graph.initializers.delete(n.inputs[0]);
  inp.shape = [1, ...inp.shape!];
  graph.outputs = graph.outputs.map((o) => (dep.has(o.name) && o.shape ? { ...o, shape: [1, ...o.shape] } : o));
  graph.valueInfo = new Map();
  return true;
}
