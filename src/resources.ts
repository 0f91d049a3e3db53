/**
 * Resource limits: how much memory a run will need, estimated before the work starts, and a clear
 * refusal (a RESOURCE NetmomentsError, exit 2) instead of being killed by the operating system.
 *
 * The estimate adds up the large buffers of an `analyze` run (docs/ARCHITECTURE.md, section 4, cost model):
 *
 *   n input elements, p split width, d outputs, r noise directions (the noise's support, or the rank
 *   of a full covariance), K the top part's inputs per direction (p plus the tensors that skip the cut)
 *
 *   held throughout   onnxruntime sessions (about 6 copies of the model), the noise factor
 *                     (src/noise.ts noiseFactor: for isotropic and diagonal noise its support and
 *                     standard deviations, r values each; for a full covariance F on its support,
 *                     q x r), A F (p x r), B (d x p), D F (d x r)
 *   per input         x and the linearization point xb (float32), mu and delta = mu - xb (float64)
 *   linearization     batches of JVP directions through the bottom (chunks of at most 96 MiB of
 *                     float64 outputs, plus their float32 copies and onnxruntime's tangent
 *                     activations), the top's input directions ((r + 1) x K), the Jacobian B in
 *                     panels of identity columns (the engine's 256 MiB budget), the flip statistics;
 *                     in reverse mode (src/linearize/jacobian.ts, direction by cost) the bottom's
 *                     rows come in blocks of the same size (rows x n float32 with their identity
 *                     cotangents, chunked like the directions) and B in panels of rows within the
 *                     same budget, so the same bounds hold; where A F would be gigabytes (ImageNet
 *                     inputs, src/linearize/linearizer.ts gramPlanned) the Gram form S = A Sigma A^T
 *                     (p x p) replaces it: one block of reverse rows at a time plus, for the 'gemm'
 *                     strategy, A's rows kept (p x n float32) and two float64 tiles of them
 *   moments           pair blocks (at most 4M doubles a panel, three live), noise factors of A
 *                     (p x r, up to three copies), the d x d covariance, class probabilities
 *   Monte Carlo       one batch of samples (1000 x n) and the model's activations for it
 *   full covariance   its eigendecomposition (q x q, about six copies as JavaScript arrays)
 *
 * Phases that run one after another still count together: typed arrays are freed by the garbage
 * collector some time after their last use, so the sum is closer to the peak than the maximum is.
 * Memory already in use when the check runs (Node, onnxruntime, the model file, the inputs) is not
 * counted: the default limit is a fraction of the memory still available at that point. The
 * two-stage check runs once the split's sessions exist: it counts what they took as measured
 * (sessionsBytes, resident memory since the limit was taken) instead of six copies of the model.
 * Calibration on the bundled LeNet, digit 0, sigma 8: split at ReLU 0 (p = 11520) the estimate is
 * about 1.1 GiB for a measured growth of about 0.7 GiB; at ReLU 2 (p = 500) about 0.35 GiB for 0.25.
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { NetmomentsError } from './errors.js';

/** One named contribution to the estimate, with the option that makes it smaller. */
export interface MemoryPart {
  what: string;
  bytes: number;
  /** What lowers this part (an option and how). */
  lever: string;
}

export interface MemoryEstimate {
  /** Bytes the run is expected to allocate on top of what is already in use. */
  total: number;
  parts: MemoryPart[];
}

