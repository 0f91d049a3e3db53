/**
 * A model's inputs from a data source. Raw pixels (PNG, idx, uint8 .npy) get the image
 * preprocessing, model = pixel/255 * scale + offset (the given scale and offset, else the model's
 * metadata, else identity), and PNG pixels the layout of the model's input; float .npy files are
 * already in model units and are read as they are.
 */
import { NetmomentsError } from '../errors.js';
import { openDataset, type Dataset } from './dataset.js';
import { pngLayoutFor, type LayoutChoice } from './layout.js';
import { preprocessingFromMetadata, type Preprocessing } from './preprocess.js';
import { isUint8Npy } from './vectors.js';

/** What the preprocessing of a model's image inputs is decided from. */
export interface InputPreprocessingOptions {
  /** The model's metadata (its `netmoments.preprocessing` entry) and file, for error messages. */
  metadata: Record<string, string>;
  modelFile: string;
  /** Overrides of the metadata (the --scale and --offset options). */
  scale?: number;
  offset?: number;
  /** Told how image inputs are scaled when the metadata decides it. */
  onWarning?: (message: string) => void;
}

export interface ModelInputOptions extends InputPreprocessingOptions {
  /** The model's input shape without the batch axis. */
  inputShape: number[];
  /** Image layout of the model's input (default: the shape rule). */
  layout?: LayoutChoice;
  /** A labels file (.npy, idx1 or text). */
  labels?: string;
}

/** Preprocessing for image-like sources: the given scale/offset, else the model's metadata, else identity. */
export function inputPreprocessing(o: InputPreprocessingOptions): Preprocessing {
  const meta = preprocessingFromMetadata(o.metadata, o.modelFile);
  const p = { scale: o.scale ?? meta?.scale ?? 1, offset: o.offset ?? meta?.offset ?? 0 };
  if (meta && o.scale === undefined && o.offset === undefined && o.onWarning) {
    o.onWarning(
      `image inputs are scaled as the model's metadata says: pixel/255 * ${p.scale} ${p.offset < 0 ? '-' : '+'} ${Math.abs(p.offset)}${meta.source ? ` (${meta.source})` : ''}`,
    );
  }
  return p;
}

/**
 * The valid input range in model units, pixels 0..255 mapped by the preprocessing: [offset, offset
 * + scale] in order, when the model declares its preprocessing or a scale or offset is given; else
 * undefined (the range is unknown).
 */
export function inputRange(o: InputPreprocessingOptions): { lo: number; hi: number } | undefined {
  if (!preprocessingFromMetadata(o.metadata, o.modelFile) && o.scale === undefined && o.offset === undefined) return undefined;
  const p = inputPreprocessing({ ...o, onWarning: undefined });
  return { lo: Math.min(p.offset, p.offset + p.scale), hi: Math.max(p.offset, p.offset + p.scale) };
}

/** inputRange, or a usage error when the range is unknown (for --valid-range, which keeps inputs inside it). */
export function requireInputRange(o: InputPreprocessingOptions): { lo: number; hi: number } {
  const range = inputRange(o);
  if (range) return range;
  throw new NetmomentsError('--valid-range needs the input range: the model declares no preprocessing; give --scale and --offset', {
    file: o.modelFile,
    code: 'BAD_USAGE',
  });
}

/** Open `path` as inputs of a model (file comment). */
export function openModelInputs(path: string, o: ModelInputOptions): Dataset {
  const layout = pngLayoutFor(o.inputShape, o.layout ?? 'auto');
  const probe = openDataset(path, { inputShape: o.inputShape, labels: o.labels, layout });
  if (probe.kind === 'npy' && !isUint8Npy(path)) return probe;
  return openDataset(path, { inputShape: o.inputShape, labels: o.labels, layout, preprocessing: inputPreprocessing(o) });
}
