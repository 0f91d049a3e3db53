/**
 * A small graph model over ONNX (after onnx-graphsurgeon's Graph/Node/Tensor): nodes with plain
 * string inputs/outputs, initializers decoded to typed arrays, indexed lookups (producer and
 * consumers of a tensor, node by name, position in graph order), topological order, one data-flow
 * traversal (walk) with the subgraph extraction built on it (between), and conversion back to a
 * ModelProto. Nothing outside src/onnx/ needs protobuf objects.
 */
import { NetmomentsError } from '../errors.js';
import {
  DataType,
  makeModel,
  makeTensor,
  onnx,
  toNumber,
  type AttributeProto,
  type GraphProto,
  type FunctionProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto.js';
import { isSplitPoint } from './ops/splitPoint.js';
import { decodeTensor, type TensorValue } from './tensor.js';

export type Dim = number | string | null;

export interface ValueInfo {
  name: string;
  /** ONNX element type code (1 = float32). */
  elemType: number;
  /** undefined when the model gives no shape at all. */
  shape?: Dim[];
}

export interface GraphNode {
  name: string;
  opType: string;
  domain: string;
  /** '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attributes: AttributeProto[];
}

export interface OpsetImport {
  domain: string;
  version: number;
}

/** Lookups over a node list, built once per list (Graph.index). */
interface GraphIndex {
  /** The node list they were built from, and its length then (a push or splice changes it). */
  nodes: readonly GraphNode[];
  length: number;
  producer: Map<string, GraphNode>;
  consumers: Map<string, GraphNode[]>;
  byName: Map<string, GraphNode>;
  position: Map<GraphNode, number>;
}

/** Which way Graph.walk follows the data: 'down' to the nodes that read, 'up' to the nodes that produce. */
export type WalkDirection = 'up' | 'down';

export interface WalkOptions {
  /** Nodes the walk neither visits nor passes through (e.g. the split ReLU, or the other side of a cut). */
  stop?: (node: GraphNode) => boolean;
  /** The tensors a node reads (default its inputs; split.ts adds what its subgraph bodies read from outside). */
  reads?: (node: GraphNode) => readonly string[];
}

export interface Walk {
  /** The nodes reached, in graph order. */
  nodes: GraphNode[];
  /** The start tensors and every tensor reached: outputs of the nodes reached ('down') or their inputs ('up'). */
  tensors: Set<string>;
}

export class Graph {
  name = 'graph';
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  /**
   * Nodes in graph order (topological once the loader has sorted them; walk relies on it). Edit by
   * replacing the array or adding and removing nodes, not by changing a node's inputs or outputs
   * in place: the lookups are rebuilt when the array or its length changes.
   */
  nodes: GraphNode[] = [];
  initializers = new Map<string, TensorValue>();
  /** value_info entries of the model (intermediate shapes), by name. */
  valueInfo = new Map<string, ValueInfo>();
  opsetImports: OpsetImport[] = [{ domain: '', version: 13 }];
  irVersion = 8;
  producerName = '';
  producerVersion = '';
  metadata: Record<string, string> = {};
  /** ModelProto.doc_string, domain and model_version (kept when the model is written back). */
  docString = '';
  modelDomain = '';
  modelVersion = 0;
  /** Model-local functions (ModelProto.functions), passed through unchanged. */
  functions: FunctionProto[] = [];

  /** Opset version of the default (ai.onnx) domain. */
  get opset(): number {
    return this.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 1;
  }

  /** Graph inputs that are not initializers (ONNX IR < 4 lists initializers as inputs too). */
  get dataInputs(): ValueInfo[] {
    return this.inputs.filter((i) => !this.initializers.has(i.name));
  }

  // an ES private field: not enumerable, so structural comparisons of graphs ignore it
  #cachedIndex: GraphIndex | undefined;

  /** The lookups of the current node list, built on first use after the list changed. */
  private index(): GraphIndex {
    const c = this.#cachedIndex;
    if (c && c.nodes === this.nodes && c.length === this.nodes.length) return c;
    const index: GraphIndex = {
      nodes: this.nodes,
      length: this.nodes.length,
      producer: new Map(),
      consumers: new Map(),
      byName: new Map(),
      position: new Map(),
    };
    this.nodes.forEach((n, i) => {
      index.position.set(n, i);
      if (!index.byName.has(n.name)) index.byName.set(n.name, n);
      for (const o of n.outputs) if (o) index.producer.set(o, n);
      for (const x of new Set(n.inputs)) {
        if (!x) continue;
        const list = index.consumers.get(x);
        if (list) list.push(n);
        else index.consumers.set(x, [n]);
      }
    });
    this.#cachedIndex = index;
    return index;
  }

  /** The node that produces `tensor` (undefined for inputs, initializers and unknown names). */
  producerOf(tensor: string): GraphNode | undefined {
    return this.index().producer.get(tensor);
  }

  /** The nodes that read `tensor` as an input, in graph order. */
  consumersOf(tensor: string): GraphNode[] {
    return [...(this.index().consumers.get(tensor) ?? [])];
  }

  /** The (first) node named `name`. */
  node(name: string): GraphNode | undefined {
    return this.index().byName.get(name);
  }

  /** A node's position in graph order (-1 when it is not a node of this graph). */
  positionOf(node: GraphNode): number {
    return this.index().position.get(node) ?? -1;
  }

  /** Every tensor a node produces, in graph order. */
  producedTensors(): string[] {
    const out: string[] = [];
    for (const n of this.nodes) for (const o of n.outputs) if (o) out.push(o);
    return out;
  }

  /** The nodes a model can be split at (ops/splitPoint.ts: the Relu nodes), in graph order: the split point's "index". */
  relus(): GraphNode[] {
    return this.nodes.filter((n) => isSplitPoint(n.opType, n.domain));
  }

  /**
   * Follow the data from the tensors `from`, in one pass over the nodes in graph order ('down') or
   * in reverse ('up'), which is the transitive closure because graph order is topological. 'down'
   * reaches every node that reads a reached tensor (its outputs are reached); 'up' every node that
   * produces one (its inputs are reached). Omitted optional inputs and outputs ('') are never reached.
   */
  walk(from: Iterable<string>, direction: WalkDirection, options: WalkOptions = {}): Walk {
    const { stop, reads = (n: GraphNode) => n.inputs } = options;
    const tensors = new Set<string>(from);
    const nodes: GraphNode[] = [];
    if (direction === 'down') {
      for (const n of this.nodes) {
        if (stop?.(n) || !reads(n).some((x) => x && tensors.has(x))) continue;
        nodes.push(n);
        for (const o of n.outputs) if (o) tensors.add(o);
      }
      return { nodes, tensors };
    }
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      if (stop?.(n) || !n.outputs.some((o) => o && tensors.has(o))) continue;
      nodes.push(n);
      for (const x of reads(n)) if (x) tensors.add(x);
    }
    return { nodes: nodes.reverse(), tensors };
  }

  /**
   * The nodes between the tensors `inputs` and `outputs`, in graph order: what computes the outputs
   * from the inputs (and from initializers, constants and any other tensor the outputs need). A node
   * that produces one of `inputs` lies above the cut and is left out.
   */
  between(inputs: Iterable<string>, outputs: Iterable<string>): GraphNode[] {
    const cut = new Set(inputs);
    return this.walk(outputs, 'up', { stop: (n) => n.outputs.some((o) => o && cut.has(o)) }).nodes;
  }

  /**
   * The nodes in a topological order (stable: keeps the file's order where it is already valid).
   * Throws on a cycle or on an input that nothing produces.
   */
  topologicalOrder(file?: string): GraphNode[] {
    const available = new Set<string>(['', ...this.inputs.map((i) => i.name), ...this.initializers.keys()]);
    const remaining = [...this.nodes];
    const sorted: GraphNode[] = [];
    while (remaining.length > 0) {
      const before = remaining.length;
      for (let i = 0; i < remaining.length;) {
        const n = remaining[i];
        if (n.inputs.every((x) => available.has(x))) {
          sorted.push(n);
          for (const o of n.outputs) available.add(o);
          remaining.splice(i, 1);
        } else i++;
      }
      if (remaining.length === before) {
        const n = remaining[0];
        const missing = n.inputs.filter((x) => !available.has(x));
        throw new NetmomentsError(
          `node '${n.name || n.opType}' reads ${missing.map((m) => `'${m}'`).join(', ')}, which no node, input or initializer produces (or the graph has a cycle)`,
          { file },
        );
      }
    }
    return sorted;
  }

  /** Put the nodes in topological order (topologicalOrder). */
  sortTopologically(file?: string): void {
    this.nodes = this.topologicalOrder(file);
  }

  /** Shallow structural copy (initializer data shared). */
  clone(): Graph {
    const g = new Graph();
    g.name = this.name;
    g.inputs = this.inputs.map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined }));
    g.outputs = this.outputs.map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined }));
    g.nodes = this.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attributes: [...n.attributes] }));
    g.initializers = new Map(this.initializers);
    g.valueInfo = new Map(this.valueInfo);
    g.opsetImports = this.opsetImports.map((o) => ({ ...o }));
    g.irVersion = this.irVersion;
    g.producerName = this.producerName;
    g.producerVersion = this.producerVersion;
    g.metadata = { ...this.metadata };
    g.docString = this.docString;
    g.modelDomain = this.modelDomain;
    g.modelVersion = this.modelVersion;
    g.functions = [...this.functions];
    return g;
  }

  /** Drop nodes and initializers that no output depends on, and the inputs that listed those initializers. */
  prune(): void {
    const { nodes, tensors: needed } = this.walk(
      this.outputs.map((o) => o.name),
      'up',
    );
    this.nodes = nodes;
    // inputs first, while the initializers still say which inputs are initializers (IR 3 lists
    // them as inputs too): a dropped initializer must not stay behind as a data input
    this.inputs = this.inputs.filter((i) => needed.has(i.name) || !this.initializers.has(i.name));
    for (const name of [...this.initializers.keys()]) if (!needed.has(name)) this.initializers.delete(name);
  }

  toModelProto(): ModelProto {
    const initializer: TensorProto[] = [...this.initializers.values()].map(encodeTensorValue);
    const graph: GraphProto = {
      name: this.name,
      node: this.nodes.map(nodeToProto),
      input: this.inputs.map(valueInfoToProto),
      output: this.outputs.map(valueInfoToProto),
      initializer,
      valueInfo: [...this.valueInfo.values()].map(valueInfoToProto),
    };
    const def = this.opsetImports.find((o) => o.domain === '' || o.domain === 'ai.onnx');
    const model = makeModel(graph, {
      opset: def?.version ?? 13,
      irVersion: this.irVersion,
      producerName: this.producerName,
      producerVersion: this.producerVersion,
      metadata: this.metadata,
      extraOpsets: this.opsetImports.filter((o) => o !== def),
    });
    if (this.docString) model.docString = this.docString;
    if (this.modelDomain) model.domain = this.modelDomain;
    if (this.modelVersion) model.modelVersion = this.modelVersion;
    if (this.functions.length > 0) model.functions = this.functions;
    return model;
  }

  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(onnx.ModelProto.fromObject(this.toModelProto() as Record<string, unknown>)).finish();
  }
}

