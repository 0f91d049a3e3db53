/**
 * Datasets: a uniform view { size, inputShape, get(i), labels? } over
 *   - a .npy batch (float or uint8), with optional labels (.npy or idx1 or a text file);
 *   - an MNIST idx pair (idx3 images; the idx1 labels are found beside them by name, as in
 *     t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte, or given explicitly);
 *   - a folder of PNGs, sorted by name (numbers in names compare by value: img2 < img10), with
 *     labels from `labels.txt` / `labels.csv` in the folder or an explicit labels file;
 *   - a single PNG (a dataset of one).
 *
 * Values are converted to model units at load: x * scale + offset, where x is the pixel / 255 in
 * [0, 1] for image sources (PNG, idx, uint8 .npy) and the stored value for float .npy files (see
 * preprocess.ts). When `inputShape` (the model's input shape without the batch axis) is given, the
 * layout rule of layout.ts decides how the file splits into inputs; without it a file of rank >= 2
 * is a batch along axis 0 and a file of rank <= 1 is one input.
 *
 * Label text files: either one integer per line (in the sorted order of the items), or
 * `name,label` lines (a first line whose label is not an integer is a header and is skipped);
 * blank lines and lines starting with '#' are ignored.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { NetmomentsError } from '../errors.js';
import { readFileOrFail } from '../util/files.js';
import { maybeGunzip, parseIdx } from './idx.js';
import { batchLayout, elementCount } from './layout.js';
import { parseNpy, type NpyArray } from './npy.js';
import { decodePng, isPng, type ImageLayout } from './png.js';
import { IDENTITY, checkPreprocessing, type Preprocessing } from './preprocess.js';

export type DatasetKind = 'npy' | 'idx' | 'png';

export interface Dataset {
  readonly kind: DatasetKind;
  /** The path the dataset was opened from. */
  readonly source: string;
  /** Number of inputs. */
  readonly size: number;
  /** Shape of one input (without the batch axis). */
  readonly inputShape: number[];
  /** Class labels, one per input, when known. */
  readonly labels?: Int32Array;
  readonly preprocessing: Preprocessing;
  /** Input i in model units (a fresh array each call). */
  get(i: number): Float32Array;
  /** Several inputs concatenated in C order ([indices.length, ...inputShape]). */
  getBatch(indices: readonly number[]): Float32Array;
  /** A short name for input i (the file and, for batches, the index) for messages and reports. */
  nameOf(i: number): string;
}

export interface OpenDatasetOptions {
  /** model units = x * scale + offset (default scale 1, offset 0). */
  preprocessing?: Partial<Preprocessing>;
  /** The model's input shape without the batch axis; enables the layout rule. */
  inputShape?: readonly number[];
  /** A labels file (.npy, idx1, or text); default: found beside the data where a convention exists. */
  labels?: string;
  /** PNG layout: 'chw' (default) or 'hwc'. */
  layout?: ImageLayout;
  /** PNG channel count; default: from inputShape when given ('chw': its first axis), else the file's. */
  channels?: 1 | 3;
}

// ---------------------------------------------------------------------------------------------

function isNpyBytes(b: Uint8Array): boolean {
  return b.length >= 6 && b[0] === 0x93 && b[1] === 0x4e && b[2] === 0x55 && b[3] === 0x4d && b[4] === 0x50 && b[5] === 0x59;
}

function isIdxBytes(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0 && b[1] === 0 && b[3] >= 1;
}

/** Compare names so that embedded numbers sort by value ("img2" < "img10"); ties by code point. */
export function naturalCompare(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const ca = a.match(re) ?? [];
  const cb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
    const x = ca[i];
    const y = cb[i];
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const nx = x.replace(/^0+(?=\d)/, '');
      const ny = y.replace(/^0+(?=\d)/, '');
      if (nx.length !== ny.length) return nx.length - ny.length;
      if (nx !== ny) return nx < ny ? -1 : 1;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  if (ca.length !== cb.length) return ca.length - cb.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function toLabelArray(values: ArrayLike<number | bigint>, file: string): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
      throw new NetmomentsError(`label ${i} is ${String(values[i])}; labels must be non-negative integers`, { file });
    }
    out[i] = v;
  }
  return out;
}