/** Sizes an analyze-like run depends on. Unknown ones (before the model is split) may be left out. */
export interface RunSizes {
  /** Input elements n. */
  n: number;
  /** Split width p (unknown before the split: 0). */
  p?: number;
  /** Output elements d. */
  d?: number;
  /** Noise directions r (support size, or rank bound of a full covariance: its support size q). */
  r: number;
  /** Bytes of the model file (sessions hold several copies). */
  modelBytes?: number;
  /**
   * Memory the sessions and the split took, measured once they exist (resident memory now less at
   * the start of the run, when the limit was taken); replaces the guess of six copies of the model.
   */
  sessionsBytes?: number;
  /** Elements the bottom part's JVP returns per direction (the split ReLU's input and every tensor the flip statistics read). */
  bottomOutputs?: number;
  /** Elements of the top part's inputs per direction: p plus the tensors that skip the cut. */
  topInputs?: number;
  /** Elements the top part returns per direction for the flip statistics (0: no ReLU or max pool above the cut). */
  topFlipOutputs?: number;
  /** Directions per tangent run of the B Jacobian (the engine's default chunk), when known. */
  topChunk?: number;
  /** Support size of a full covariance that is eigendecomposed (0 for isotropic or diagonal noise). */
  covarianceSupport?: number;
  /** Monte Carlo samples (0: none) and batch size (default 1000). */
  mc?: number;
  mcBatch?: number;
  /** Monte Carlo samples through a low-rank factor n x r (full covariance or a window). */
  mcLowRank?: boolean;
  /** Quasi-Monte Carlo points of the class probabilities (default 4096; 0 when no covariance is computed). */
  probabilityPoints?: number;
  /** The paper's variance is computed too (one more copy of the noise factors). */
  paper?: boolean;
  /** Any variance is computed (default true): without, no pair blocks. */
  variance?: boolean;
  /**
   * The linearization is formed as its Gram matrix S = (A F)(A F)^T (p x p) by reverse-then-forward
   * passes over blocks of the bottom's rows, instead of A F (src/linearize/linearizer.ts gramPlanned).
   */
  gram?: boolean;
  /** Rows per block of the Gram form (src/linearize/linearizer.ts gramChunk), when known. */
  gramChunk?: number;
  /**
   * What one block of the Gram form holds in onnxruntime's arenas (rows times the engines' bytes per
   * row, src/linearize/linearizer.ts gramBlockBytes), when known; else two engine budgets.
   */
  gramBlockBytes?: number;
  /**
   * Sessions made at their first use, after the bottom Jacobian (the flips' bottom engine and the
   * whole model, src/linearize/linearizer.ts deferredSessionsBytes): not in sessionsBytes. With the
   * Gram form's kept rows (collected before they are made) the larger of the two counts.
   */
  deferredSessionsBytes?: number;
  /**
   * The Gram form keeps A's rows (p x n float32) and multiplies them by GEMM in tiles of this many
   * rows (src/linearize/linearizer.ts gramStrategy 'gemm', gramTile); absent: the 'forward' strategy.
   */
  gramRows?: number;
  /**
   * Worker threads that run the Gram form's reverse passes beside the main thread (src/linearize/
   * linearizer.ts gramWorkers), and what each holds (gramWorkerBytes: a session of the bottom's
   * adjoint, one block): they exist while the rows are made, released before the deferred sessions.
   */
  gramWorkers?: number;
  gramWorkerBytes?: number;
}

const MiB = 1024 * 1024;
/** The linearizer's chunk of float64 JVP outputs (src/linearize/linearizer.ts). */
const LINEARIZER_CHUNK_BYTES = 96 * MiB;
/** The Jacobian engine's default budget per tangent run (src/linearize/jacobian.ts). */
const ENGINE_BUDGET_BYTES = 256 * MiB;
/** The moments engine's pair panel (src/moments/network.ts, panelElements). */
const PANEL_ELEMENTS = 4_000_000;

