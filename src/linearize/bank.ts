/**
 * Linearization banks (Bibi et al. 2018, Table 3): cluster a dataset in input space with k-means
 * (ml-kmeans, k-means++ seeded), linearize the model once at each cluster's point, and let every
 * input use the linearization of its nearest centre. docs/ARCHITECTURE.md, section 4 (cost model): A, c1, B, c2
 * are computed once per centre; every further input costs matrix-vector products for the mean
 * plus its own pair terms for the exact variance.
 *
 * A bank on disk is a folder:
 *
 *   manifest.json          schema netmoments.bank/1: model sha256, split (relu), output, k, the
 *                          k-means run, and the sha256 and size of every other file
 *   centres.npy            float32 [k, ...input shape]: the k-means centroids, for the assignment
 *   centre-0000/point.npy  float32 [...input shape]: where centre 0 is linearized (its centroid, or
 *                          with --point farthest the member farthest from it: the paper's baseline)
 *   centre-0000/A.npy      float32 [p, n]   d bottom / dx at the point
 *   centre-0000/zb.npy     float32 [p]      bottom(point): the split ReLU's pre-activation
 *   centre-0000/B.npy      float32 [d, p]   d top / dy at relu(zb)
 *   centre-0000/gb.npy     float32 [d]      the model output g at the point
 *   centre-0000/D.npy      float32 [d, n]   only when tensors skip the cut
 *
 * Float32 loses nothing for JVP Jacobians: the tangent models run in float32 (docs/ARCHITECTURE.md, section 5), so every
 * entry of A, B, D, zb and gb is a float32 value to begin with (finite-difference Jacobians are
 * rounded once). The surrogate at the point is g(x) ~ B relu(zb + A (x - xb)) + gb - B relu(zb) +
 * D (x - xb), i.e. c1 = zb - A xb and c2 = gb - B relu(zb) - D xb.
 *
 * The manifest is written last: a folder without it (a build that was killed) is not a bank.
 * Loading checks the schema, the model's sha256, the split and output against the run, and the
 * sha256 of every file before any of it is used; each problem is a one-line error naming the file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { kmeans } from 'ml-kmeans';
import { NetmomentsError } from '../errors.js';
import { encodeNpy, parseNpy } from '../data/npy.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import type { Surrogate } from '../moments/surrogate.js';
import { availableMemory, formatBytes } from '../resources.js';
import { readFileOrFail, readTextOrFail, sha256Hex, StagingFolder } from '../util/files.js';
import type { Linearizer, TensorDescription } from './linearizer.js';

export const BANK_SCHEMA = 'netmoments.bank/1';
export const BANK_MANIFEST = 'manifest.json';

/** Where each centre is linearized: its k-means centroid, or (the paper's baseline) its farthest member. */
export type BankPoint = 'centroid' | 'farthest';

export interface BankSizes {
  /** Input elements. */
  n: number;
  /** Split width. */
  p: number;
  /** Output elements. */
  d: number;
  /** Whether the top reads tensors that skip the cut (a D matrix per centre). */
  skip: boolean;
}

export interface BankEstimate {
  /** Bytes of one centre's files (float32 data plus .npy headers). */
  perCentre: number;
  /** Bytes of the whole bank (k centres, centres.npy, the manifest). */
  total: number;
  /** A one-line description: "k = 50 centres x 1.6 MiB (A alone is p x n = 500 x 784 float32)". */
  text: string;
}

const NPY_HEADER = 128;

/** The size of a bank of k centres, before any work (A alone is n p floats per centre). */
export function estimateBank(s: BankSizes, k: number): BankEstimate {
  const floats = s.p * s.n + s.d * s.p + s.p + s.d + s.n + (s.skip ? s.d * s.n : 0);
  const files = 5 + (s.skip ? 1 : 0);
  const perCentre = floats * 4 + files * NPY_HEADER;
  const total = k * perCentre + k * s.n * 4 + NPY_HEADER + 4096 + k * 600;
  const text = `k = ${k} centres x ${formatBytes(perCentre)} = ${formatBytes(total)} (A alone is p x n = ${s.p} x ${s.n} float32 per centre)`;
  return { perCentre, total, text };
}