export type LabelFile = { kind: 'list'; labels: Int32Array } | { kind: 'named'; byName: Map<string, number> };

/** Read a labels file: .npy (integers, any shape), idx1, or text (see the module comment). */
export function readLabelFile(path: string): LabelFile {
  const bytes = maybeGunzip(readFileOrFail(path), path);
  if (isNpyBytes(bytes)) {
    const a = parseNpy(bytes, path);
    if (a.dtype === 'bool') throw new NetmomentsError('labels must be integers, not bool', { file: path });
    return { kind: 'list', labels: toLabelArray(a.data, path) };
  }
  if (isIdxBytes(bytes)) {
    const a = parseIdx(bytes, path, 1);
    return { kind: 'list', labels: toLabelArray(a.data, path) };
  }
  const text = new TextDecoder().decode(bytes);
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  const isInt = (s: string) => /^\d+$/.test(s);
  if (lines.length > 0 && lines.every((l) => l.includes(','))) {
    const byName = new Map<string, number>();
    lines.forEach((l, i) => {
      const at = l.lastIndexOf(',');
      const name = l.slice(0, at).trim();
      const lab = l.slice(at + 1).trim();
      if (!isInt(lab)) {
        if (i === 0) return; // header
        throw new NetmomentsError(`line '${l}': the label '${lab}' is not a non-negative integer`, { file: path });
      }
      byName.set(name, Number(lab));
    });
    return { kind: 'named', byName };
  }
  const bad = lines.find((l) => !isInt(l));
  if (bad !== undefined) {
    throw new NetmomentsError(`line '${bad.slice(0, 40)}' is not a label (expected one integer per line, or name,label lines)`, {
      file: path,
    });
  }
  return { kind: 'list', labels: Int32Array.from(lines, Number) };
}

function listLabels(path: string, size: number): Int32Array {
  const lf = readLabelFile(path);
  if (lf.kind !== 'list') {
    throw new NetmomentsError('name,label lines only apply to a folder of PNGs; give one label per line', { file: path });
  }
  if (lf.labels.length !== size) {
    throw new NetmomentsError(`holds ${lf.labels.length} labels for ${size} inputs`, { file: path });
  }
  return lf.labels;
}

function resolvePreprocessing(p: Partial<Preprocessing> | undefined): Preprocessing {
  return checkPreprocessing({ scale: p?.scale ?? IDENTITY.scale, offset: p?.offset ?? IDENTITY.offset });
}

/** The inputs `indices` of a dataset one after another (indices.length x n): every Dataset's getBatch. */
function gatherBatch(ds: Pick<Dataset, 'inputShape' | 'get'>, indices: readonly number[]): Float32Array {
  const n = elementCount(ds.inputShape);
  const out = new Float32Array(indices.length * n);
  indices.forEach((idx, k) => out.set(ds.get(idx), k * n));
  return out;
}

/** A dataset over one float array of stored values x (already divided by 255 for images). */
class ArrayDataset implements Dataset {
  constructor(
    readonly kind: DatasetKind,
    readonly source: string,
    readonly size: number,
    readonly inputShape: number[],
    private readonly data: Float32Array,
    readonly preprocessing: Preprocessing,
    readonly labels?: Int32Array,
  ) {}

  get(i: number): Float32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new RangeError(`input ${i} out of range [0, ${this.size})`);
    const n = elementCount(this.inputShape);
    return this.data.slice(i * n, (i + 1) * n);
  }

  getBatch(indices: readonly number[]): Float32Array {
    return gatherBatch(this, indices);
  }

  nameOf(i: number): string {
    return this.size === 1 ? basename(this.source) : `${basename(this.source)}[${i}]`;
  }
}

