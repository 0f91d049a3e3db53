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
 *
 * Image layout (imageGeometry): where an input's rows, columns and channels are, for what works
 * on image axes (noise windows, sliding-window sensitivity, attack pictures, PNG decoding). For a
 * per-input shape (no batch axis):
 *   - rank 0 or 1 ([100]): not an image;
 *   - rank 2 [H, W]: an image with one channel (both layouts read it the same);
 *   - rank 3 [a, b, c], `auto`: channels-last [H, W, C] when c is 1, 3 or 4 and a is not
 *     ([28, 28, 1], [32, 32, 3]); otherwise channels-first [C, H, W] ([1, 28, 28], [3, 32, 32],
 *     and also [16, 20, 20], a feature map with 16 channels);
 *   - rank 4 and more, `auto`: channels-first, every axis before the last two counting as channels;
 *   - `chw` / `hwc` (the --layout option) override the rule: rows and columns are the last two axes
 *     (chw), or the two before the last (hwc, the last being the channels).
 * An input is a `picture` (it can be drawn, or read from a PNG) when it has one plane of 1, 3 or 4
 * channels; a 16-channel feature map has windows but no picture. The model's metadata layout
 * (`netmoments.preprocessing`) is not consulted: exporters and model surgery copy it unchanged.
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
    throw new NetmomentsError(`model input '${inputName}' has shape ${fmt(modelInputShape)}: every dimension after the batch axis must be a known number`, {
      file,
      code: 'UNSUPPORTED',
    });
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
      `a covariance must have n x n = ${n} x ${n} = ${n * n} elements for an input of ${n} elements; ` + `this one holds ${total} (shape ${fmt(fileShape)})`,
      { file },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Image layout

/** How an image input's axes are ordered: channels-first [C, H, W] or channels-last [H, W, C]. */
export type ImageLayout = 'chw' | 'hwc';
/** The --layout option: the shape rule ('auto') or an explicit layout. */
export type LayoutChoice = 'auto' | ImageLayout;
export const LAYOUT_CHOICES: readonly LayoutChoice[] = ['auto', 'chw', 'hwc'];

/** Where the rows, columns and channels of an image input are (see the module comment). */
export interface ImageGeometry {
  layout: ImageLayout;
  /** Whether the layout came from the shape rule or from the user's --layout. */
  chosen: 'auto' | 'option';
  height: number;
  width: number;
  /** Channels per pixel: channels-first, the product of the axes before the rows; channels-last, the last axis. */
  channels: number;
  /** Channels-last only: the product of the axes before the rows (1 for [H, W, C]); 1 for channels-first. */
  planes: number;
  /** One plane of 1, 3 or 4 channels: can be drawn, or read from a PNG. */
  picture: boolean;
}

const CHANNEL_COUNTS = new Set([1, 3, 4]);

/** The layout the shape rule picks for a per-input shape of rank >= 2. */
function autoLayout(shape: readonly number[]): ImageLayout {
  if (shape.length !== 3) return 'chw';
  return CHANNEL_COUNTS.has(shape[2]) && !CHANNEL_COUNTS.has(shape[0]) ? 'hwc' : 'chw';
}

/**
 * The image geometry of a per-input shape under `choice` (default 'auto'), or undefined when the
 * input is not an image (rank 0 or 1).
 */
export function imageGeometry(shape: readonly number[], choice: LayoutChoice = 'auto'): ImageGeometry | undefined {
  const k = shape.length;
  if (k < 2) return undefined;
  const chosen = choice === 'auto' ? 'auto' : 'option';
  const layout = choice === 'auto' ? autoLayout(shape) : choice;
  if (k === 2) return { layout, chosen, height: shape[0], width: shape[1], channels: 1, planes: 1, picture: true };
  if (layout === 'chw') {
    const channels = elementCount(shape.slice(0, -2));
    return { layout, chosen, height: shape[k - 2], width: shape[k - 1], channels, planes: 1, picture: CHANNEL_COUNTS.has(channels) };
  }
  const planes = elementCount(shape.slice(0, -3));
  const channels = shape[k - 1];
  return { layout, chosen, height: shape[k - 3], width: shape[k - 2], channels, planes, picture: planes === 1 && CHANNEL_COUNTS.has(channels) };
}

/** The flat (C-order) index of channel c, row i, column j of an image (plane 0). */
export function pixelIndex(g: ImageGeometry, c: number, i: number, j: number): number {
  return g.layout === 'chw' ? (c * g.height + i) * g.width + j : (i * g.width + j) * g.channels + c;
}

/** Words for messages: "[28, 28, 1], channels-last, rows x columns 28x28". */
export function describeGeometry(shape: readonly number[], g: ImageGeometry): string {
  const how = shape.length === 2 ? 'one channel' : g.layout === 'chw' ? 'channels-first' : 'channels-last';
  return `${fmt(shape)}, ${how}${g.chosen === 'option' ? ` (--layout ${g.layout})` : ''}, rows x columns ${g.height}x${g.width}`;
}

/**
 * The image geometry, or a BAD_USAGE error naming `file` (the model) that says `what` needs an
 * image input.
 */
export function requireImageGeometry(shape: readonly number[], choice: LayoutChoice, what: string, file?: string): ImageGeometry {
  const g = imageGeometry(shape, choice);
  if (!g) {
    throw new NetmomentsError(
      `${what} needs an image input ([C, H, W], [H, W, C] or [H, W] without the batch axis); the model's input has shape ${fmt(shape)}`,
      { file, code: 'BAD_USAGE' },
    );
  }
  return g;
}

/** The order PNG pixels are written in for an input of this shape: its layout, or channels-first for a non-image (flat) input unless --layout says otherwise. */
export function pngLayoutFor(shape: readonly number[] | undefined, choice: LayoutChoice = 'auto'): ImageLayout {
  const g = shape ? imageGeometry(shape, choice) : undefined;
  return g ? g.layout : choice === 'auto' ? 'chw' : choice;
}

/** Parse a --layout value. */
export function parseLayoutChoice(text: string | undefined): LayoutChoice {
  if (text === undefined) return 'auto';
  if ((LAYOUT_CHOICES as readonly string[]).includes(text)) return text as LayoutChoice;
  throw new NetmomentsError(`--layout must be auto, chw or hwc, got '${text}'`, { code: 'BAD_USAGE' });
}