/** Estimate the memory of an analyze run from its sizes. */
export function estimateAnalyzeMemory(s: RunSizes): MemoryEstimate {
  const n = Math.max(0, s.n);
  const p = Math.max(0, s.p ?? 0);
  const d = Math.max(0, s.d ?? 0);
  const r = Math.max(0, s.r);
  const parts: MemoryPart[] = [];
  const add = (what: string, bytes: number, lever: string) => {
    if (bytes > 0 && Number.isFinite(bytes)) parts.push({ what, bytes, lever });
    else if (!Number.isFinite(bytes)) parts.push({ what, bytes: Number.MAX_VALUE, lever });
  };
  const RELU = 'a later --relu (a narrower split)';
  const NOISE = '--window (noise on fewer input elements)';

  if (s.sessionsBytes !== undefined) add('onnxruntime sessions and the split (measured)', s.sessionsBytes, 'a smaller model');
  else add('onnxruntime sessions', (s.modelBytes ?? 0) * 6, 'a smaller model');
  const q = s.covarianceSupport ?? 0;
  // the noise factor: dense only for a full covariance (q x r on its support); isotropic and
  // diagonal noise keep the support (int32) and one standard deviation (float64) per direction
  if (q > 0) add(`noise factor F (${q} x ${r})`, q * r * 8, `${NOISE} or --noise-var`);
  else add(`noise support and standard deviations (${r} elements)`, r * 12, NOISE);
  add(`the input, its mean, linearization point and offset (${n} elements each)`, n * 24, 'a model with a smaller input');
  add(`eigendecomposition of the ${q} x ${q} noise covariance`, q * q * 8 * 6, `${NOISE} or --noise-var`);
  const gram = s.gram === true && p > 0;
  const deferred = Math.max(0, s.deferredSessionsBytes ?? 0);
  const deferredText = "onnxruntime sessions made at their first use (the flips' bottom and the whole model)";
  if (p > 0) {
    if (gram) add(`S = (A F)(A F)^T (${p} x ${p})`, p * p * 8, RELU);
    else add(`A F (${p} x ${r})`, p * r * 8, RELU);
    // the kept rows, and per GEMM of two tiles their float64 copies (onnxruntime widens the operands)
    // and the product; collected before the deferred sessions are made, so the larger counts
    const kept = gram && s.gramRows ? p * n * 4 + 2 * s.gramRows * n * 12 + s.gramRows ** 2 * 8 : 0;
    const workers = gram ? Math.max(0, s.gramWorkers ?? 0) : 0;
    const workerBytes = workers * Math.max(0, s.gramWorkerBytes ?? 0);
    if (kept + workerBytes > 0 && kept + workerBytes >= deferred) {
      add(`A's rows (${p} x ${n} float32) and the GEMM tiles of S`, kept, RELU);
      add(
        `${workers} worker thread${workers > 1 ? 's' : ''} with a session of the bottom's adjoint each`,
        workerBytes,
        '--workers 0 (the reverse passes on one core)',
      );
    } else add(deferredText, deferred, 'a smaller model');
    add(`B (${d} x ${p})`, d * p * 8, RELU);
  } else add(deferredText, deferred, 'a smaller model');
  const K = s.topInputs ?? p;
  if (K > p) add(`D F (${d} x ${r})`, d * r * 8, NOISE);

  // linearization: the largest of the sequential steps, plus the top's input directions
  if (p > 0) {
    const Ob = Math.max(s.bottomOutputs ?? p, 1);
    const chunkB = Math.min(r + 1, Math.max(1, Math.floor(LINEARIZER_CHUNK_BYTES / (8 * Math.max(Ob, n)))));
    // the Gram form: per block of m rows, the rows (float32, from onnxruntime and as scaled), their
    // identity cotangents and images (float32), each engine's working set within its budget
    const m = Math.max(1, Math.min(p, s.gramChunk ?? Math.floor(LINEARIZER_CHUNK_BYTES / (4 * Math.max(n, 1)))));
    const bottom = gram ? m * (8 * n + 12 * Ob) + (s.gramBlockBytes ?? 2 * ENGINE_BUDGET_BYTES) : chunkB * (12 * n + 20 * Ob);
    const topB = s.topChunk && s.topChunk > 0 ? ENGINE_BUDGET_BYTES * Math.min(1, p / s.topChunk) : p * (K + d) * 12 * 4;
    const Ot = s.topFlipOutputs ?? 0;
    const chunkT = Ot > 0 ? Math.min(r + 1, Math.max(1, Math.floor(LINEARIZER_CHUNK_BYTES / (8 * Math.max(Ot, K))))) : 0;
    const flips = chunkT * (Ot + K) * 20;
    const step = Math.max(bottom, topB, flips);
    const which = step === bottom ? 'JVP batches through the bottom part' : step === topB ? 'Jacobian B in panels' : 'flip statistics through the top part';
    add(gram && step === bottom ? 'reverse (and forward) passes of the Gram form, one block of rows at a time' : which, step, step === bottom ? NOISE : RELU);
    // skipDirs of the linearizer: only with tensors that skip the cut (the Gram form has none)
    if (!gram) add(`top input directions (${r + 1} x ${K})`, (r + 1) * K * 8, NOISE);
  }

  // moments, Monte Carlo, class probabilities: one after the other; the largest counts
  const later: MemoryPart[] = [];
  if (p > 0 && s.variance !== false && gram) {
    // gramForm (src/linearize/bankMoments.ts): S gathered on the units on or uncertain (up to p x p),
    // B diag(w) and its product with it (d x p each), the pair panels and their B columns
    const qq = Math.min(p * p, PANEL_ELEMENTS);
    later.push({ what: 'pair blocks and Gram gathers of the variance', bytes: qq * 8 * 3 + p * p * 8 + d * p * 8 * 4 + d * d * 8 * 3, lever: RELU });
  } else if (p > 0 && s.variance !== false) {
    const qq = Math.min(p * p, PANEL_ELEMENTS);
    later.push({
      what: 'pair blocks and noise factors of the variance',
      bytes: qq * 8 * 3 + p * r * 8 * (s.paper === false ? 2 : 3) + d * r * 8 * 4 + d * d * 8 * 3,
      lever: RELU,
    });
  } else if (p > 0) {
    later.push({ what: 'noise factors of the mean', bytes: p * r * 8, lever: RELU });
  }
  const points = s.probabilityPoints ?? 4096;
  if (d > 0 && points > 0) later.push({ what: 'class probabilities', bytes: points * d * 8 * 3 + d * d * 8 * 2, lever: 'a smaller output' });
  const mc = s.mc ?? 0;
  if (mc > 0) {
    const b = Math.min(mc, s.mcBatch ?? 1000);
    const act = (s.bottomOutputs ?? p) + (s.topFlipOutputs ?? 0) + 2 * (n + p + d);
    const lowRank = s.mcLowRank ? n * r * 8 : 0;
    later.push({ what: `Monte Carlo batches (${b} samples)`, bytes: b * (12 * n + 8 * d + 4 * act) + lowRank, lever: 'fewer --mc samples' });
  }
  if (later.length > 0) {
    const big = later.reduce((a, x) => (x.bytes > a.bytes ? x : a));
    add(big.what, big.bytes, big.lever);
  }
  const total = parts.reduce((a, x) => a + x.bytes, 0);
  parts.sort((a, b) => b.bytes - a.bytes);
  return { total, parts };
}

