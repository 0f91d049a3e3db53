/**
 * Preprocessing from stored values to model units: model = x * scale + offset.
 *
 * What x is depends on the source: for images (PNG, idx, and uint8 .npy, all raw pixels) x is the
 * pixel divided by its maximum (255 for 8-bit), so x is in [0, 1]; for float .npy files x is the
 * stored value. The bundled LeNet takes pixel - 127.5: scale 255, offset -127.5, which its ONNX
 * metadata records under `netmoments.preprocessing` (read by preprocessingFromMetadata).
 */
import { NetmomentsError } from '../errors.js';

export interface Preprocessing {
  scale: number;
  offset: number;
}

export const IDENTITY: Preprocessing = { scale: 1, offset: 0 };

/** The metadata_props key a model uses to state its expected preprocessing. */
export const PREPROCESSING_KEY = 'netmoments.preprocessing';

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
  return out;
}

/** Check that a user-given preprocessing is usable (finite numbers, scale not 0). */
export function checkPreprocessing(p: Preprocessing): Preprocessing {
  if (!Number.isFinite(p.scale) || !Number.isFinite(p.offset) || p.scale === 0) {
    throw new NetmomentsError(`bad preprocessing: scale ${p.scale}, offset ${p.offset} (need finite numbers, scale != 0)`, {
      code: 'BAD_USAGE',
    });
  }
  return p;
}