function encodeTensorValue(t: TensorValue): TensorProto {
  if (t.data instanceof BigInt64Array) return makeTensor(t.name, DataType.INT64, t.dims, t.data);
  const dt = t.dataType === DataType.BOOL ? DataType.BOOL : t.dataType;
  if (dt === DataType.INT8) {
    return { name: t.name, dataType: dt, dims: t.dims, rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice() };
  }
  if (dt === DataType.FLOAT && t.data instanceof Float32Array && t.data.length === t.dims.reduce((a, b) => a * b, 1)) {
    // a view, not a copy: toBytes encodes at once, and a copy of every weight (0.5 GB for VGG-11)
    // would only be garbage afterwards (makeTensor's Float32Array.from has the same byte order)
    return { name: t.name, dataType: dt, dims: t.dims, rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  }
  return makeTensor(t.name, dt, t.dims, t.data as ArrayLike<number>);
}

function nodeToProto(n: GraphNode): NodeProto {
  return { name: n.name, opType: n.opType, domain: n.domain, input: n.inputs, output: n.outputs, attribute: n.attributes };
}

/** A ValueInfo as protobuf; elemType 0 with no shape writes no type at all (onnxruntime infers it). */
export function valueInfoToProto(v: ValueInfo): ValueInfoProto {
  if (v.elemType === 0 && !v.shape) return { name: v.name };
  const vi: ValueInfoProto = { name: v.name, type: { tensorType: { elemType: v.elemType } } };
  if (v.shape) {
    vi.type!.tensorType!.shape = {
      dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {})),
    };
  }
  return vi;
}

