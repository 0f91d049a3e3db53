/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0), little endian, C order.
 *
 * Layout of a file: the magic "\x93NUMPY", a major and a minor version byte, the header length
 * (uint16 LE in v1, uint32 LE in v2/v3), the header (a Python dict literal, latin-1 in v1/v2 and
 * UTF-8 in v3, padded with spaces and a final '\n'), then the raw array data.
 *
 * Supported dtypes: float32 '<f4', float64 '<f8', uint8 '|u1', int8 '|i1', int32 '<i4', int64 '<i8',
 * bool '|b1'. Big-endian data, Fortran order, structured/object dtypes, truncated data or a malformed
 * header throw a NetmomentsError that names the file.
 */
import { NetmomentsError } from '../errors.js';
import { readFileOrFail, writeFileAtomic } from '../util/files.js';

export type NpyDtype = 'float32' | 'float64' | 'uint8' | 'int8' | 'int32' | 'int64' | 'bool';
export type NpyData = Float32Array | Float64Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  /** C-order data; bool arrays are Uint8Array of 0/1. */
  data: NpyData;
  /** Format version the file was written with (1, 2 or 3). */
  version: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** descr (without byte-order char) -> dtype, and item size. */
const DESCR: Record<string, { dtype: NpyDtype; size: number }> = {
  f4: { dtype: 'float32', size: 4 },
  f8: { dtype: 'float64', size: 8 },
  u1: { dtype: 'uint8', size: 1 },
  i1: { dtype: 'int8', size: 1 },
  i4: { dtype: 'int32', size: 4 },
  i8: { dtype: 'int64', size: 8 },
  b1: { dtype: 'bool', size: 1 },
};

const DTYPE_DESCR: Record<NpyDtype, string> = {
  float32: '<f4',
  float64: '<f8',
  uint8: '|u1',
  int8: '|i1',
  int32: '<i4',
  int64: '<i8',
  bool: '|b1',
};

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Read and parse a .npy file. */
export function readNpy(path: string): NpyArray {
  return parseNpy(readFileOrFail(path), path);
}

/** Parse the bytes of a .npy file; `file` names it in error messages. */
export function parseNpy(bytes: Uint8Array, file?: string): NpyArray {
  const fail = (msg: string, code: 'BAD_INPUT' | 'UNSUPPORTED' = 'BAD_INPUT'): never => {
    throw new NetmomentsError(msg, { file, code });
  };
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    fail('not a NumPy .npy file (bad magic: expected \\x93NUMPY)');
  }
  const major = bytes[6];
  const minor = bytes[7];
  let headerLen: number;
  let headerStart: number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail('truncated .npy header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`, 'UNSUPPORTED');
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) fail(`truncated .npy header: it declares ${headerLen} bytes, the file has ${bytes.length - headerStart}`);
  const headerBytes = bytes.subarray(headerStart, dataStart);
  const header = major === 3 ? new TextDecoder('utf-8', { fatal: false }).decode(headerBytes) : latin1(headerBytes);
  const dict = parseHeader(header, fail);

  const descr = dict.descr;
  if (typeof descr !== 'string') {
    return fail(`unsupported dtype ${describeValue(descr)} (structured dtypes are not supported)`, 'UNSUPPORTED');
  }
  const order = descr[0];
  const code = '<>|='.includes(order) ? descr.slice(1) : descr;
  const info = DESCR[code];
  if (!info) {
    return fail(`unsupported dtype '${descr}' (supported: float32, float64, uint8, int8, int32, int64, bool)`, 'UNSUPPORTED');
  }
  if (order === '>' && info.size > 1) {
    return fail(`big-endian data ('${descr}') is not supported; save it little endian (e.g. arr.astype('<${code}'))`, 'UNSUPPORTED');
  }
  if (dict.fortran_order === true) {
    return fail('Fortran-order arrays are not supported; save a C-order array (np.ascontiguousarray(arr))', 'UNSUPPORTED');
  }
  if (dict.fortran_order !== false) fail(`malformed .npy header: 'fortran_order' must be True or False`);
  const rawShape = dict.shape;
  if (!Array.isArray(rawShape) || rawShape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)) {
    return fail(`malformed .npy header: bad 'shape' ${describeValue(rawShape)}`);
  }
  const shape = rawShape as number[];
  const count = elementCount(shape);
  const need = count * info.size;
  const have = bytes.length - dataStart;
  if (have < need) {
    fail(`truncated .npy data: shape (${shape.join(', ')}) of ${info.dtype} needs ${need} bytes, the file holds ${have}`);
  }
  if (have > need) {
    fail(`the .npy file holds ${have} bytes of data but its header (shape (${shape.join(', ')}) of ${info.dtype}) declares ${need}`);
  }
  // An aligned copy (Buffer.prototype.slice would return a view into Node's shared pool).
  const copy = new Uint8Array(bytes.subarray(dataStart, dataStart + need));
  const buf = copy.buffer;
  let data: NpyData;
  switch (info.dtype) {
    case 'float32':
      data = new Float32Array(buf, 0, count);
      break;
    case 'float64':
      data = new Float64Array(buf, 0, count);
      break;
    case 'int32':
      data = new Int32Array(buf, 0, count);
      break;
    case 'int64':
      data = new BigInt64Array(buf, 0, count);
      break;
    case 'int8':
      data = new Int8Array(buf, 0, count);
      break;
    case 'bool':
      for (let i = 0; i < count; i++) if (copy[i] > 1) fail(`bool array holds the byte ${copy[i]} at element ${i}`);
      data = copy;
      break;
    default:
      data = copy;
  }
  return { dtype: info.dtype, shape: [...shape], data, version: major };
}

