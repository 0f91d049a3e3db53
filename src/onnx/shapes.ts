/**
 * Shapes (and values) of intermediate tensors, by running the model once with the tensors of
 * interest exposed as extra graph outputs (through src/runtime/, the only place that runs models).
 * Static shape inference would need every op's shape rules; one run at the real input gives the
 * real shapes for free, including after Shape/Gather/Concat/Reshape chains.
 */
import { NetmomentsError } from '../errors.js';
import { ModelSession, type HostTensor, type HostTensorType, type SessionOptions } from '../runtime/session.js';
import type { Dim, Graph, ValueInfo } from './graph.js';
import { DataType, dataTypeName } from './proto.js';
import { checkShapeProbe } from '../resources.js';
import { moveWeightsToInputs } from './weightInputs.js';

export interface TensorInfo {
  name: string;
  /** ONNX element type code (1 = float32). */
  elemType: number;
  /** Dims; a dim that follows the batch is the batch symbol (e.g. 'N'). */
  dims: Dim[];
}

const ELEM_TO_HOST: Record<number, HostTensorType> = {
  [DataType.FLOAT]: 'float32',
  [DataType.DOUBLE]: 'float64',
  [DataType.INT64]: 'int64',
  [DataType.INT32]: 'int32',
  [DataType.UINT8]: 'uint8',
  [DataType.BOOL]: 'bool',
};
const HOST_TO_ELEM: Record<string, number> = {
  float32: DataType.FLOAT,
  float64: DataType.DOUBLE,
  int64: DataType.INT64,
  int32: DataType.INT32,
  uint8: DataType.UINT8,
  bool: DataType.BOOL,
  int8: DataType.INT8,
  float16: DataType.FLOAT16,
  uint16: DataType.UINT16,
  int16: DataType.INT16,
  uint32: DataType.UINT32,
  uint64: DataType.UINT64,
  string: DataType.STRING,
};

/** onnxruntime's tensor type name -> ONNX element type code (0 when unknown). */
export function elemTypeOfHost(type: string): number {
  return HOST_TO_ELEM[type] ?? 0;
}

/** The host tensor type for a data input, or an UNSUPPORTED error naming the type. */
export function hostTypeOf(elemType: number, what: string, file?: string): HostTensorType {
  const t = ELEM_TO_HOST[elemType];
  if (!t) {
    throw new NetmomentsError(
      `${what} has element type ${dataTypeName(elemType)}, which netmoments does not feed (float32, float64, int64, int32, uint8, bool)`,
      {
        code: 'UNSUPPORTED',
        file,
      },
    );
  }
  return t;
}

/**
 * Concrete dims to feed an input at a given batch size: axis 0 may be symbolic (it becomes
 * `batch`), every other axis must be fixed.
 */
export function concreteInputDims(v: ValueInfo, batch: number, file?: string): number[] {
  if (!v.shape) throw new NetmomentsError(`input '${v.name}' declares no shape; netmoments needs its dims`, { file });
  return v.shape.map((d, axis) => {
    if (typeof d === 'number') return d;
    if (axis === 0) return batch;
    throw new NetmomentsError(
      `input '${v.name}' has a dynamic dimension ${d === null ? '(unnamed)' : `'${d}'`} at axis ${axis}; only the batch axis (0) may be dynamic`,
      { file },
    );
  });
}

/** Does the input's leading axis follow the batch (symbolic or unknown)? */
export function hasDynamicBatch(v: ValueInfo): boolean {
  return !!v.shape && v.shape.length > 0 && typeof v.shape[0] !== 'number';
}

function zeros(type: HostTensorType, count: number): HostTensor['data'] {
  switch (type) {
    case 'float32':
      return new Float32Array(count);
    case 'float64':
      return new Float64Array(count);
    case 'int64':
      return new BigInt64Array(count);
    case 'int32':
      return new Int32Array(count);
    default:
      return new Uint8Array(count);
  }
}

/** Zeros for every data input, at batch size `batch` for a dynamic leading axis. */
export function zeroFeeds(graph: Graph, batch = 1, file?: string): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const v of graph.dataInputs) {
    const dims = concreteInputDims(v, batch, file);
    const type = hostTypeOf(v.elemType, `input '${v.name}'`, file);
    feeds[v.name] = {
      type,
      dims,
      data: zeros(
        type,
        dims.reduce((a, b) => a * b, 1),
      ),
    };
  }
  return feeds;
}

/** Every tensor a node of the graph produces, in graph order. */
export function producedTensors(graph: Graph): string[] {
  return graph.producedTensors();
}

export interface RunOptions extends SessionOptions {}

/**
 * Run the graph on `feeds` and return its outputs plus the tensors named in `names` ('all': every
 * tensor a node produces). Tensors that are graph inputs come back as fed.
 */
