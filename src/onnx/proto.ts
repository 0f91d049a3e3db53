/**
 * The ONNX protobuf schema (onnx-proto, which carries ONNX 1.10's onnx.proto) and small builders.
 * Everything else in the code base works on the Graph model of ./graph.ts, not on these objects;
 * builders exist so that the graph model, the tangent-graph builder and the fixture builder make
 * protobuf objects one way.
 */
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
// eslint-disable-next-line @typescript-eslint/no-namespace
export type { onnx as OnnxTypes } from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';

export type ModelProto = O.IModelProto;
export type GraphProto = O.IGraphProto;
export type NodeProto = O.INodeProto;
export type TensorProto = O.ITensorProto;
export type AttributeProto = O.IAttributeProto;
export type ValueInfoProto = O.IValueInfoProto;
export type FunctionProto = O.IFunctionProto;
export type SparseTensorProto = O.ISparseTensorProto;

/** ONNX TensorProto.DataType codes we deal with. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

const DATA_TYPE_NAMES: Record<number, string> = {
  0: 'undefined',
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
};

const INT64_MAX_BIG = 9223372036854775807n;

export function dataTypeName(code: number): string {
  return DATA_TYPE_NAMES[code] ?? `type ${code}`;
}

/** Long | number -> number (ONNX int64 attributes and dims arrive as protobufjs Long objects). */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v && typeof (v as { toNumber: unknown }).toNumber === 'function') {
    return (v as { toNumber(): number }).toNumber();
  }
  if (typeof v === 'string') return Number(v);
  return Number.NaN;
}

export type AttributeValue = number | string | number[] | string[] | TensorProto | GraphProto;

/** Build an AttributeProto from a plain value. Integers become INT(S) unless `floatNames` lists the name. */
export function makeAttribute(name: string, value: AttributeValue, asFloat = false): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    return asFloat || !Number.isInteger(value) ? { name, type: T.FLOAT, f: value } : { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) {
    if (value.length > 0 && typeof value[0] === 'string') {
      return { name, type: T.STRINGS, strings: (value as string[]).map((s) => new TextEncoder().encode(s)) };
    }
    const nums = value as number[];
    return asFloat || nums.some((x) => !Number.isInteger(x)) ? { name, type: T.FLOATS, floats: nums } : { name, type: T.INTS, ints: nums };
  }
  if ('node' in value || 'initializer' in value) return { name, type: T.GRAPH, g: value as GraphProto };
  return { name, type: T.TENSOR, t: value as TensorProto };
}

export interface NodeSpec {
  name?: string;
  domain?: string;
  /** Attributes; values listed in `floatAttributes` are written as FLOAT even when integral. */
  attributes?: Record<string, AttributeValue | undefined>;
  floatAttributes?: string[];
}

export function makeNode(opType: string, inputs: string[], outputs: string[], spec: NodeSpec = {}): NodeProto {
  const attribute: AttributeProto[] = [];
  for (const [k, v] of Object.entries(spec.attributes ?? {})) {
    if (v === undefined) continue;
    attribute.push(makeAttribute(k, v, spec.floatAttributes?.includes(k) ?? false));
  }
  return { opType, input: inputs, output: outputs, name: spec.name ?? outputs[0], domain: spec.domain ?? '', attribute };
}

/**
 * A number read from an int64 tensor, back to int64, saturating: exporters write "to the end" as
 * INT64_MAX (torch's `x[:, 4:]` is a Slice with ends 2^63 - 1), which as a double rounds to 2^63,
 * and BigInt64Array would wrap that to -2^63, turning "to the end" into an empty slice.
 */
export function int64Of(v: number): bigint {
  if (v >= 9223372036854775807) return INT64_MAX_BIG;
  if (v <= -9223372036854775808) return -INT64_MAX_BIG - 1n;
  return BigInt(Math.trunc(v));
}

/** A dense initializer. float32/float64 go to raw_data (little endian), integers to int64_data/int32_data. */
export function makeTensor(name: string, dataType: number, dims: readonly number[], data: ArrayLike<number> | BigInt64Array): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`makeTensor ${name}: ${data.length} values for dims [${dims}]`);
  const t: TensorProto = { name, dataType, dims: [...dims] };
  switch (dataType) {
    case DataType.FLOAT:
      t.rawData = new Uint8Array(Float32Array.from(data as ArrayLike<number>).buffer);
      break;
    case DataType.DOUBLE:
      t.rawData = new Uint8Array(Float64Array.from(data as ArrayLike<number>).buffer);
      break;
    case DataType.INT64: {
      const arr = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data as ArrayLike<number>, int64Of));
      t.rawData = new Uint8Array(arr.buffer.slice(arr.byteOffset, arr.byteOffset + arr.byteLength));
      break;
    }
    case DataType.INT32:
      t.rawData = new Uint8Array(Int32Array.from(data as ArrayLike<number>).buffer);
      break;
    case DataType.UINT8:
      t.rawData = Uint8Array.from(data as ArrayLike<number>);
      break;
    case DataType.BOOL:
      t.rawData = Uint8Array.from(data as ArrayLike<number>, (v) => (v ? 1 : 0));
      break;
    default:
      throw new Error(`makeTensor ${name}: unsupported data type ${dataTypeName(dataType)}`);
  }
  return t;
}

/** A value info; a dim is a number, a symbolic name, or null (unknown). */
export function makeValueInfo(name: string, elemType: number, shape?: readonly (number | string | null)[]): ValueInfoProto {
  const vi: ValueInfoProto = { name, type: { tensorType: { elemType } } };
  if (shape) {
    vi.type!.tensorType!.shape = {
      dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {})),
    };
  }
  return vi;
}

export interface ModelSpec {
  opset?: number;
  producerName?: string;
  producerVersion?: string;
  metadata?: Record<string, string>;
  irVersion?: number;
  /** Extra opset imports besides the default domain. */
  extraOpsets?: { domain: string; version: number }[];
}

/** Highest IR version onnxruntime 1.30 reads and onnx-proto can express (ONNX 1.10 writes IR 8). */
export const DEFAULT_IR_VERSION = 8;
export const DEFAULT_OPSET = 13;

export function makeModel(graph: GraphProto, spec: ModelSpec = {}): ModelProto {
  return {
    irVersion: spec.irVersion ?? DEFAULT_IR_VERSION,
    producerName: spec.producerName ?? 'netmoments',
    producerVersion: spec.producerVersion ?? '',
    opsetImport: [{ domain: '', version: spec.opset ?? DEFAULT_OPSET }, ...(spec.extraOpsets ?? [])],
    graph,
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.fromObject(model as Record<string, unknown>)).finish();
}