/**
 * Memory still available to this process: cgroup-aware where Node knows it, else the system's free
 * memory; on Linux also no more than the address space left under `ulimit -v` (RLIMIT_AS, which
 * neither of those sees: an allocation past it fails although the machine has memory to spare).
 */
export function availableMemory(): number {
  const pr = process as unknown as { availableMemory?: () => number };
  let avail = freemem();
  if (typeof pr.availableMemory === 'function') {
    const v = pr.availableMemory();
    if (Number.isFinite(v) && v > 0) avail = v;
  }
  const headroom = addressSpaceHeadroom();
  return headroom === undefined ? avail : Math.max(0, Math.min(avail, headroom));
}

/** RLIMIT_AS minus the address space in use, from /proc/self (Linux); undefined when unlimited or unknown. */
function addressSpaceHeadroom(): number | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max address space\s+(\d+|unlimited)/m.exec(limits);
    if (!m || m[1] === 'unlimited') return undefined;
    const status = readFileSync('/proc/self/status', 'utf8');
    const vm = /^VmSize:\s+(\d+)\s*kB/m.exec(status);
    return Number(m[1]) - (vm ? Number(vm[1]) * 1024 : 0);
  } catch {
    return undefined;
  }
}

/** Fraction of the available memory a run may plan to use when --max-memory is not given. */
export const DEFAULT_MEMORY_FRACTION = 0.8;

