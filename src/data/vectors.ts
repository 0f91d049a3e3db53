/**
 * Vectors over one model input read from .npy files: a noise variance or mean, a noise covariance,
 * a perturbation, a linearization point. Each is checked against the input's n elements and its
 * values against what the float32 model can take; every error is one line naming the file.
 */
import { NetmomentsError } from '../errors.js';
import { readFileOrFail } from '../util/files.js';
import { checkCovariance, checkInputVector } from './layout.js';
import { npyToFloat32, npyToFloat64, parseNpy, type NpyArray } from './npy.js';

/** The largest finite float32, (2 - 2^-23) 2^127. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** Every value finite and within the float32 range: the model runs in float32, so nothing else can be fed or sampled. */
function checkFloat32Range(v: Float64Array, what: string, file: string): Float64Array {
  for (let i = 0; i < v.length; i++) {
    if (!(Math.abs(v[i]) <= FLOAT32_MAX)) throw new NetmomentsError(`${what} holds ${v[i]} at element ${i}, not a finite float32 value`, { file });
  }
  return v;
}

/** A .npy of one input's n elements (any shape holding n), parsed from `bytes` (default: the file's). */
function inputNpy(path: string, n: number, what: string, bytes: Uint8Array = readFileOrFail(path)): NpyArray {
  const a = parseNpy(bytes, path);
  checkInputVector(a.shape, n, what, path);
  return a;
}

/** A per-element vector (`what`: 'the noise variance', 'the noise mean') of n finite float32 values, as float64. */
export function readInputVector(path: string, n: number, what: string): Float64Array {
  return checkFloat32Range(npyToFloat64(inputNpy(path, n, what)), what, path);
}

/** A full noise covariance: n x n finite float32 values (any shape holding n^2, C order), as float64. */
export function readCovariance(path: string, n: number): Float64Array {
  const a = parseNpy(readFileOrFail(path), path);
  checkCovariance(a.shape, n, path);
  return checkFloat32Range(npyToFloat64(a), 'the noise covariance', path);
}

/** A perturbation of n finite values (model input units), added to every input. */
export function readPerturbation(path: string, n: number): Float64Array {
  const p = npyToFloat64(inputNpy(path, n, 'the perturbation'));
  for (let i = 0; i < p.length; i++)
    if (!Number.isFinite(p[i])) throw new NetmomentsError(`the perturbation holds a non-finite value at element ${i}`, { file: path });
  return p;
}

/** A linearization point of n finite float32 values from the bytes of the .npy at `path`. */
export function parseLinearizationPoint(bytes: Uint8Array, path: string, n: number): Float32Array {
  const a = inputNpy(path, n, 'the linearization point', bytes);
  const at = npyToFloat32(a);
  const bad = at.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new NetmomentsError(`the linearization point holds a value that is not a finite float32 (${npyToFloat64(a)[bad]} at element ${bad})`, {
      file: path,
    });
  }
  return at;
}

/** Is this readable .npy of dtype uint8 (raw pixels, to which image preprocessing applies)? False when it cannot be read. */
export function isUint8Npy(path: string): boolean {
  try {
    return parseNpy(readFileOrFail(path), path).dtype === 'uint8';
  } catch {
    return false;
  }
}
