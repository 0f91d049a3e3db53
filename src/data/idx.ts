/**
 * MNIST idx files (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a
 * type byte (0x08 = unsigned byte, the only type MNIST uses and the only one read here), the
 * number of dimensions, one uint32 per dimension, then the data in C order.
 * Images are idx3 (magic 0x00000803, [N, rows, cols]); labels are idx1 (magic 0x00000801, [N]).
 * A gzip-compressed file (.gz, as distributed) is inflated first.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { NetmomentsError } from '../errors.js';
import { readFileOrFail, writeFileAtomic } from '../util/files.js';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

const UBYTE = 0x08;

/** The bytes, gunzipped when they start with the gzip magic (1f 8b); `path` names the file in errors. */
export function maybeGunzip(bytes: Uint8Array, path: string): Uint8Array {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      return gunzipSync(bytes);
    } catch (e) {
      throw new NetmomentsError(`corrupt gzip data: ${(e as Error).message}`, { file: path, cause: e });
    }
  }
  return bytes;
}

/** A file's bytes, gunzipped when gzipped. */
function readBytes(path: string): Uint8Array {
  return maybeGunzip(readFileOrFail(path), path);
}

/** Parse idx bytes (already inflated). `ndim`, when given, is the required number of dimensions. */
export function parseIdx(bytes: Uint8Array, file?: string, ndim?: number): IdxArray {
  const fail = (msg: string, code: 'BAD_INPUT' | 'UNSUPPORTED' = 'BAD_INPUT'): never => {
    throw new NetmomentsError(msg, { file, code });
  };
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    fail('not an idx file (bad magic: expected two zero bytes, a type byte and a dimension count)');
  }
  if (bytes[2] !== UBYTE) {
    fail(`idx data type 0x${bytes[2].toString(16).padStart(2, '0')} is not supported (only 0x08, unsigned byte)`, 'UNSUPPORTED');
  }
  const dims = bytes[3];
  if (ndim !== undefined && dims !== ndim) {
    const magic = `0x000008${dims.toString(16).padStart(2, '0')}`;
    fail(
      `expected an idx${ndim} file (magic 0x0000080${ndim}, ${ndim === 3 ? 'images [N, rows, cols]' : ndim === 1 ? 'labels [N]' : `${ndim} dims`}), found magic ${magic} with ${dims} dimension(s)`,
    );
  }
  if (dims === 0) fail('idx file declares 0 dimensions');
  const headerLen = 4 + 4 * dims;
  if (bytes.length < headerLen) fail(`truncated idx header: ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < dims; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const have = bytes.length - headerLen;
  if (have < count) fail(`truncated idx data: shape [${shape.join(', ')}] needs ${count} bytes, the file holds ${have}`);
  if (have > count) fail(`the idx file holds ${have} bytes of data but its header (shape [${shape.join(', ')}]) declares ${count}`);
  return { shape, data: new Uint8Array(bytes.subarray(headerLen)) }; // a copy, not a view into a Buffer pool
}

/** Any ubyte idx file. */
export function readIdx(path: string): IdxArray {
  return parseIdx(readBytes(path), path);
}

/** MNIST images: idx3 [N, rows, cols] of raw pixels 0..255. */
export function readIdxImages(path: string): IdxArray {
  return parseIdx(readBytes(path), path, 3);
}

/** MNIST labels: idx1 [N] of class indices. */
export function readIdxLabels(path: string): IdxArray {
  return parseIdx(readBytes(path), path, 1);
}

/** Encode ubyte data as an idx file. */
export function encodeIdx(data: Uint8Array, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`encodeIdx: ${data.length} values for shape [${shape.join(', ')}]`);
  if (shape.length === 0 || shape.length > 255) throw new Error('encodeIdx: 1 to 255 dimensions');
  const out = new Uint8Array(4 + 4 * shape.length + data.length);
  out[2] = UBYTE;
  out[3] = shape.length;
  const view = new DataView(out.buffer);
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * shape.length);
  return out;
}

/** Write an idx file atomically; a path ending in .gz is gzip-compressed. */
export function writeIdx(path: string, data: Uint8Array, shape: readonly number[]): void {
  const bytes = encodeIdx(data, shape);
  writeFileAtomic(path, path.endsWith('.gz') ? gzipSync(bytes) : bytes);
}
