/**
 * Preprocessing from stored values to model units:
 *
 *   model = (x - mean[c]) / std[c] * scale + offset      (mean 0 and std 1 when not given)
 *
 * What x is depends on the source: for images (PNG, JPEG, idx, and uint8 .npy, all raw pixels) x is
 * the pixel divided by its maximum (255 for 8-bit), so x is in [0, 1]; for float .npy files x is the
 * stored value. c is the pixel's channel. `mean`/`std` are torchvision's Normalize(mean, std) after
 * ToTensor (x in [0, 1]); one value applies to every channel. The bundled LeNet takes pixel - 127.5:
 * scale 255, offset -127.5, which its ONNX metadata records under `netmoments.preprocessing` (read
 * by preprocessingFromMetadata).
 */
import { NetmomentsError } from '../errors.js';

export interface Preprocessing {
  scale: number;
  offset: number;
  /** Per-channel mean of x (one value, or one per channel); absent: 0. */
  mean?: readonly number[];
  /** Per-channel standard deviation of x (one value, or one per channel); absent: 1. */
  std?: readonly number[];
}

export const IDENTITY: Preprocessing = { scale: 1, offset: 0 };

/** The metadata_props key a model uses to state its expected preprocessing. */
export const PREPROCESSING_KEY = 'netmoments.preprocessing';

/** The metadata_props keys read for per-channel normalization, besides `netmoments.preprocessing`'s "mean"/"std". */
export const MEAN_KEYS = ['mean', 'image_mean'] as const;
export const STD_KEYS = ['std', 'image_std'] as const;
/** The metadata_props keys read for the model's class names, in this order. */
export const CLASS_NAME_KEYS = ['netmoments.classes', 'class_names', 'classes', 'names'] as const;

export interface ModelPreprocessing extends Preprocessing {
  /** 'NCHW' or 'NHWC' when the model says so. */
  layout?: string;
  /** Free text describing the units (e.g. "pixel in [0,255] minus 127.5"). */
  source?: string;
}

/**
 * The preprocessing a model declares in its metadata (`netmoments.preprocessing`, a JSON object
 * with numeric "scale" and "offset"), or undefined when it declares none.
 */
export function preprocessingFromMetadata(metadata: Record<string, string>, file?: string): ModelPreprocessing | undefined {
  const text = metadata[PREPROCESSING_KEY];
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new NetmomentsError(`metadata '${PREPROCESSING_KEY}' is not valid JSON: ${text.slice(0, 80)}`, { file });
  }
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== 'object' || typeof o.scale !== 'number' || typeof o.offset !== 'number' || !Number.isFinite(o.scale) || !Number.isFinite(o.offset)) {
    throw new NetmomentsError(`metadata '${PREPROCESSING_KEY}' needs numeric "scale" and "offset": ${text.slice(0, 80)}`, { file });
  }
  const out: ModelPreprocessing = { scale: o.scale, offset: o.offset };
  if (typeof o.layout === 'string') out.layout = o.layout;
  if (typeof o.source === 'string') out.source = o.source;
  if (o.mean !== undefined) out.mean = numberList(o.mean, `metadata '${PREPROCESSING_KEY}' "mean"`, file);
  if (o.std !== undefined) out.std = numberList(o.std, `metadata '${PREPROCESSING_KEY}' "std"`, file);
  return out;
}

/** A list of finite numbers from a JSON array, a JSON number, or comma-separated text. */
function numberList(v: unknown, what: string, file?: string): number[] {
  let list: unknown = v;
  if (typeof v === 'string') {
    const t = v.trim();
    try {
      list = t.startsWith('[') ? JSON.parse(t) : t.split(',').map((s) => (s.trim() === '' ? NaN : Number(s)));
    } catch {
      list = undefined;
    }
  } else if (typeof v === 'number') list = [v];
  if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new NetmomentsError(`${what} must be a list of numbers, got ${String(typeof v === 'string' ? v : JSON.stringify(v)).slice(0, 80)}`, { file });
  }
  return list as number[];
}

/**
 * Per-channel normalization a model declares in its metadata_props: `netmoments.preprocessing`'s
 * "mean"/"std", else the keys "mean"/"std" or "image_mean"/"image_std" (a JSON array or
 * comma-separated numbers, in units of x = pixel/255); each side undefined when not declared.
 */
export function normalizationFromMetadata(metadata: Record<string, string>, file?: string): { mean?: number[]; std?: number[] } {
  const declared = preprocessingFromMetadata(metadata, file);
  const read = (keys: readonly string[], fromJson: readonly number[] | undefined): number[] | undefined => {
    if (fromJson) return [...fromJson];
    const key = keys.find((k) => metadata[k] !== undefined);
    return key === undefined ? undefined : numberList(metadata[key], `metadata '${key}'`, file);
  };
  return { mean: read(MEAN_KEYS, declared?.mean), std: read(STD_KEYS, declared?.std) };
}