/** Free bytes on the file system that holds `path` (or its nearest existing parent). */
export function freeDiskBytes(path: string): number | undefined {
  let p = resolve(path);
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) return undefined;
    p = up;
  }
  try {
    const st = statfsSync(p);
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return undefined;
  }
}

/** One centre's linearization: the surrogate at the centre's point (src/moments/surrogate.ts), float32 as stored. */
export interface BankCentre extends Surrogate<Float32Array> {
  index: number;
  /** The linearization point xb (n); A is p x n and D d x n over the input elements. */
  point: Float32Array;
}

export interface BankFileEntry {
  sha256: string;
  bytes: number;
  shape: number[];
}

export interface BankManifest {
  schema: typeof BANK_SCHEMA;
  version: string;
  model: { file: string; sha256: string };
  split: SplitPoint;
  input: { name: string; shape: number[]; size: number };
  output: { name: string; shape: number[]; size: number };
  /** Tensors the top part reads besides the ReLU output (a D matrix per centre when non-empty). */
  skip: string[];
  jacobian: string;
  k: number;
  point: BankPoint;
  kmeans: {
    seed: number;
    maxIterations: number;
    iterations: number;
    converged: boolean;
    /** The clustered data: its file, count and sha256 of the inputs in model units (float32 little-endian). */
    data: { file: string; count: number; sha256: string };
    /** Members per centre (the k-means assignment of the clustered data). */
    members: number[];
    /** Mean squared distance of the data to their centroid. */
    inertia: number;
  };
  /** Every other file of the bank, relative to the folder. */
  files: Record<string, BankFileEntry>;
}

/** A bank in use: the centroids for the assignment and each centre's linearization. */
export interface Bank {
  readonly k: number;
  readonly n: number;
  readonly manifest: BankManifest;
  /** The k-means centroids (k x n), for the assignment. */
  readonly centres: Float32Array;
  /** Where the bank came from (a folder) or undefined for a bank built in memory. */
  readonly dir?: string;
  /** sha256 of the manifest (identifies the bank in reports and checkpoints). */
  readonly id: string;
  centre(i: number): BankCentre;
}

/** Index of the nearest centre (squared Euclidean distance; ties go to the lower index) and the distance. */
export function nearestCentre(centres: Float32Array, k: number, n: number, x: ArrayLike<number>): { index: number; distance: number } {
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < k; c++) {
    const o = c * n;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const t = x[i] - centres[o + i];
      s += t * t;
      if (s >= bestD) break;
    }
    if (s < bestD) {
      bestD = s;
      best = c;
    }
  }
  return { index: best, distance: Math.sqrt(bestD) };
}

export interface BuildBankOptions {
  k: number;
  /** Seed of k-means++ (default 0). */
  seed?: number;
  /** k-means iterations at most (default 100). */
  maxIterations?: number;
  point?: BankPoint;
  /** The data's file name and sha256 for the manifest. */
  dataFile: string;
  /** Called after k-means and after each centre. */
  onProgress?: (stage: 'kmeans' | 'centre', done: number, total: number) => void;
}

export interface ClusterResult {
  /** k x n float32 centroids. */
  centroids: Float32Array;
  /** Linearization points, k x n float32. */
  points: Float32Array;
  clusters: Int32Array;
  members: number[];
  iterations: number;
  converged: boolean;
  inertia: number;
}

