/** Small helpers the experiment commands share (argument checks, JSON numbers, summary digits). */
import { NetmomentsError } from '../errors.js';

/** A whole number >= min from an option, or a one-line usage error naming the option. */
export function wholeNumber(name: string, v: unknown, min: number): number {
  const x = Number(v);
  if (!(Number.isInteger(x) && x >= min)) throw new NetmomentsError(`--${name} must be a whole number >= ${min}, got ${String(v)}`, { code: 'BAD_USAGE' });
  return x;
}

/** A count of Monte Carlo samples: 0 (none) or a whole number of at least 2 (a variance needs two), or a one-line usage error. */
export function sampleCount(name: string, v: unknown): number {
  const x = wholeNumber(name, v, 0);
  if (x === 1) throw new NetmomentsError(`--${name} must be 0 or a whole number >= 2 (a variance needs two samples), got 1`, { code: 'BAD_USAGE' });
  return x;
}

/** A finite number in [lo, hi] (open bounds when lo/hiOpen), or a one-line usage error. */
export function numberIn(name: string, v: unknown, lo: number, hi: number, open: { lo?: boolean; hi?: boolean } = {}): number {
  const x = Number(v);
  const okLo = open.lo ? x > lo : x >= lo;
  const okHi = open.hi ? x < hi : x <= hi;
  if (!(Number.isFinite(x) && okLo && okHi)) {
    const range = `${open.lo ? '(' : '['}${lo}, ${hi}${open.hi ? ')' : ']'}`;
    throw new NetmomentsError(`--${name} must be a number in ${range}, got ${String(v)}`, { code: 'BAD_USAGE' });
  }
  return x;
}

/**
 * Indices start .. start + count - 1 of a dataset of `size` (count default: to the end); an error
 * naming the data file when they do not fit.
 */
export function firstIndices(size: number, count: number | undefined, file: string, start = 0): number[] {
  if (start >= size && size > 0) throw new NetmomentsError(`--start ${start} is past the last input (the data holds ${size})`, { file, code: 'BAD_USAGE' });
  const c = count ?? size - start;
  if (start + c > size)
    throw new NetmomentsError(`--start ${start} --count ${c} asks for more inputs than the data holds (${size})`, { file, code: 'BAD_USAGE' });
  return Array.from({ length: c }, (_, i) => start + i);
}

/**
 * Indices start .. start + runs - 1 of a dataset of `size`, fewer (with a warning) where the data
 * ends first; a usage error naming the data file when start is past its end.
 */
export function runIndices(size: number, runs: number, start: number, file: string, warn: (m: string) => void): number[] {
  if (start >= size) throw new NetmomentsError(`--start ${start} is past the last input (the data holds ${size})`, { file, code: 'BAD_USAGE' });
  let r = runs;
  if (start + r > size) {
    warn(`--runs ${runs} from input ${start} but ${file} holds ${size} inputs: running ${size - start}`);
    r = size - start;
  }
  return Array.from({ length: r }, (_, k) => start + k);
}

/** JSON.stringify that turns typed arrays into arrays and non-finite numbers into null. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(
    value,
    (_k, v) => {
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
      if (typeof v === 'number' && !Number.isFinite(v)) return null;
      return v;
    },
    2,
  )}\n`;
}

/** n significant digits for summaries. */
export function sig(v: number, n = 3): string {
  return Number.isFinite(v) ? Number(v.toPrecision(n)).toString() : 'n/a';
}