export async function runWithIntermediates(
  graph: Graph,
  feeds: Record<string, HostTensor>,
  names: readonly string[] | 'all',
  options: RunOptions = {},
): Promise<Record<string, HostTensor>> {
  const wanted = names === 'all' ? producedTensors(graph) : [...names];
  const produced = new Set(producedTensors(graph));
  const g = graph.clone();
  const outputNames = new Set(g.outputs.map((o) => o.name));
  for (const name of wanted) {
    if (outputNames.has(name) || !produced.has(name)) continue;
    const vi = g.valueInfo.get(name);
    g.outputs.push({ name, elemType: vi?.elemType ?? 0 });
    g.valueInfo.delete(name);
    outputNames.add(name);
  }
  for (const name of wanted) {
    if (!produced.has(name) && !(name in feeds) && !graph.initializers.has(name)) {
      throw new NetmomentsError(`the model has no tensor named '${name}'`, { file: options.file });
    }
  }
  // a one-run session (a probe) takes the large weights as inputs: not serialized, not copied
  // (./weightInputs.ts; AlexNet's shape probe: 0.6-0.8 CPU s to make with them, 0.06 s without)
  const weights = options.runOnce ? moveWeightsToInputs(g) : {};
  const session = await ModelSession.create(g.toBytes(), options);
  try {
    const result = await session.run({ ...feeds, ...weights });
    for (const name of wanted) if (name in feeds && !(name in result)) result[name] = feeds[name];
    return result;
  } finally {
    await session.release();
  }
}

/**
 * name -> dims of every tensor (data inputs, intermediates, outputs) when the first data input is
 * `input` with dims `inputDims`; other data inputs get zeros at the same batch size.
 */
export async function intermediateShapes(graph: Graph, input: Float32Array, inputDims: number[], options: RunOptions = {}): Promise<Map<string, number[]>> {
  const first = graph.dataInputs[0];
  const feeds = zeroFeeds(graph, inputDims[0] ?? 1, options.file);
  feeds[first.name] = { type: 'float32', data: input, dims: [...inputDims] };
  const result = await runWithIntermediates(graph, feeds, 'all', options);
  const shapes = new Map<string, number[]>();
  for (const [name, t] of Object.entries({ ...feeds, ...result })) shapes.set(name, [...t.dims]);
  return shapes;
}

export interface TensorInfoOptions extends RunOptions {
  /**
   * Called instead of throwing when the run at batch 2 fails (a model that declares a dynamic batch
   * but bakes batch 1 in somewhere): the info then comes from the run at batch 1 alone, every dim a
   * number. inspect uses it to still show such a model; the analysis path needs batches and throws.
   */
  onBatch2Failure?: (message: string) => void;
}

/**
 * Element type and dims of every tensor, from runs at zeros: batch 1, and batch 2 when a data input
 * has a dynamic leading axis; a dim that changes between the two runs is the batch symbol.
 */
export async function tensorInfo(graph: Graph, options: TensorInfoOptions = {}): Promise<Map<string, TensorInfo>> {
  const dynamic = graph.dataInputs.filter(hasDynamicBatch);
  const symbol = dynamic.length > 0 ? dynamicName(dynamic[0]) : 'N';
  checkShapeProbe(graph.dataInputs, options.file);
  const feeds1 = zeroFeeds(graph, 1, options.file);
  const run1 = await runWithIntermediates(graph, feeds1, 'all', options);
  let all2: Record<string, HostTensor> | undefined;
  if (dynamic.length > 0) {
    const feeds2 = zeroFeeds(graph, 2, options.file);
    try {
      all2 = { ...feeds2, ...(await runWithIntermediates(graph, feeds2, 'all', options)) };
    } catch (e) {
      if (!options.onBatch2Failure) throw e;
      options.onBatch2Failure(e instanceof Error ? e.message : String(e));
    }
  }
  const info = new Map<string, TensorInfo>();
  const all1: Record<string, HostTensor> = { ...feeds1, ...run1 };
  for (const [name, t] of Object.entries(all1)) {
    const other = all2?.[name];
    const dims: Dim[] = t.dims.map((d, axis) => (other && other.dims.length === t.dims.length && other.dims[axis] !== d ? symbol : d));
    info.set(name, { name, elemType: elemTypeOfHost(t.type), dims });
  }
  return info;
}

function dynamicName(v: ValueInfo): string {
  const d = v.shape?.[0];
  return typeof d === 'string' && d ? d : 'N';
}

/** Dims without the batch axis (what a split point's "shape" holds). */
export function withoutBatch(dims: readonly Dim[]): Dim[] {
  return dims.slice(1);
}
