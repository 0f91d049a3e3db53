/**
 * Datasets: a uniform view { size, inputShape, get(i), labels? } over
 *   - a .npy batch (float or uint8), with optional labels (.npy or idx1 or a text file);
 *   - an MNIST idx pair (idx3 images; the idx1 labels are found beside them by name, as in
 *     t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte, or given explicitly);
 *   - a folder of images (.png, .jpg, .jpeg), sorted by name (numbers in names compare by value:
 *     img2 < img10), with labels from `labels.txt` / `labels.csv` in the folder or an explicit
 *     labels file;
 *   - a class-per-folder tree root/CLASS/*.png|jpg|jpeg (when the root holds no images itself, as
 *     torchvision's ImageFolder reads it): the label of an image is its folder's class index, the
 *     position of the folder name in the model's class names when the model declares them
 *     (`classNames`), else in the folder names sorted by code point (torchvision's order: "10"
 *     before "2"; an empty folder keeps its class index); inputs go class by class, each folder's
 *     images sorted by name as above;
 *   - a single PNG or JPEG (a dataset of one).
 *
 * Values are converted to model units at load: (x - mean[c]) / std[c] * scale + offset, where x is
 * the pixel / 255 in [0, 1] for image sources (PNG, JPEG, idx, uint8 .npy) and the stored value for
 * float .npy files (see preprocess.ts). When `inputShape` (the model's input shape without the batch
 * axis) is given, the layout rule of layout.ts decides how the file splits into inputs; without it
 * a file of rank >= 2 is a batch along axis 0 and a file of rank <= 1 is one input. Images whose
 * rows and columns differ from an image input's are resized to it (resize.ts), said once through
 * `onNote`.
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
import { decodeImage, hasImageExtension, isImage } from './decode.js';
import { batchLayout, elementCount, imageGeometry, type ImageLayout } from './layout.js';
import { parseNpy, type NpyArray, type NpyDtype } from './npy.js';
import { IDENTITY, channelAffine, checkPreprocessing, isPerChannel, type Preprocessing } from './preprocess.js';

/** 'png': image files, PNG or JPEG (the name predates JPEG support). */
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
  /** A class-per-folder dataset's classes: class index -> folder name. */
  readonly classes?: readonly string[];
  /** A .npy dataset's stored dtype. */
  readonly dtype?: NpyDtype;
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
  /** Image layout: 'chw' (default) or 'hwc'. */
  layout?: ImageLayout;
  /** Image channel count; default: from inputShape when given ('chw': its first axis), else the file's. */
  channels?: 1 | 3;
  /** A class-per-folder dataset's class names in class-index order (default: the folder names, sorted). */
  classNames?: readonly string[];
  /** Told things worth knowing once per dataset (images resized to the model's size). */
  onNote?: (message: string) => void;
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
    throw new NetmomentsError('name,label lines only apply to a folder of images; give one label per line', { file: path });
  }
  if (lf.labels.length !== size) {
    throw new NetmomentsError(`holds ${lf.labels.length} labels for ${size} inputs`, { file: path });
  }
  return lf.labels;
}

function resolvePreprocessing(p: Partial<Preprocessing> | undefined): Preprocessing {
  const out: Preprocessing = { scale: p?.scale ?? IDENTITY.scale, offset: p?.offset ?? IDENTITY.offset };
  if (p?.mean) out.mean = p.mean;
  if (p?.std) out.std = p.std;
  return checkPreprocessing(out);
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
    readonly dtype?: NpyDtype,
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

/**
 * Stored values to model units: value / divisor * scale + offset, or per channel
 * value / divisor * a[c] + b[c] (preprocess.ts, channelAffine) with element i's channel c read from
 * the image geometry of one input's shape under `layout` (a non-image input has one channel).
 */
function applyPreprocessing(
  values: ArrayLike<number>,
  divisor: number,
  p: Preprocessing,
  inputShape: readonly number[],
  layout: ImageLayout | undefined,
  file: string,
): Float32Array {
  const out = new Float32Array(values.length);
  if (!isPerChannel(p)) {
    const s = p.scale / divisor;
    for (let i = 0; i < values.length; i++) out[i] = values[i] * s + p.offset;
    return out;
  }
  const g = imageGeometry(inputShape, layout ?? 'auto');
  const channels = g ? g.channels : 1;
  const { a, b } = channelAffine(p, channels, file);
  const n = elementCount(inputShape);
  const hw = g ? g.height * g.width : n;
  const channelOf = (k: number) => (!g ? 0 : g.layout === 'chw' ? Math.floor(k / hw) % channels : k % channels);
  for (let i = 0; i < values.length; i++) {
    const c = channelOf(i % n);
    out[i] = (values[i] / divisor) * a[c] + b[c];
  }
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
  const data = applyPreprocessing(values, a.dtype === 'uint8' ? 255 : 1, p, inputShape, options.layout, path);
  // float64 values beyond the float32 range become Infinity here (the model runs in float32)
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new NetmomentsError(`element ${i} is ${values[i]}, beyond the float32 range the model runs in`, { file: path });
    }
  }
  const labels = options.labels ? listLabels(options.labels, size) : undefined;
  return new ArrayDataset('npy', path, size, inputShape, data, p, labels, a.dtype);
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
  return new ArrayDataset('idx', path, size, inputShape, applyPreprocessing(a.data, 255, p, inputShape, options.layout, path), p, labels);
}

/**
 * Image datasets decode lazily. With an image input (inputShape of one picture) every image is
 * resized to its rows and columns where they differ (said once through onNote); otherwise every
 * image must give the first one's shape.
 */