export function valueInfoFromProto(vi: ValueInfoProto): ValueInfo {
  const tt = vi.type?.tensorType;
  const shape = tt?.shape
    ? (tt.shape.dim ?? []).map((d): Dim => {
        if (d.dimValue !== undefined && d.dimValue !== null && (d.dimParam === undefined || d.dimParam === null || d.dimParam === '')) {
          const v = toNumber(d.dimValue);
          return v > 0 ? v : null;
        }
        return d.dimParam ? d.dimParam : null;
      })
    : undefined;
  return { name: vi.name ?? '', elemType: tt?.elemType ?? 0, shape };
}

export interface GraphFromProtoOptions {
  file?: string;
  /** Resolves external-data tensors (see load.ts). */
  external?: (t: TensorProto) => Uint8Array;
}

export function graphFromModelProto(model: ModelProto, options: GraphFromProtoOptions = {}): Graph {
  const gp = model.graph;
  if (!gp) throw new NetmomentsError('the file holds no graph (is it an ONNX model?)', { file: options.file });
  const g = new Graph();
  g.name = gp.name || 'graph';
  g.irVersion = toNumber(model.irVersion ?? 8);
  g.producerName = model.producerName ?? '';
  g.producerVersion = model.producerVersion ?? '';
  g.opsetImports = (model.opsetImport ?? []).map((o) => ({ domain: o.domain ?? '', version: toNumber(o.version ?? 1) }));
  if (g.opsetImports.length === 0) g.opsetImports = [{ domain: '', version: 1 }];
  for (const p of model.metadataProps ?? []) if (p.key) g.metadata[p.key] = p.value ?? '';
  g.docString = model.docString ?? '';
  g.modelDomain = model.domain ?? '';
  g.modelVersion = toNumber(model.modelVersion ?? 0) || 0;
  g.functions = [...(model.functions ?? [])];
  for (const t of gp.initializer ?? []) {
    const v = decodeTensor(t, options.external);
    g.initializers.set(v.name, v);
  }
  g.inputs = (gp.input ?? []).map(valueInfoFromProto);
  g.outputs = (gp.output ?? []).map(valueInfoFromProto);
  for (const vi of gp.valueInfo ?? []) {
    const v = valueInfoFromProto(vi);
    g.valueInfo.set(v.name, v);
  }
  g.nodes = (gp.node ?? []).map((n, i) => ({
    name: n.name || `${n.opType ?? 'node'}_${i}`,
    opType: n.opType ?? '',
    domain: n.domain ?? '',
    inputs: [...(n.input ?? [])],
    outputs: [...(n.output ?? [])],
    attributes: [...(n.attribute ?? [])],
  }));
  return g;
}