/**
 * The class names a model declares in its metadata_props (the first of CLASS_NAME_KEYS present):
 * a JSON array of names (index = position), or a mapping from index to name as JSON
 * ({"0": "cat"}) or as a Python dict literal ({0: 'cat', 1: 'dog'}, what Ultralytics writes);
 * undefined when none is declared.
 */
export function classNamesFromMetadata(metadata: Record<string, string>, file?: string): string[] | undefined {
  const key = CLASS_NAME_KEYS.find((k) => metadata[k] !== undefined);
  if (key === undefined) return undefined;
  const text = metadata[key].trim();
  const fail = (): never => {
    throw new NetmomentsError(`metadata '${key}' is neither a JSON array of class names nor an index -> name mapping: ${text.slice(0, 80)}`, { file });
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    // a Python dict literal {0: 'person', 1: 'bicycle'}
    const entries = [...text.matchAll(/(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")/g)];
    if (!text.startsWith('{') || entries.length === 0) return fail();
    v = Object.fromEntries(entries.map((m) => [m[1], m[2] ?? m[3]]));
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const pairs = Object.entries(v as Record<string, unknown>);
    const names: string[] = [];
    for (const [k, name] of pairs) {
      if (!/^\d+$/.test(k) || typeof name !== 'string') return fail();
      names[Number(k)] = name;
    }
    if (names.length !== pairs.length) return fail(); // indices with gaps
    return names;
  }
  return fail();
}

/** Check that a user-given preprocessing is usable (finite numbers, scale not 0, std > 0). */
export function checkPreprocessing(p: Preprocessing): Preprocessing {
  if (!Number.isFinite(p.scale) || !Number.isFinite(p.offset) || p.scale === 0) {
    throw new NetmomentsError(`bad preprocessing: scale ${p.scale}, offset ${p.offset} (need finite numbers, scale != 0)`, {
      code: 'BAD_USAGE',
    });
  }
  if (p.mean && (p.mean.length === 0 || p.mean.some((v) => !Number.isFinite(v)))) {
    throw new NetmomentsError(`bad preprocessing: mean ${p.mean.join(',')} (need finite numbers)`, { code: 'BAD_USAGE' });
  }
  if (p.std && (p.std.length === 0 || p.std.some((v) => !(Number.isFinite(v) && v > 0)))) {
    throw new NetmomentsError(`bad preprocessing: std ${p.std.join(',')} (need finite numbers > 0)`, { code: 'BAD_USAGE' });
  }
  // mean and std are in units of x = pixel/255: pixel-unit values (123.675, 58.395) would give
  // inputs hundreds of times off, so they are refused rather than guessed
  if (p.mean?.some((v) => v < 0 || v > 1) || p.std?.some((v) => v > 1)) {
    throw new NetmomentsError(
      `bad preprocessing: mean ${(p.mean ?? [0]).join(',')}, std ${(p.std ?? [1]).join(',')}: they are in units of pixel/255 (mean in [0, 1], std <= 1); divide pixel-unit values by 255`,
      { code: 'BAD_USAGE' },
    );
  }
  return p;
}

/**
 * The per-channel factors of a preprocessing for `channels` channels: model = x * a[c] + b[c], with
 * a[c] = scale / std[c] and b[c] = offset - mean[c] * scale / std[c] (the module formula). A
 * one-value mean or std applies to every channel; any other length must equal `channels`.
 */
export function channelAffine(p: Preprocessing, channels: number, file?: string): { a: Float64Array; b: Float64Array } {
  for (const [name, list] of [
    ['mean', p.mean],
    ['std', p.std],
  ] as const) {
    if (list && list.length !== 1 && list.length !== channels) {
      throw new NetmomentsError(`the ${name} has ${list.length} values (${list.join(',')}) but the input has ${channels} channel${channels === 1 ? '' : 's'}`, {
        file,
        code: 'BAD_USAGE',
      });
    }
  }
  const a = new Float64Array(channels);
  const b = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const m = p.mean ? p.mean[p.mean.length === 1 ? 0 : c] : 0;
    const s = p.std ? p.std[p.std.length === 1 ? 0 : c] : 1;
    a[c] = p.scale / s;
    b[c] = p.offset - (m * p.scale) / s;
  }
  return { a, b };
}

/** Whether the preprocessing normalizes per channel (a mean or std is given). */
export function isPerChannel(p: Preprocessing): boolean {
  return p.mean !== undefined || p.std !== undefined;
}
