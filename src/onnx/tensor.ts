/**
 * Initializers as typed arrays. raw_data is copied before it is viewed as Float32Array etc.:
 * protobufjs hands out views into the file buffer at arbitrary byte offsets, which typed arrays
 * of wider elements cannot alias.
 */
import { NetmomentsError } from '../errors.js';
import { DataType, dataTypeName, toNumber, type TensorProto } from './proto.js';

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

export interface TensorValue {
  name: string;
  dataType: number;
  dims: number[];
  data: TensorData;
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

const BYTES_PER_ELEMENT: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.DOUBLE]: 8,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.BOOL]: 1,
};

export function bytesPerElement(dataType: number): number | undefined {
  return BYTES_PER_ELEMENT[dataType];
}

function fromBytes(dataType: number, bytes: Uint8Array, count: number): TensorData {
  // An aligned copy. Not bytes.slice(): protobufjs hands out Node Buffers, whose slice() is a view
  // into the (pooled) file buffer, so copy.buffer would start somewhere else entirely.
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  switch (dataType) {
    case DataType.FLOAT:
      return new Float32Array(copy.buffer, 0, count);
    case DataType.DOUBLE:
      return new Float64Array(copy.buffer, 0, count);
    case DataType.INT64:
      return new BigInt64Array(copy.buffer, 0, count);
    case DataType.INT32:
      return new Int32Array(copy.buffer, 0, count);
    case DataType.INT8:
      return new Int8Array(copy.buffer, 0, count);
    case DataType.UINT8:
    case DataType.BOOL:
      return new Uint8Array(copy.buffer, 0, count);
    default:
      throw new NetmomentsError(`tensor data type ${dataTypeName(dataType)} is not supported`, { code: 'UNSUPPORTED' });
  }
}

/**
 * Decode a TensorProto. `external` resolves external-data initializers to their bytes (the loader
 * checks paths, offsets and lengths); without it such tensors are an error.
 */
export function decodeTensor(t: TensorProto, external?: (t: TensorProto) => Uint8Array): TensorValue {
  const name = t.name ?? '';
  const dataType = t.dataType ?? 0;
  const dims = (t.dims ?? []).map(toNumber);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new NetmomentsError(`initializer '${name}' has invalid dims [${dims.join(', ')}]`);
  }
  const count = elementCount(dims);
  const width = BYTES_PER_ELEMENT[dataType];
  if (width === undefined) {
    throw new NetmomentsError(`initializer '${name}' has data type ${dataTypeName(dataType)}, which is not supported`, {
      code: 'UNSUPPORTED',
    });
  }
  let raw: Uint8Array | undefined;
  if (t.dataLocation === 1 /* EXTERNAL */) {
    if (!external) throw new NetmomentsError(`initializer '${name}' uses external data, which cannot be resolved here`);
    raw = external(t);
  } else if (t.rawData && t.rawData.length > 0) {
    raw = t.rawData;
  }
  if (raw) {
    if (raw.length !== count * width) {
      throw new NetmomentsError(
        `initializer '${name}' declares ${count} elements of ${dataTypeName(dataType)} (${count * width} bytes) but holds ${raw.length} bytes`,
      );
    }
    return { name, dataType, dims, data: fromBytes(dataType, raw, count) };
  }
  let data: TensorData;
  switch (dataType) {
    case DataType.FLOAT:
      data = Float32Array.from(t.floatData ?? []);
      break;
    case DataType.DOUBLE:
      data = Float64Array.from(t.doubleData ?? []);
      break;
    case DataType.INT64:
      data = BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(toNumber(v))));
      break;
    case DataType.INT32:
      data = Int32Array.from(t.int32Data ?? []);
      break;
    case DataType.INT8:
      data = Int8Array.from(t.int32Data ?? []);
      break;
    default:
      data = Uint8Array.from(t.int32Data ?? []);
  }
  if (data.length !== count) {
    throw new NetmomentsError(`initializer '${name}' declares ${count} elements but holds ${data.length}`);
  }
  return { name, dataType, dims, data };
}

/** Numeric view of any tensor as float64 (int64 via Number). */
export function toFloat64(t: TensorValue): Float64Array {
  if (t.data instanceof Float64Array) return t.data;
  if (t.data instanceof BigInt64Array) return Float64Array.from(t.data, (v) => Number(v));
  return Float64Array.from(t.data as ArrayLike<number>);
}

/** Integer values of a (shape-like) tensor. */
export function toIntegers(t: TensorValue): number[] {
  return Array.from(toFloat64(t));
}