// ---------------------------------------------------------------------------------------------
// Attribute access

function findAttr(node: GraphNode, name: string): AttributeProto | undefined {
  return node.attributes.find((a) => a.name === name);
}

export function hasAttr(node: GraphNode, name: string): boolean {
  return findAttr(node, name) !== undefined;
}

export function attrInt(node: GraphNode, name: string, fallback: number): number {
  const a = findAttr(node, name);
  return a && a.i !== undefined && a.i !== null ? toNumber(a.i) : fallback;
}

export function attrFloat(node: GraphNode, name: string, fallback: number): number {
  const a = findAttr(node, name);
  return a && a.f !== undefined && a.f !== null ? a.f : fallback;
}

export function attrInts(node: GraphNode, name: string): number[] | undefined {
  const a = findAttr(node, name);
  return a ? (a.ints ?? []).map(toNumber) : undefined;
}

export function attrFloats(node: GraphNode, name: string): number[] | undefined {
  const a = findAttr(node, name);
  return a ? [...(a.floats ?? [])] : undefined;
}

export function attrString(node: GraphNode, name: string, fallback: string): string {
  const a = findAttr(node, name);
  return a && a.s ? new TextDecoder().decode(a.s) : fallback;
}

export function attrTensor(node: GraphNode, name: string): TensorValue | undefined {
  const a = findAttr(node, name);
  return a?.t ? decodeTensor(a.t) : undefined;
}