/** k-means of `count` inputs (count x n) with ml-kmeans (k-means++ initialization, seeded). */
export function clusterInputs(
  data: Float32Array,
  count: number,
  n: number,
  k: number,
  options: { seed?: number; maxIterations?: number; point?: BankPoint } = {},
): ClusterResult {
  if (!(Number.isInteger(k) && k >= 1)) throw new NetmomentsError(`the number of centres must be a whole number >= 1, got ${k}`, { code: 'BAD_USAGE' });
  if (k > count) throw new NetmomentsError(`k = ${k} centres need at least ${k} inputs to cluster, the data holds ${count}`, { code: 'BAD_USAGE' });
  const rows: number[][] = [];
  for (let i = 0; i < count; i++) rows.push(Array.from(data.subarray(i * n, (i + 1) * n)));
  const maxIterations = options.maxIterations ?? 100;
  const res = kmeans(rows, k, { seed: options.seed ?? 0, maxIterations, initialization: 'kmeans++' });
  const centroids = new Float32Array(k * n);
  for (let c = 0; c < k; c++) centroids.set(res.centroids[c], c * n);
  const clusters = Int32Array.from(res.clusters);
  const members = new Array<number>(k).fill(0);
  for (const c of clusters) members[c]++;
  let inertia = 0;
  const far = new Int32Array(k).fill(-1);
  const farD = new Float64Array(k).fill(-1);
  for (let i = 0; i < count; i++) {
    const c = clusters[i];
    let s = 0;
    for (let j = 0; j < n; j++) {
      const t = data[i * n + j] - res.centroids[c][j];
      s += t * t;
    }
    inertia += s;
    if (s > farD[c]) {
      farD[c] = s;
      far[c] = i;
    }
  }
  const points = options.point === 'farthest' ? new Float32Array(k * n) : centroids;
  if (options.point === 'farthest') {
    for (let c = 0; c < k; c++) {
      if (far[c] >= 0) points.set(data.subarray(far[c] * n, (far[c] + 1) * n), c * n);
      else points.set(centroids.subarray(c * n, (c + 1) * n), c * n);
    }
  }
  return { centroids, points, clusters, members, iterations: res.iterations, converged: res.converged, inertia: inertia / count };
}

/** Linearize at one point and keep the float32 matrices. */
export async function linearizeCentre(linearizer: Linearizer, point: Float32Array, index: number): Promise<BankCentre> {
  const s = await linearizer.surrogate(point);
  const f32 = (a: Float64Array, what: string) => {
    const out = Float32Array.from(a);
    for (let i = 0; i < out.length; i++) {
      if (!Number.isFinite(out[i]))
        throw new NetmomentsError(`the linearization at centre ${index} has a non-finite ${what} (element ${i})`, { file: linearizer.model.file });
    }
    return out;
  };
  return { index, point, A: f32(s.A, 'A'), zb: f32(s.zb, 'pre-activation'), B: f32(s.B, 'B'), gb: f32(s.gb, 'output'), D: s.D ? f32(s.D, 'D') : undefined };
}

function manifestBase(linearizer: Linearizer, cl: ClusterResult, options: BuildBankOptions, dataSha: string, count: number, version: string): BankManifest {
  return {
    schema: BANK_SCHEMA,
    version,
    model: { file: linearizer.model.file, sha256: linearizer.model.sha256 },
    split: linearizer.split,
    input: { name: linearizer.input.name, shape: linearizer.input.shape, size: linearizer.n },
    output: { name: linearizer.output.name, shape: linearizer.output.shape, size: linearizer.d },
    skip: linearizer.skip,
    jacobian: linearizer.jacobianMode,
    k: options.k,
    point: options.point ?? 'centroid',
    kmeans: {
      seed: options.seed ?? 0,
      maxIterations: options.maxIterations ?? 100,
      iterations: cl.iterations,
      converged: cl.converged,
      data: { file: options.dataFile, count, sha256: dataSha },
      members: cl.members,
      inertia: cl.inertia,
    },
    files: {},
  };
}

/** A bank held in memory (`--linearize kmeans:K`): the same numbers a saved bank holds. */
/** A bank stores p-unit centres of a Relu split; LeakyRelu, PRelu and Clip splits (more ReLU units, linearize/pieces.ts) are refused. */
function reluSplitOnly(linearizer: Linearizer): void {
  if (linearizer.units === linearizer.p) return;
  throw new NetmomentsError(
    `a linearization bank needs a Relu split; the split point ${linearizer.split.index} ('${linearizer.split.node}') is not a Relu: pick a Relu with --relu, or analyse without a bank`,
    { file: linearizer.model.file, code: 'UNSUPPORTED' },
  );
}