/** The default limit: DEFAULT_MEMORY_FRACTION of the memory available now. */
export function defaultMemoryLimit(): number {
  return Math.floor(availableMemory() * DEFAULT_MEMORY_FRACTION);
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Parse a memory size: a number of bytes, or a number with a unit K, M, G or T (powers of 1024;
 * 'KB', 'KiB', 'k' all mean 1024 bytes): '512M', '4G', '1.5GiB', '1073741824'.
 */
export function parseMemorySize(text: string | number, option = '--max-memory'): number {
  const bad = () => new NetmomentsError(`${option} expects a size such as 512M, 4G or a number of bytes, got '${text}'`, { code: 'BAD_USAGE' });
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text <= 0) throw bad();
    return Math.floor(text);
  }
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtb]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw bad();
  const value = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!Number.isFinite(value) || value < 1) throw bad();
  return Math.floor(value);
}

/** Bytes as a short human size: 812 MiB, 1.4 GiB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'an unbounded amount';
  if (bytes >= 1024 ** 6) return `${bytes.toExponential(1)} bytes`;
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} bytes` : `${v >= 100 ? Math.round(v) : v.toPrecision(2)} ${units[u]}`;
}

export interface MemoryLimit {
  bytes: number;
  /** Where the limit came from, for the message. */
  source: 'option' | 'default';
}

/** The limit from --max-memory, or the default fraction of the available memory. */
export function memoryLimit(option?: string | number): MemoryLimit {
  if (option === undefined || option === '') return { bytes: defaultMemoryLimit(), source: 'default' };
  return { bytes: parseMemorySize(option), source: 'option' };
}

/**
 * Refuse a run whose estimate exceeds the limit: a RESOURCE error with the estimate, its largest
 * parts and what lowers them, and the option that raises the limit.
 */
export function checkMemory(estimate: MemoryEstimate, limit: MemoryLimit | number, file?: string): void {
  const lim: MemoryLimit = typeof limit === 'number' ? { bytes: limit, source: 'option' } : limit;
  if (estimate.total <= lim.bytes) return;
  const top = estimate.parts.slice(0, 3).map((x) => `${x.what} ${formatBytes(x.bytes)}`);
  const levers = [...new Set(estimate.parts.slice(0, 2).map((x) => x.lever))];
  const limitText =
    lim.source === 'default'
      ? `the default limit of ${formatBytes(lim.bytes)} (${Math.round(DEFAULT_MEMORY_FRACTION * 100)}% of the memory available now)`
      : `the limit of ${formatBytes(lim.bytes)} set by --max-memory`;
  throw new NetmomentsError(
    `this run would need about ${formatBytes(estimate.total)} of memory (${top.join(', ')}), more than ${limitText}; ` +
      `lower it with ${levers.join(' or ')}, or raise the limit with --max-memory (e.g. --max-memory ${suggest(estimate.total)})`,
    { code: 'RESOURCE', file },
  );
}

function suggest(bytes: number): string {
  const g = bytes / 1024 ** 3;
  if (!Number.isFinite(g) || g > 1024 ** 2) return '64G';
  if (g >= 1) return `${Math.ceil(g * 1.25)}G`;
  return `${Math.max(1, Math.ceil((bytes / MiB) * 1.25))}M`;
}

/** The parts of a Linearizer the estimate reads (its Jacobian engines are internal; absent ones are estimated). */
interface LinearizerLike {
  n: number;
  p: number;
  units?: number;
  d: number;
}
interface EngineLike {
  inputSize?: number;
  outputSize?: number;
  defaultChunk?: number;
}