/** Does this node hold a subgraph (If/Loop/Scan bodies)? */
export function hasSubgraph(node: GraphNode): boolean {
  return node.attributes.some((a) => a.g || (a.graphs && a.graphs.length > 0));
}

/** Value of a Constant node (value, value_float(s), value_int(s)). */
export function constantNodeValue(n: GraphNode): TensorValue | undefined {
  const name = n.outputs[0];
  const t = attrTensor(n, 'value');
  if (t) return { ...t, name };
  const ints = attrInts(n, 'value_ints');
  if (ints) return { name, dataType: DataType.INT64, dims: [ints.length], data: BigInt64Array.from(ints, (v) => BigInt(v)) };
  if (n.attributes.some((a) => a.name === 'value_int')) {
    return { name, dataType: DataType.INT64, dims: [], data: BigInt64Array.from([BigInt(attrInt(n, 'value_int', 0))]) };
  }
  if (n.attributes.some((a) => a.name === 'value_float')) {
    return { name, dataType: DataType.FLOAT, dims: [], data: Float32Array.from([attrFloat(n, 'value_float', 0)]) };
  }
  const floats = n.attributes.find((a) => a.name === 'value_floats');
  if (floats) return { name, dataType: DataType.FLOAT, dims: [floats.floats?.length ?? 0], data: Float32Array.from(floats.floats ?? []) };
  return undefined;
}

/** A tensor name the graph does not use yet (no initializer, input or node output): `base__batch`, else `base__batch1`, `base__batch2`, ... */
export function freshBatchName(graph: Graph, base: string): string {
  const taken = new Set<string>([...graph.initializers.keys(), ...graph.inputs.map((i) => i.name)]);
  for (const n of graph.nodes) for (const o of n.outputs) taken.add(o);
  let name = `${base}__batch`;
  for (let i = 1; taken.has(name); i++) name = `${base}__batch${i}`;
  return name;
}

/** Value of a tensor known without running the graph: an initializer or a Constant node's output. */
export function graphConstant(graph: Graph, name: string): TensorValue | undefined {
  const init = graph.initializers.get(name);
  if (init) return init;
  const p = graph.producerOf(name);
  return p && p.opType === 'Constant' ? constantNodeValue(p) : undefined;
}