export class MemoryBank implements Bank {
  private constructor(
    readonly manifest: BankManifest,
    readonly centres: Float32Array,
    private readonly data: BankCentre[],
    readonly id: string,
  ) {}
  get k(): number {
    return this.manifest.k;
  }
  get n(): number {
    return this.manifest.input.size;
  }
  centre(i: number): BankCentre {
    return this.data[i];
  }

  /**
   * Cluster `data` (count x n, model units) and linearize at every centre. `version` goes in the
   * manifest. Refuses a bank larger than `maxBytes` (default half the available memory).
   */
  static async build(
    linearizer: Linearizer,
    data: Float32Array,
    count: number,
    options: BuildBankOptions & { version: string; maxBytes?: number },
  ): Promise<MemoryBank> {
    reluSplitOnly(linearizer);
    const est = estimateBank({ n: linearizer.n, p: linearizer.p, d: linearizer.d, skip: linearizer.skip.length > 0 }, options.k);
    const limit = options.maxBytes ?? Math.floor(availableMemory() * 0.5);
    if (est.total > limit) {
      throw new NetmomentsError(
        `a bank of ${est.text} does not fit in the memory this run may use (${formatBytes(limit)}); lower K, or build it on disk once with \`netmoments bank\` and pass --linearize bank:DIR`,
        { code: 'RESOURCE', file: linearizer.model.file },
      );
    }
    const cl = clusterInputs(data, count, linearizer.n, options.k, options);
    options.onProgress?.('kmeans', 1, 1);
    const centres: BankCentre[] = [];
    for (let c = 0; c < options.k; c++) {
      centres.push(await linearizeCentre(linearizer, cl.points.slice(c * linearizer.n, (c + 1) * linearizer.n), c));
      options.onProgress?.('centre', c + 1, options.k);
    }
    const manifest = manifestBase(linearizer, cl, options, dataSha256(data, count * linearizer.n), count, options.version);
    // the id: what a saved bank of the same build would hold (the centres' bytes and the k-means run)
    const h = createHash('sha256').update(JSON.stringify({ ...manifest, model: { sha256: manifest.model.sha256 }, files: {} }));
    h.update(new Uint8Array(cl.centroids.buffer, cl.centroids.byteOffset, cl.centroids.byteLength));
    for (const c of centres)
      for (const a of [c.point, c.A, c.zb, c.B, c.gb, ...(c.D ? [c.D] : [])]) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return new MemoryBank(manifest, cl.centroids, centres, `memory:${h.digest('hex')}`);
  }
}

function centreDir(i: number): string {
  return `centre-${String(i).padStart(4, '0')}`;
}

/** sha256 of the first `size` float32 inputs as little-endian bytes (the platform's byte order is little endian on every Node target). */
function dataSha256(data: Float32Array, size: number): string {
  return sha256Hex(data.subarray(0, size));
}

/**
 * `netmoments bank`: cluster, linearize at each centre and write the bank folder. Centre files
 * go to a staging folder inside `dir` as they are made (memory stays at one centre); when all are
 * done an existing bank's manifest is removed, the files are moved into place and the new
 * manifest is written last. Refuses a bank larger than the free disk space (or `maxBytes`).
 */
/** Refuse a bank of k centres that would not fit in `maxBytes` (default: the free disk space at `dir`). */
export function checkBankFits(sizes: BankSizes, k: number, dir: string, maxBytes?: number): BankEstimate {
  const est = estimateBank(sizes, k);
  const free = freeDiskBytes(dir);
  const limit = maxBytes ?? free;
  if (limit !== undefined && est.total > limit) {
    const where = maxBytes !== undefined ? `--max-size ${formatBytes(maxBytes)}` : `the ${formatBytes(free ?? 0)} free on that disk`;
    throw new NetmomentsError(`a bank of ${est.text} does not fit in ${where}; lower --k or split at a later --relu (a narrower p)`, {
      code: 'RESOURCE',
      file: dir,
    });
  }
  return est;
}