/** Sizes of a created Linearizer: n, p, d and, where its engines show them, their per-direction sizes. */
export function linearizerSizes(lin: LinearizerLike): Pick<RunSizes, 'n' | 'p' | 'd' | 'bottomOutputs' | 'topInputs' | 'topFlipOutputs' | 'topChunk'> {
  const parts = (lin as unknown as { parts?: { bottom?: EngineLike; topB?: EngineLike; topFlips?: EngineLike } }).parts;
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);
  return {
    n: lin.n,
    // the ReLU surrogate's width: p for a Relu split, more for LeakyRelu, PRelu and Clip (linearize/pieces.ts)
    p: lin.units ?? lin.p,
    d: lin.d,
    bottomOutputs: num(parts?.bottom?.outputSize),
    topInputs: num(parts?.topB?.inputSize),
    topFlipOutputs: num(parts?.topFlips?.outputSize) ?? 0,
    topChunk: num(parts?.topB?.defaultChunk),
  };
}

/** Bytes per element of the ONNX types a data input may have (others count as 8). */
const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

interface InputLike {
  name: string;
  elemType: number;
  shape?: readonly (number | string | null)[];
}

/**
 * Before the shape probe (one run at zeros at batch 1 and one at batch 2, src/onnx/shapes.ts): the
 * zero inputs alone, a lower bound of what the runs allocate, must fit in the limit. A model whose
 * declared input is absurdly large (the loader accepts up to 2^32 elements per tensor) is refused
 * here instead of being killed by the operating system halfway through.
 */
export function checkShapeProbe(inputs: readonly InputLike[], file?: string, limit: MemoryLimit | number = memoryLimit()): void {
  let bytes = 0;
  for (const v of inputs) {
    if (!v.shape) continue;
    const dynamic = v.shape.length > 0 && typeof v.shape[0] !== 'number';
    let count = 1;
    v.shape.forEach((d, axis) => {
      count *= typeof d === 'number' ? Math.max(0, d) : axis === 0 ? 1 : 1;
    });
    bytes += count * (ELEMENT_BYTES[v.elemType] ?? 8) * (dynamic ? 3 : 1);
  }
  const lim: MemoryLimit = typeof limit === 'number' ? { bytes: limit, source: 'option' } : limit;
  if (bytes <= lim.bytes) return;
  const shapes = inputs.map((v) => `'${v.name}' [${(v.shape ?? []).map((d) => (d === null ? '?' : String(d))).join(', ')}]`).join(', ');
  throw new NetmomentsError(
    `the model's declared input ${shapes} alone needs ${formatBytes(bytes)} to run once at zeros for the tensor shapes, ` +
      `more than ${lim.source === 'default' ? `${Math.round(DEFAULT_MEMORY_FRACTION * 100)}% of the memory available now (${formatBytes(lim.bytes)})` : `the limit of ${formatBytes(lim.bytes)}`}; the input shape is not plausible`,
    { code: 'RESOURCE', file },
  );
}

/**
 * A zero-filled float32 buffer of `count` values for `what`, refused (RESOURCE, naming `file`)
 * when it alone exceeds the limit, or when the allocation fails (a process under ulimit -v or a
 * cgroup can fail where the available memory looked sufficient).
 */
export function allocateFloat32(count: number, what: string, file?: string, limit: MemoryLimit | number = memoryLimit()): Float32Array {
  checkMemory({ total: count * 4, parts: [{ what, bytes: count * 4, lever: 'a model with a smaller input' }] }, limit, file);
  try {
    return new Float32Array(count);
  } catch (e) {
    throw new NetmomentsError(`cannot allocate ${formatBytes(count * 4)} for ${what} (${e instanceof Error ? e.message : String(e)})`, {
      code: 'RESOURCE',
      file,
      cause: e,
    });
  }
}