function applyPreprocessing(values: ArrayLike<number>, divisor: number, p: Preprocessing): Float32Array {
  const out = new Float32Array(values.length);
  const s = p.scale / divisor;
  for (let i = 0; i < values.length; i++) out[i] = values[i] * s + p.offset;
  return out;
}

/** Split a stored array into inputs: by the layout rule when inputShape is given. */
function layoutOf(fileShape: number[], inputShape: readonly number[] | undefined, file: string): { size: number; inputShape: number[] } {
  if (inputShape) {
    const l = batchLayout(fileShape, inputShape, file);
    return { size: l.count, inputShape: [...inputShape] };
  }
  if (fileShape.length <= 1) return { size: 1, inputShape: [...fileShape] };
  return { size: fileShape[0], inputShape: fileShape.slice(1) };
}

function openNpy(path: string, bytes: Uint8Array, options: OpenDatasetOptions, p: Preprocessing): Dataset {
  const a: NpyArray = parseNpy(bytes, path);
  if (a.dtype === 'bool') throw new NetmomentsError('a bool array is not input data', { file: path });
  const values = a.data instanceof BigInt64Array ? Float64Array.from(a.data, (v) => Number(v)) : a.data;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new NetmomentsError(`element ${i} is ${values[i]}; input data must be finite`, { file: path });
    }
  }
  const { size, inputShape } = layoutOf(a.shape, options.inputShape, path);
  const data = applyPreprocessing(values, a.dtype === 'uint8' ? 255 : 1, p);
  // float64 values beyond the float32 range become Infinity here (the model runs in float32)
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new NetmomentsError(`element ${i} is ${values[i]}, beyond the float32 range the model runs in`, { file: path });
    }
  }
  const labels = options.labels ? listLabels(options.labels, size) : undefined;
  return new ArrayDataset('npy', path, size, inputShape, data, p, labels);
}

/** The conventional labels file beside an idx3 images file, if it exists. */
export function idxLabelsBeside(imagesPath: string): string | undefined {
  const name = basename(imagesPath);
  const guess = name.replace('images', 'labels').replace('idx3', 'idx1');
  if (guess === name) return undefined;
  const p = join(dirname(imagesPath), guess);
  return existsSync(p) ? p : undefined;
}

function openIdx(path: string, bytes: Uint8Array, options: OpenDatasetOptions, p: Preprocessing): Dataset {
  const a = parseIdx(bytes, path, 3);
  const { size, inputShape } = layoutOf(a.shape, options.inputShape, path);
  const labelsPath = options.labels ?? idxLabelsBeside(path);
  const labels = labelsPath ? listLabels(labelsPath, size) : undefined;
  return new ArrayDataset('idx', path, size, inputShape, applyPreprocessing(a.data, 255, p), p, labels);
}

/** PNG datasets decode lazily; every image must give the same shape. */
class PngDataset implements Dataset {
  readonly kind = 'png' as const;
  readonly inputShape: number[];
  private readonly imageShape: number[];

  constructor(
    readonly source: string,
    private readonly files: string[],
    readonly preprocessing: Preprocessing,
    private readonly options: OpenDatasetOptions,
    readonly labels?: Int32Array,
  ) {
    const first = this.decode(0);
    this.imageShape = first.shape;
    if (options.inputShape) {
      const n = elementCount(options.inputShape);
      if (first.data.length !== n) {
        throw new NetmomentsError(
          `the image has shape ${fmtShape(first.shape)} (${first.data.length} values) but the model's input is ` +
            `${fmtShape(options.inputShape)} (${n} values)`,
          { file: files[0] },
        );
      }
      this.inputShape = [...options.inputShape];
    } else {
      this.inputShape = first.shape;
    }
  }

  get size(): number {
    return this.files.length;
  }

  private channels(): 1 | 3 | undefined {
    if (this.options.channels) return this.options.channels;
    const s = this.options.inputShape;
    if (!s || s.length !== 3) return undefined;
    const c = (this.options.layout ?? 'chw') === 'chw' ? s[0] : s[2];
    return c === 1 || c === 3 ? c : undefined;
  }

