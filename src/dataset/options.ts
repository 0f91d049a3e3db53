/**
 * What a dataset report run takes and gives back, and the parsing of `--linearize`. The runner is
 * src/dataset/runner.ts; src/dataset/index.ts describes the whole.
 */
import type { AnalyzeOptions, Analyzer } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import type { BankPoint } from '../linearize/bank.js';
import type { ReportSummary, SampleRecord } from '../report/summary.js';

/** Where inputs are linearized: each at itself, at the nearest of K k-means centres of the data, or at a saved bank's centres. */
export type LinearizeSpec = { kind: 'input' } | { kind: 'kmeans'; k: number } | { kind: 'bank'; path: string };

/** Parse `input`, `kmeans:K` or `bank:DIR`. */
export function parseLinearize(text: string): LinearizeSpec {
  if (text === 'input') return { kind: 'input' };
  const km = /^kmeans:(\d+)$/.exec(text);
  if (km) {
    const k = Number(km[1]);
    if (k < 1) throw new NetmomentsError(`--linearize kmeans:K needs K >= 1, got ${text}`, { code: 'BAD_USAGE' });
    return { kind: 'kmeans', k };
  }
  if (text.startsWith('bank:') && text.length > 5) return { kind: 'bank', path: text.slice(5) };
  throw new NetmomentsError(`--linearize expects 'input', 'kmeans:K' or 'bank:DIR', got '${text}'`, { code: 'BAD_USAGE' });
}

/** A dataset report's settings: analyze's (model split, noise, threads ...) less the per-input ones, plus the run's own. */
export interface ReportOptions extends Omit<AnalyzeOptions, 'variance' | 'covariance' | 'mc' | 'at' | 'flips'> {
  linearize: LinearizeSpec;
  /** k-means settings for kmeans:K. */
  kmeans?: { seed?: number; maxIterations?: number; point?: BankPoint };
  /** 'exact' (default): mean, exact variance, class and flip probabilities; 'none': mean only. */
  variance?: 'exact' | 'none';
  /**
   * With a bank (default true): each input takes the nearest centre of its own clean class, and is
   * linearized at itself when no centre has its class or the centre's surrogate is off at the input
   * (src/dataset/chunk.ts). false: the nearest centre whatever its class, never re-linearized (the
   * paper's Table 3); inputs whose surrogate is off are then only marked by their trust verdict.
   */
  bankFallback?: boolean;
  /** Per-logit mean and variance columns in samples.csv. */
  perLogit?: boolean;
  /** Monte Carlo samples per sampled input (0: none) and how many inputs get them. */
  mc?: number;
  mcInputs?: number;
  /**
   * Without `mc`: Monte Carlo samples behind the trust verdicts of the mcInputs inputs (0, the
   * default: none), as analyze's trustCheck; only their verdicts use them (no Monte Carlo columns).
   */
  trustCheck?: number;
  /** Points of the shared class-probability estimate (default 8192). */
  probabilitySamples?: number;
  /** Inputs per chunk (default 1024 with a bank, 16 with --linearize input). */
  chunk?: number;
  shard?: { index: number; count: number };
  /** Where the outputs (and the checkpoint) go; without it nothing is written. */
  outDir?: string;
  resume?: boolean;
  /** Names for the report. */
  dataFile: string;
  labelsFile?: string;
  noiseMeanFile?: string;
  /** Bytes a kmeans:K bank may take in memory (default half the available memory). */
  maxBankBytes?: number;
  /**
   * Engines kept across runs that differ only in the noise (sweep's sigmas), linearizing at each
   * input: a run takes a held Analyzer under its noise (Analyzer.withNoise: the split, sessions and
   * tangent models made once) instead of creating one, adds the one it creates when none fits, and
   * releases none of them: the caller releases them at the end.
   */
  engines?: Analyzer[];
  onPhase?: (phase: 'bank' | 'inputs', total: number, done: number) => void;
  onProgress?: (done: number) => void;
  onWarning?: (m: string) => void;
}

/** What a run produced: the outputs (also written with an out dir), the records and how the run went. */
export interface ReportResult {
  summary: ReportSummary;
  files: Record<string, string>;
  records: SampleRecord[];
  /** Inputs computed by this run (not taken from a checkpoint). */
  computed: number;
  /** Inputs taken from a checkpoint. */
  resumed: number;
  /** Seconds spent on the inputs (after sessions, data and bank were ready). */
  seconds: number;
  /** CPU seconds of the process (all threads, user + system) over the same phase. */
  cpuSeconds: number;
  /** The outputs were already complete (--resume of a finished run). */
  alreadyComplete: boolean;
}
