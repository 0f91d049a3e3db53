/**
 * A model's inputs from a data source. Raw pixels (PNG, idx, uint8 .npy) get the image
 * preprocessing, model = pixel/255 * scale + offset (the given scale and offset, else the model's
 * metadata, else identity), and PNG pixels the layout of the model's input; float .npy files are
 * already in model units and are read as they are.
 */
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

/** Open `path` as inputs of a model (file comment). */
export function openModelInputs(path: string, o: ModelInputOptions): Dataset {
  const layout = pngLayoutFor(o.inputShape, o.layout ?? 'auto');
  const probe = openDataset(path, { inputShape: o.inputShape, labels: o.labels, layout });
  if (probe.kind === 'npy' && !isUint8Npy(path)) return probe;
  return openDataset(path, { inputShape: o.inputShape, labels: o.labels, layout, preprocessing: inputPreprocessing(o) });
}