export async function writeBank(
  linearizer: Linearizer,
  data: Float32Array,
  count: number,
  dir: string,
  options: BuildBankOptions & { version: string; maxBytes?: number },
): Promise<{ manifest: BankManifest; estimate: BankEstimate; bytes: number }> {
  reluSplitOnly(linearizer);
  const est = checkBankFits({ n: linearizer.n, p: linearizer.p, d: linearizer.d, skip: linearizer.skip.length > 0 }, options.k, dir, options.maxBytes);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new NetmomentsError('exists and is not a folder', { file: dir, code: 'BAD_USAGE' });
  const cl = clusterInputs(data, count, linearizer.n, options.k, options);
  options.onProgress?.('kmeans', 1, 1);
  mkdirSync(dir, { recursive: true });
  for (const e of readdirSync(dir)) if (e.startsWith('.building-')) rmSync(join(dir, e), { recursive: true, force: true });
  const staging = new StagingFolder(dir, `.building-${process.pid}`);
  const files: Record<string, BankFileEntry> = {};
  const n = linearizer.n;
  const shape = linearizer.input.shape;
  const put = (name: string, data: Float32Array, shp: number[]) => {
    const bytes = encodeNpy(data, shp);
    staging.put(name, bytes);
    files[name] = { sha256: sha256Hex(bytes), bytes: bytes.length, shape: shp };
  };
  try {
    put('centres.npy', cl.centroids, [options.k, ...shape]);
    const { p, d } = linearizer;
    for (let c = 0; c < options.k; c++) {
      const ce = await linearizeCentre(linearizer, cl.points.slice(c * n, (c + 1) * n), c);
      const cd = centreDir(c);
      put(`${cd}/point.npy`, ce.point, shape);
      put(`${cd}/A.npy`, ce.A, [p, n]);
      put(`${cd}/zb.npy`, ce.zb, [p]);
      put(`${cd}/B.npy`, ce.B, [d, p]);
      put(`${cd}/gb.npy`, ce.gb, [d]);
      if (ce.D) put(`${cd}/D.npy`, ce.D, [d, n]);
      options.onProgress?.('centre', c + 1, options.k);
    }
    const manifest = manifestBase(linearizer, cl, options, dataSha256(data, count * n), count, options.version);
    manifest.files = files;
    // swap in: the old manifest goes first, so a folder is never a bank with mixed files
    rmSync(join(dir, BANK_MANIFEST), { force: true });
    for (const e of readdirSync(dir)) if (/^centre-\d+$/.test(e)) rmSync(join(dir, e), { recursive: true, force: true });
    // the centre files move in first, the new manifest last
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    staging.put(BANK_MANIFEST, text);
    staging.commit();
    const bytes = Object.values(files).reduce((a, f) => a + f.bytes, 0) + Buffer.byteLength(text);
    return { manifest, estimate: est, bytes };
  } finally {
    staging.discard();
  }
}

/** What a run expects of a bank: the model and, when the user named them, the split and output. */
export interface BankExpectations {
  modelSha256: string;
  modelFile: string;
  /** Split index the run uses (checked after the linearizer is made). */
  relu?: number;
  output?: string;
  inputSize?: number;
}

function fail(file: string, message: string, code: 'BAD_INPUT' | 'UNSUPPORTED' = 'BAD_INPUT'): never {
  throw new NetmomentsError(message, { file, code });
}