export interface EncodeNpyOptions {
  /** Needed only for bool (a Uint8Array of 0/1); otherwise the dtype follows the typed array. */
  dtype?: NpyDtype;
  /** Format version; default 1, or 2 when the header does not fit v1's 65535 bytes. */
  version?: 1 | 2 | 3;
}

export function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  throw new Error('encodeNpy: unsupported array type');
}

/** Encode a C-order array as .npy bytes. */
export function encodeNpy(data: NpyData, shape: readonly number[], options: EncodeNpyOptions = {}): Uint8Array {
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`encodeNpy: bad shape [${shape.join(', ')}]`);
  if (elementCount(shape) !== data.length) {
    throw new Error(`encodeNpy: ${data.length} values for shape [${shape.join(', ')}]`);
  }
  const natural = dtypeOf(data);
  const dtype = options.dtype ?? natural;
  if (dtype !== natural && !(dtype === 'bool' && natural === 'uint8')) {
    throw new Error(`encodeNpy: dtype ${dtype} does not match the ${natural} data`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DTYPE_DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  let version = options.version ?? 1;
  // Pad so that the data starts at a multiple of 64 bytes (what NumPy >= 1.x writes).
  const padded = (prefix: number): string => {
    const total = prefix + dict.length + 1;
    const pad = (64 - (total % 64)) % 64;
    return dict + ' '.repeat(pad) + '\n';
  };
  let header = padded(10);
  if (version === 1 && header.length > 0xffff) version = 2;
  if (version !== 1) header = padded(12);
  const headerBytes = new TextEncoder().encode(header); // ASCII only: identical in latin-1 and UTF-8
  const prefix = version === 1 ? 10 : 12;
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(prefix + headerBytes.length + raw.length);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, headerBytes.length, true);
  else view.setUint32(8, headerBytes.length, true);
  out.set(headerBytes, prefix);
  out.set(raw, prefix + headerBytes.length);
  if (dtype === 'bool') {
    const body = out.subarray(prefix + headerBytes.length);
    for (let i = 0; i < body.length; i++) body[i] = body[i] ? 1 : 0;
  }
  return out;
}

/** Write a .npy file atomically (temporary file + rename). */
export function writeNpy(path: string, data: NpyData, shape: readonly number[], options: EncodeNpyOptions = {}): void {
  writeFileAtomic(path, encodeNpy(data, shape, options));
}

/** The array's values as float32 (int64 through Number). */
export function npyToFloat32(a: NpyArray): Float32Array {
  if (a.data instanceof Float32Array) return a.data;
  if (a.data instanceof BigInt64Array) return Float32Array.from(a.data, (v) => Number(v));
  return Float32Array.from(a.data as ArrayLike<number>);
}

/** The array's values as float64 (int64 through Number). */
export function npyToFloat64(a: NpyArray): Float64Array {
  if (a.data instanceof Float64Array) return a.data;
  if (a.data instanceof BigInt64Array) return Float64Array.from(a.data, (v) => Number(v));
  return Float64Array.from(a.data as ArrayLike<number>);
}

// ---------------------------------------------------------------------------------------------
// Header parsing: a Python dict literal with string keys and values that are strings, booleans,
// integers, tuples/lists of those, or nested dicts/lists (structured dtypes, rejected later).

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

function describeValue(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function parseHeader(text: string, fail: (msg: string) => never): Record<string, PyValue> {
  let pos = 0;
  const bad = (what: string): never => fail(`malformed .npy header (${what}): ${JSON.stringify(text.trim().slice(0, 120))}`);
  const ws = () => {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
  };
  const value = (): PyValue => {
    ws();
    const c = text[pos];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, pos + 1);
      if (end < 0) bad('unterminated string');
      const s = text.slice(pos + 1, end);
      pos = end + 1;
      return s;
    }
    if (c === '{') {
      pos++;
      const obj: Record<string, PyValue> = {};
      for (;;) {
        ws();
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        const k = value();
        if (typeof k !== 'string') bad('non-string key');
        ws();
        if (text[pos] !== ':') bad("expected ':'");
        pos++;
        obj[k as string] = value();
        ws();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== '}') bad("expected ',' or '}'");
      }
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      pos++;
      const arr: PyValue[] = [];
      for (;;) {
        ws();
        if (text[pos] === close) {
          pos++;
          return arr;
        }
        arr.push(value());
        ws();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== close) bad(`expected ',' or '${close}'`);
      }
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(text.slice(pos));
    if (!m) return bad(`unexpected ${JSON.stringify(text.slice(pos, pos + 10))}`);
    pos += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number(m[0].replace('L', ''));
  };
  const v = value();
  ws();
  if (pos !== text.length) bad('trailing characters');
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad('not a dict');
  const dict = v as Record<string, PyValue>;
  for (const key of ['descr', 'fortran_order', 'shape']) if (!(key in dict)) bad(`missing '${key}'`);
  return dict;
}
