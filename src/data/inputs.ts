/**
 * A model's inputs from a data source. Raw pixels (PNG, JPEG, idx, uint8 .npy) get the image
 * preprocessing, model = (pixel/255 - mean[c]) / std[c] * scale + offset (the given scale, offset,
 * mean and std, else the model's metadata, else identity), and image pixels the layout of the
 * model's input; float .npy files are already in model units and are read as they are. Integer
 * .npy files other than uint8 (int8, int32, int64) are read as model units as given, and said so:
 * nothing about them is guessed.
 */
import { NetmomentsError } from '../errors.js';
import { openDataset, type Dataset } from './dataset.js';
import { pngLayoutFor, type LayoutChoice } from './layout.js';
import { classNamesFromMetadata, isPerChannel, normalizationFromMetadata, preprocessingFromMetadata, type Preprocessing } from './preprocess.js';

/** What the preprocessing of a model's image inputs is decided from. */
export interface InputPreprocessingOptions {
  /** The model's metadata (its `netmoments.preprocessing` entry) and file, for error messages. */
  metadata: Record<string, string>;
  modelFile: string;
  /** Overrides of the metadata (the --scale, --offset, --mean and --std options). */
  scale?: number;
  offset?: number;
  mean?: readonly number[];
  std?: readonly number[];
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

/**
 * Preprocessing for image-like sources: each of scale and offset given, else the model's metadata
 * (none of it when a mean or std is given), else identity; mean and std given (either or both), else the
 * model's metadata (preprocess.ts, normalizationFromMetadata; unless a scale or offset is given),
 * else none.
 */
export function inputPreprocessing(o: InputPreprocessingOptions): Preprocessing {
  const given = o.mean !== undefined || o.std !== undefined;
  const affineGiven = o.scale !== undefined || o.offset !== undefined;
  // options replace the metadata: --mean/--std drop its scale and offset, --scale/--offset its mean and std
  const meta = given ? undefined : preprocessingFromMetadata(o.metadata, o.modelFile);
  const p: Preprocessing = { scale: o.scale ?? meta?.scale ?? 1, offset: o.offset ?? meta?.offset ?? 0 };
  const norm = given ? { mean: o.mean, std: o.std } : affineGiven ? {} : normalizationFromMetadata(o.metadata, o.modelFile);
  if (norm.mean) p.mean = [...norm.mean];
  if (norm.std) p.std = [...norm.std];
  if (meta && o.scale === undefined && o.offset === undefined && o.onWarning) {
    o.onWarning(
      `image inputs are scaled as the model's metadata says: pixel/255 * ${p.scale} ${p.offset < 0 ? '-' : '+'} ${Math.abs(p.offset)}${meta.source ? ` (${meta.source})` : ''}`,
    );
  }
  if (!given && (norm.mean || norm.std) && o.onWarning) {
    o.onWarning(
      `image inputs are normalized per channel as the model's metadata says: (pixel/255 - mean) / std with mean ${(norm.mean ?? [0]).join(',')}, std ${(norm.std ?? [1]).join(',')}`,
    );
  }
  return p;
}

/**
 * The valid input range in model units, pixels 0..255 mapped by the preprocessing: [offset, offset
 * + scale] in order, when the model declares its preprocessing or a scale or offset is given; else
 * undefined (the range is unknown). With a per-channel mean or std the channels have different
 * ranges, and the range is undefined too.
 */
export function inputRange(o: InputPreprocessingOptions): { lo: number; hi: number } | undefined {
  if (!preprocessingFromMetadata(o.metadata, o.modelFile) && o.scale === undefined && o.offset === undefined) return undefined;
  const p = inputPreprocessing({ ...o, onWarning: undefined });
  if (p.mean || p.std) return undefined;
  return { lo: Math.min(p.offset, p.offset + p.scale), hi: Math.max(p.offset, p.offset + p.scale) };
}

/**
 * The preprocessing a picture undoes to show model-unit inputs as pixels (experiments/common.ts,
 * toPixels): the one inputs get, when it is known (a declared or given scale and offset, or a
 * per-channel mean or std); undefined when nothing says it (pictures then scale by min and max).
 */
export function displayPreprocessing(o: InputPreprocessingOptions): Preprocessing | undefined {
  const p = inputPreprocessing({ ...o, onWarning: undefined });
  return inputRange(o) !== undefined || isPerChannel(p) ? p : undefined;
}

/** inputRange, or a usage error when the range is unknown (for --valid-range, which keeps inputs inside it). */
export function requireInputRange(o: InputPreprocessingOptions): { lo: number; hi: number } {
  const range = inputRange(o);
  if (range) return range;
  throw new NetmomentsError(
    '--valid-range needs one input range: the model declares no preprocessing (give --scale and --offset), or it is per channel (--mean/--std)',
    {
      file: o.modelFile,
      code: 'BAD_USAGE',
    },
  );
}

/** Open `path` as inputs of a model (file comment); what is assumed about the data goes to onWarning. */
export function openModelInputs(path: string, o: ModelInputOptions): Dataset {
  const layout = pngLayoutFor(o.inputShape, o.layout ?? 'auto');
  const classNames = classNamesFromMetadata(o.metadata, o.modelFile);
  const base = { inputShape: o.inputShape, labels: o.labels, layout, classNames, onNote: o.onWarning };
  const probe = openDataset(path, { ...base, onNote: undefined });
  if (probe.kind === 'npy' && probe.dtype !== 'uint8') {
    const asked = [
      o.scale !== undefined && '--scale',
      o.offset !== undefined && '--offset',
      o.mean !== undefined && '--mean',
      o.std !== undefined && '--std',
    ].filter(Boolean);
    if (probe.dtype === 'int8' || probe.dtype === 'int32' || probe.dtype === 'int64') {
      o.onWarning?.(
        `${path}: ${probe.dtype} values are read as model units as given (not as pixels: only uint8 .npy holds pixels, preprocessed like images); save uint8 pixels or float32 model units to say which`,
      );
    }
    if (asked.length > 0)
      o.onWarning?.(`${path}: ${asked.join(', ')} ${asked.length === 1 ? 'does' : 'do'} not apply: ${probe.dtype} .npy values are read as model units`);
    return probe;
  }
  const ds = openDataset(path, { ...base, preprocessing: inputPreprocessing(o) });
  if (ds.dtype === 'uint8') o.onWarning?.(`${path}: uint8 values are read as pixels 0..255 and preprocessed like images`);
  if (ds.classes) {
    const from = classNames ? "the model's class names (metadata)" : 'the folder names sorted (folder i is class i)';
    o.onWarning?.(`${path}: ${ds.classes.length} classes from the folders; labels by ${from}`);
    const moved = ds.classes.findIndex((name, i) => /^\d+$/.test(name) && Number(name) !== i);
    if (!classNames && moved >= 0) {
      o.onWarning?.(
        `${path}: the class folder '${ds.classes[moved]}' is class ${moved}, not ${Number(ds.classes[moved])} (folder i is class i: add an empty folder for each missing class, or name the classes in the model's metadata)`,
      );
    }
  }
  return ds;
}