  private decode(i: number) {
    return decodePng(readFileOrFail(this.files[i]), { ...this.preprocessing, layout: this.options.layout, channels: this.channels() }, this.files[i]);
  }

  get(i: number): Float32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new RangeError(`input ${i} out of range [0, ${this.size})`);
    const img = this.decode(i);
    if (img.shape.some((d, k) => d !== this.imageShape[k]) || img.shape.length !== this.imageShape.length) {
      throw new NetmomentsError(
        `the image has shape ${fmtShape(img.shape)}, unlike the first image ${basename(this.files[0])} (${fmtShape(this.imageShape)})`,
        { file: this.files[i] },
      );
    }
    return img.data;
  }

  getBatch(indices: readonly number[]): Float32Array {
    return gatherBatch(this, indices);
  }

  nameOf(i: number): string {
    return basename(this.files[i]);
  }
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function pngFolderLabels(folder: string, files: string[], explicit: string | undefined): Int32Array | undefined {
  let path = explicit;
  if (!path) {
    for (const name of ['labels.txt', 'labels.csv', 'labels.npy']) {
      if (existsSync(join(folder, name))) {
        path = join(folder, name);
        break;
      }
    }
  }
  if (!path) return undefined;
  const lf = readLabelFile(path);
  if (lf.kind === 'list') {
    if (lf.labels.length !== files.length) {
      throw new NetmomentsError(`holds ${lf.labels.length} labels for ${files.length} PNG files in ${folder}`, { file: path });
    }
    return lf.labels;
  }
  const out = new Int32Array(files.length);
  files.forEach((f, i) => {
    const name = basename(f);
    const v = lf.byName.get(name) ?? lf.byName.get(name.slice(0, -extname(name).length));
    if (v === undefined) throw new NetmomentsError(`no label for ${name}`, { file: path });
    out[i] = v;
  });
  return out;
}

function openPngFolder(folder: string, options: OpenDatasetOptions, p: Preprocessing): Dataset {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (e) {
    throw new NetmomentsError(`cannot list the folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file: folder, cause: e });
  }
  const files = names
    .filter((n) => n.toLowerCase().endsWith('.png') && !n.startsWith('.'))
    .sort(naturalCompare)
    .map((n) => join(folder, n));
  if (files.length === 0) throw new NetmomentsError('the folder holds no .png files', { file: folder });
  const labels = pngFolderLabels(folder, files, options.labels);
  return new PngDataset(folder, files, p, options, labels);
}

/**
 * Open a dataset: a folder is a folder of PNGs; a file is recognised by its extension
 * (.npy, .png, idx3-ubyte[.gz]) or, failing that, by its first bytes.
 */
export function openDataset(path: string, options: OpenDatasetOptions = {}): Dataset {
  const p = resolvePreprocessing(options.preprocessing);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new NetmomentsError('no such file or folder', { file: path, cause: e });
  }
  if (st.isDirectory()) return openPngFolder(path, options, p);
  const raw = readFileOrFail(path);
  if (isPng(raw)) {
    const labels = options.labels ? listLabels(options.labels, 1) : undefined;
    return new PngDataset(path, [path], p, options, labels);
  }
  const bytes = maybeGunzip(raw, path);
  if (isNpyBytes(bytes)) return openNpy(path, bytes, options, p);
  if (isIdxBytes(bytes)) return openIdx(path, bytes, options, p);
  const lower = path.toLowerCase();
  if (lower.endsWith('.npy')) return openNpy(path, bytes, options, p); // reports the bad magic
  if (lower.endsWith('.png')) throw new NetmomentsError('not a PNG file (bad signature)', { file: path });
  if (/idx\d-ubyte(\.gz)?$/.test(lower)) return openIdx(path, bytes, options, p);
  throw new NetmomentsError('unrecognised data file: expected a .npy array, an MNIST idx3 file, a PNG, or a folder of PNGs', {
    file: path,
  });
}