/** Read and check a bank's manifest (schema, types, file list); no file contents yet. */
export function readBankManifest(path: string): { dir: string; manifest: BankManifest; id: string } {
  let dir = path;
  if (existsSync(path) && statSync(path).isFile()) dir = dirname(path);
  const file = join(dir, BANK_MANIFEST);
  if (!existsSync(dir)) fail(path, 'no such bank folder (build one with `netmoments bank`)');
  if (!existsSync(file)) fail(file, 'no manifest.json: not a bank, or a bank whose build did not finish (build it again with `netmoments bank`)');
  const text = readTextOrFail(file);
  let m: BankManifest;
  try {
    m = JSON.parse(text) as BankManifest;
  } catch (e) {
    fail(file, `is not valid JSON (${(e as Error).message}); the bank is damaged, build it again`);
  }
  if (!m || typeof m !== 'object') fail(file, 'is not a bank manifest');
  if (m.schema !== BANK_SCHEMA) fail(file, `has schema ${JSON.stringify(m.schema)}, expected "${BANK_SCHEMA}"`, 'UNSUPPORTED');
  const int = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  if (!int(m.k) || m.k < 1) fail(file, 'has no valid k');
  if (!m.model || typeof m.model.sha256 !== 'string') fail(file, 'has no model sha256');
  if (!m.split || !int(m.split.index) || !int(m.split.width)) fail(file, 'has no valid split');
  if (!m.input || !int(m.input.size) || !Array.isArray(m.input.shape)) fail(file, 'has no valid input description');
  if (!m.output || !int(m.output.size) || typeof m.output.name !== 'string') fail(file, 'has no valid output description');
  if (!Array.isArray(m.skip)) fail(file, 'has no skip list');
  if (!m.files || typeof m.files !== 'object') fail(file, 'has no file list');
  const need = ['centres.npy'];
  for (let c = 0; c < m.k; c++) {
    const cd = centreDir(c);
    need.push(`${cd}/point.npy`, `${cd}/A.npy`, `${cd}/zb.npy`, `${cd}/B.npy`, `${cd}/gb.npy`);
    if (m.skip.length > 0) need.push(`${cd}/D.npy`);
  }
  for (const name of need) {
    const e = m.files[name];
    if (!e || typeof e.sha256 !== 'string' || !int(e.bytes)) fail(file, `does not list ${name} with its sha256 and size`);
  }
  return { dir, manifest: m, id: sha256Hex(text) };
}

/** Check a manifest against the run (model, split, output, input size). */
export function checkBankAgainst(manifest: BankManifest, dir: string, e: BankExpectations): void {
  const file = join(dir, BANK_MANIFEST);
  if (manifest.model.sha256 !== e.modelSha256) {
    fail(
      file,
      `the bank was built for a different model (sha256 ${manifest.model.sha256.slice(0, 12)}..., ${e.modelFile} has ${e.modelSha256.slice(0, 12)}...); build a bank for this model`,
    );
  }
  if (e.relu !== undefined && manifest.split.index !== e.relu) {
    fail(
      file,
      `the bank is split at ReLU ${manifest.split.index} ('${manifest.split.node}'), this run at ReLU ${e.relu}; drop --relu or build a bank at that ReLU`,
    );
  }
  if (e.output !== undefined && manifest.output.name !== e.output) {
    fail(file, `the bank's output is '${manifest.output.name}', this run's is '${e.output}'`);
  }
  if (e.inputSize !== undefined && manifest.input.size !== e.inputSize) {
    fail(file, `the bank's inputs have ${manifest.input.size} elements, the model's have ${e.inputSize}`);
  }
}

/**
 * A bank read from its folder. Opening checks the manifest and the sha256 of every file (reading
 * each once); centres are kept decoded in memory while they fit `cacheBytes`, else read again (and
 * checked again) when needed.
 */
export class DiskBank implements Bank {
  private readonly cache = new Map<number, BankCentre>();
  private cached = 0;
  private centroids: Float32Array = new Float32Array(0);

  private constructor(
    readonly dir: string,
    readonly manifest: BankManifest,
    readonly id: string,
    private readonly cacheBytes: number,
  ) {}

  get centres(): Float32Array {
    return this.centroids;
  }

  get k(): number {
    return this.manifest.k;
  }
  get n(): number {
    return this.manifest.input.size;
  }