class ImageDataset implements Dataset {
  readonly kind = 'png' as const;
  readonly inputShape: number[];
  private readonly imageShape: number[];
  private readonly size2d?: { height: number; width: number };
  private resizeSaid = false;

  constructor(
    readonly source: string,
    private readonly files: string[],
    readonly preprocessing: Preprocessing,
    private readonly options: OpenDatasetOptions,
    readonly labels?: Int32Array,
    readonly classes?: readonly string[],
    private readonly names?: string[],
  ) {
    const g = options.inputShape ? imageGeometry(options.inputShape, options.layout ?? 'chw') : undefined;
    if (g && g.picture) this.size2d = { height: g.height, width: g.width };
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
    const file = this.files[i];
    const img = decodeImage(readFileOrFail(file), { ...this.preprocessing, layout: this.options.layout, channels: this.channels(), size: this.size2d }, file);
    if (img.resizedFrom && !this.resizeSaid) {
      this.resizeSaid = true;
      const from = img.resizedFrom;
      this.options.onNote?.(
        `${this.source}: images whose size differs from the model's ${img.height}x${img.width} (rows x columns) are resized to it ` +
          `(bilinear when enlarging, area average when shrinking; stretched, not cropped), the first being ${this.nameOf(i)} (${from.height}x${from.width})`,
      );
    }
    return img;
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
    return this.names?.[i] ?? basename(this.files[i]);
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
      throw new NetmomentsError(`holds ${lf.labels.length} labels for ${files.length} image files in ${folder}`, { file: path });
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

function listFolder(folder: string): string[] {
  try {
    return readdirSync(folder);
  } catch (e) {
    throw new NetmomentsError(`cannot list the folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file: folder, cause: e });
  }
}

/** The image files of a folder (not hidden), sorted by name with numbers by value. */
function imageFiles(folder: string): string[] {
  return listFolder(folder)
    .filter((n) => hasImageExtension(n) && !n.startsWith('.'))
    .sort(naturalCompare);
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function openImageFolder(folder: string, options: OpenDatasetOptions, p: Preprocessing): Dataset {
  const names = imageFiles(folder);
  if (names.length === 0) return openClassFolders(folder, options, p);
  const files = names.map((n) => join(folder, n));
  const labels = pngFolderLabels(folder, files, options.labels);
  return new ImageDataset(folder, files, p, options, labels);
}

/** A class-per-folder tree (module comment): root/CLASS/*.png|jpg|jpeg. */
function openClassFolders(root: string, options: OpenDatasetOptions, p: Preprocessing): Dataset {
  const folders = listFolder(root)
    .filter((n) => !n.startsWith('.') && isFolder(join(root, n)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (folders.length === 0) {
    throw new NetmomentsError('the folder holds no .png files (nor .jpg/.jpeg files, nor class folders of them: root/CLASS/*.png)', { file: root });
  }
  if (options.labels) {
    throw new NetmomentsError(`a class-per-folder dataset takes its labels from the folder names; drop the labels file ${options.labels}`, {
      file: root,
      code: 'BAD_USAGE',
    });
  }
  const classes = options.classNames ? [...options.classNames] : folders;
  const files: string[] = [];
  const names: string[] = [];
  const labels: number[] = [];
  const byClass = [...folders].sort((a, b) => classes.indexOf(a) - classes.indexOf(b));
  for (const folder of byClass) {
    const label = classes.indexOf(folder);
    if (label < 0) {
      throw new NetmomentsError(
        `the class folder '${folder}' is not one of the model's ${classes.length} class names (${classes.slice(0, 5).join(', ')}${classes.length > 5 ? ', ...' : ''})`,
        { file: root },
      );
    }
    const inside = imageFiles(join(root, folder)); // an empty folder still holds its class index
    for (const n of inside) {
      files.push(join(root, folder, n));
      names.push(`${folder}/${n}`);
      labels.push(label);
    }
  }
  if (files.length === 0) throw new NetmomentsError('the class folders hold no .png/.jpg/.jpeg files', { file: root });
  return new ImageDataset(root, files, p, options, Int32Array.from(labels), classes, names);
}

/**
 * Open a dataset: a folder is a folder of images or of class folders; a file is recognised by its
 * first bytes (PNG, JPEG, .npy, idx) or, failing that, by its extension (.npy, .png, .jpg,
 * idx3-ubyte[.gz]).
 */
export function openDataset(path: string, options: OpenDatasetOptions = {}): Dataset {
  const p = resolvePreprocessing(options.preprocessing);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new NetmomentsError('no such file or folder', { file: path, cause: e });
  }
  if (st.isDirectory()) return openImageFolder(path, options, p);
  const raw = readFileOrFail(path);
  if (isImage(raw)) {
    const labels = options.labels ? listLabels(options.labels, 1) : undefined;
    return new ImageDataset(path, [path], p, options, labels);
  }
  const bytes = maybeGunzip(raw, path);
  if (isNpyBytes(bytes)) return openNpy(path, bytes, options, p);
  if (isIdxBytes(bytes)) return openIdx(path, bytes, options, p);
  const lower = path.toLowerCase();
  if (lower.endsWith('.npy')) return openNpy(path, bytes, options, p); // reports the bad magic
  if (lower.endsWith('.png')) throw new NetmomentsError('not a PNG file (bad signature)', { file: path });
  if (lower.endsWith('.jpg') || lower.endsWith('.jpeg')) throw new NetmomentsError('not a JPEG file (bad signature)', { file: path });
  if (/idx\d-ubyte(\.gz)?$/.test(lower)) return openIdx(path, bytes, options, p);
  throw new NetmomentsError('unrecognised data file: expected a .npy array, an MNIST idx3 file, a PNG or JPEG, or a folder of them', {
    file: path,
  });
}
