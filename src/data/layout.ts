/**
 * The layout rule: how the elements of a data file map onto model inputs.
 *
 *   An input is flattened in C (row-major) order WITHOUT the batch axis: for a model input of
 *   shape [N, 1, 28, 28] one input is the 1*28*28 = 784 elements, whatever shape the file gives
 *   them. Let n be that count. Then
 *     - a file with exactly n elements is ONE input (its own shape does not matter: [784],
 *       [28, 28], [1, 28, 28] and [1, 1, 28, 28] all read the same);
 *     - a file whose leading axis N gives N * n elements (shape [N, ...] with the product of the
 *       remaining axes equal to n) is a BATCH of N inputs, input i being elements i*n .. (i+1)*n-1;
 *     - anything else is an error (exit 2) whose message gives the file's element count, n, and
 *       the expected shapes.
 *
 * Covariances and noise files use the same flattening: a mean or a per-element variance (or
 * standard deviation) is n elements, a covariance is n x n, i.e. any shape with n*n elements
 * whose element (i, j) in C order is Cov(x_i, x_j) for the flattened input x.
 *
 * The model's own input shape names the batch axis: it is axis 0 (symbolic like 'N', unknown, or
 * a fixed number such as 1 in exported models); perInputShape drops it.
 */
import { NetmomentsError } from '../errors.js';

export type ModelDim = number | string | null;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function fmt(shape: readonly (number | string | null)[]): string {
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

/**
 * The shape of one input: the model input's shape without axis 0 (the batch axis). Every other
 * dimension must be a known positive number.
 */
export function perInputShape(modelInputShape: readonly ModelDim[], file?: string, inputName = 'input'): number[] {
  if (modelInputShape.length === 0) {
    throw new NetmomentsError(`model input '${inputName}' is a scalar; expected a batch axis first`, { file, code: 'UNSUPPORTED' });
  }
  const rest = modelInputShape.slice(1);
  if (rest.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d <= 0)) {
    throw new NetmomentsError(
      `model input '${inputName}' has shape ${fmt(modelInputShape)}: every dimension after the batch axis must be a known number`,
      { file, code: 'UNSUPPORTED' },
    );
  }
  return rest as number[];
}

export interface BatchLayout {
  /** Number of inputs in the file. */
  count: number;
  /** Elements per input (n). */
  n: number;
  /** Whether the file was read as a single input (n elements) rather than a batch. */
  single: boolean;
}

/**
 * Apply the layout rule to a file of shape `fileShape` for inputs of shape `inputShape` (without
 * the batch axis). Throws a BAD_INPUT NetmomentsError naming `file` otherwise.
 */
export function batchLayout(fileShape: readonly number[], inputShape: readonly number[], file?: string): BatchLayout {
  const n = elementCount(inputShape);
  const total = elementCount(fileShape);
  if (total === n) return { count: 1, n, single: true };
  if (fileShape.length >= 1 && n > 0 && elementCount(fileShape.slice(1)) === n) {
    return { count: fileShape[0], n, single: false };
  }
  throw new NetmomentsError(
    `holds ${total} elements (shape ${fmt(fileShape)}), which is neither one input of ${n} elements ` +
      `(shape ${fmt(inputShape)}) nor a batch [N, ${inputShape.join(', ')}] of N*${n} elements`,
    { file },
  );
}

/** Input i of a batch laid out by batchLayout (a view, not a copy). */
export function inputAt<T extends Float32Array | Float64Array>(data: T, layout: BatchLayout, i: number): T {
  if (!Number.isInteger(i) || i < 0 || i >= layout.count) throw new RangeError(`input ${i} out of range [0, ${layout.count})`);
  return data.subarray(i * layout.n, (i + 1) * layout.n) as T;
}

/** A vector over the flattened input (a mean, a per-element variance or sigma): exactly n elements. */
export function checkInputVector(fileShape: readonly number[], n: number, what: string, file?: string): void {
  const total = elementCount(fileShape);
  if (total !== n) {
    throw new NetmomentsError(`${what} holds ${total} elements (shape ${fmt(fileShape)}); the model's input has ${n} elements`, {
      file,
    });
  }
}

/** A covariance over the flattened input: n x n (any shape with n*n elements, C order). */
export function checkCovariance(fileShape: readonly number[], n: number, file?: string): void {
  const total = elementCount(fileShape);
  if (total !== n * n) {
    throw new NetmomentsError(
      `a covariance must have n x n = ${n} x ${n} = ${n * n} elements for an input of ${n} elements; ` +
        `this one holds ${total} (shape ${fmt(fileShape)})`,
      { file },
    );
  }
}