  static open(path: string, e: BankExpectations, options: { cacheBytes?: number; onProgress?: (done: number, total: number) => void } = {}): DiskBank {
    const { dir, manifest, id } = readBankManifest(path);
    checkBankAgainst(manifest, dir, e);
    const names = Object.keys(manifest.files);
    const cacheBytes = options.cacheBytes ?? Math.floor(availableMemory() * 0.25);
    const bank = new DiskBank(dir, manifest, id, cacheBytes);
    // every file once: size and sha256; decode while the cache has room
    let i = 0;
    const raw = new Map<string, Uint8Array>();
    for (const name of names) {
      raw.set(name, bank.readChecked(name));
      options.onProgress?.(++i, names.length);
      const m = /^centre-(\d+)\//.exec(name);
      if (m) {
        const c = Number(m[1]);
        const complete = ['point', 'A', 'zb', 'B', 'gb', ...(manifest.skip.length > 0 ? ['D'] : [])].every((f) => raw.has(`${centreDir(c)}/${f}.npy`));
        if (complete) {
          const ce = bank.decodeCentre(c, (f) => raw.get(`${centreDir(c)}/${f}.npy`)!);
          for (const f of ['point', 'A', 'zb', 'B', 'gb', 'D']) raw.delete(`${centreDir(c)}/${f}.npy`);
          bank.remember(ce);
        }
      }
    }
    bank.centroids = bank.decode('centres.npy', raw.get('centres.npy')!, [manifest.k, manifest.input.size]);
    return bank;
  }

  private readChecked(name: string): Uint8Array {
    const path = join(this.dir, name);
    const entry = this.manifest.files[name];
    const bytes = readFileOrFail(path, { missing: 'missing: the bank is incomplete or damaged (build it again with `netmoments bank`)' });
    if (bytes.length !== entry.bytes) fail(path, `has ${bytes.length} bytes, the manifest says ${entry.bytes}: the bank is damaged (build it again)`);
    if (sha256Hex(bytes) !== entry.sha256) fail(path, 'does not match the sha256 in the manifest: the bank is damaged (build it again)');
    return bytes;
  }

  private decode(name: string, bytes: Uint8Array, shape: number[]): Float32Array {
    const path = join(this.dir, name);
    const a = parseNpy(bytes, path);
    if (!(a.data instanceof Float32Array)) fail(path, `is ${a.dtype}, a bank holds float32`);
    const want = shape.reduce((x, y) => x * y, 1);
    if (a.data.length !== want) fail(path, `has ${a.data.length} values, [${shape.join(', ')}] expected`);
    for (let i = 0; i < a.data.length; i++) if (!Number.isFinite(a.data[i])) fail(path, `holds a non-finite value at element ${i}`);
    return a.data;
  }

  private decodeCentre(c: number, get: (f: string) => Uint8Array): BankCentre {
    const m = this.manifest;
    const n = m.input.size;
    const p = m.split.width;
    const d = m.output.size;
    const cd = centreDir(c);
    const dec = (f: string, shape: number[]) => this.decode(`${cd}/${f}.npy`, get(f), shape);
    return {
      index: c,
      point: dec('point', [n]),
      A: dec('A', [p, n]),
      zb: dec('zb', [p]),
      B: dec('B', [d, p]),
      gb: dec('gb', [d]),
      D: m.skip.length > 0 ? dec('D', [d, n]) : undefined,
    };
  }

  private remember(c: BankCentre): void {
    const bytes = (c.A.length + c.B.length + c.point.length + c.zb.length + c.gb.length + (c.D?.length ?? 0)) * 4;
    if (this.cached + bytes > this.cacheBytes) return;
    this.cache.set(c.index, c);
    this.cached += bytes;
  }

  centre(i: number): BankCentre {
    if (!(Number.isInteger(i) && i >= 0 && i < this.k)) throw new Error(`bank centre ${i} out of range`);
    const hit = this.cache.get(i);
    if (hit) return hit;
    const cd = centreDir(i);
    return this.decodeCentre(i, (f) => this.readChecked(`${cd}/${f}.npy`));
  }
}
