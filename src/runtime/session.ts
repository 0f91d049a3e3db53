/**
 * The one place that talks to onnxruntime-node for model execution: sessions, providers, tensors.
 * Sessions are created once per model (onnxruntime-node leaks memory when sessions are created and
 * released in a loop) and reused for every batch.
 */
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { NetmomentsError, oneLine } from '../errors.js';

// onnxruntime's own logger writes multi-line errors to stderr; our errors say it in one line.
ort.env.logLevel = 'fatal';

/**
 * Whether onnxruntime-node has its CUDA provider library beside its binding (it does only when it
 * was installed with ONNXRUNTIME_NODE_INSTALL=cuda12). Checked before asking onnxruntime, which
 * would print a multi-line error of its own.
 */
export function cudaProviderInstalled(): boolean {
  try {
    const pkg = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const dir = join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
    const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
    return existsSync(join(dir, lib));
  } catch {
    return false;
  }
}

const CUDA_HELP =
  'install onnxruntime-node with its CUDA binaries (ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node, with CUDA 12 and cuDNN 9 on the machine), or use --provider cpu';

export type Provider = 'cpu' | 'cuda';

export interface SessionOptions {
  /** intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  provider?: Provider;
  /** The file the model came from, for error messages. */
  file?: string;
  /**
   * onnxruntime's CPU memory arena (default on): it keeps every block a run allocated for the
   * session's next runs. Off for sessions whose runs are large and few, so many of them (moment
   * propagation: one per affine segment, each with its own peak) do not hold their peaks at once.
   */
  memoryArena?: boolean;
  /**
   * A session run once, at batch 1 (a shape probe): onnxruntime makes it without graph
   * optimizations and without pre-packing weights, work that costs more than it saves on one run
   * (AlexNet's probe with every tensor as an output: 1.2 CPU s to make with them).
   */
  runOnce?: boolean;
}

export type HostTensorType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';
export type HostData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** A tensor in host memory: what goes into and comes out of a session run. */
export interface HostTensor {
  type: HostTensorType;
  data: HostData;
  dims: number[];
}

export function float32Tensor(data: Float32Array, dims: number[]): HostTensor {
  return { type: 'float32', data, dims };
}
export function float64Tensor(data: Float64Array, dims: number[]): HostTensor {
  return { type: 'float64', data, dims };
}

export class ModelSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly file: string | undefined,
  ) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
    const provider = options.provider ?? 'cpu';
    if (provider === 'cuda' && !cudaProviderInstalled()) {
      throw new NetmomentsError(`the CUDA execution provider is not installed: ${CUDA_HELP}`, { code: 'UNSUPPORTED', file: options.file });
    }
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: options.runOnce ? 'disabled' : 'all',
      logSeverityLevel: 4,
    };
    if (options.runOnce) sessionOptions.extra = { session: { disable_prepacking: '1' } };
    if (options.memoryArena === false) sessionOptions.enableCpuMemArena = false;
    if (options.threads !== undefined && options.threads > 0) {
      sessionOptions.intraOpNumThreads = options.threads;
      sessionOptions.interOpNumThreads = 1;
    }
    try {
      const s = await ort.InferenceSession.create(model, sessionOptions);
      return new ModelSession(s, options.file);
    } catch (e) {
      const msg = oneLine(e instanceof Error ? e.message : String(e));
      if (provider === 'cuda') {
        throw new NetmomentsError(`the CUDA execution provider is not available (${msg}); ${CUDA_HELP}`, { code: 'UNSUPPORTED', file: options.file });
      }
      throw new NetmomentsError(`onnxruntime cannot load the model: ${msg}`, { file: options.file });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Run with the given feeds; returns the requested outputs (default: all). */
  async run(feeds: Record<string, HostTensor>, outputs?: readonly string[]): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor(t.type, t.data as never, t.dims);
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = outputs ? await this.session.run(ortFeeds, outputs as string[]) : await this.session.run(ortFeeds);
    } catch (e) {
      throw new NetmomentsError(`onnxruntime failed to run the model: ${oneLine(e instanceof Error ? e.message : String(e))}`, {
        file: this.file,
      });
    }
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(result)) {
      const t = v as ort.Tensor;
      out[k] = { type: t.type as HostTensorType, data: t.data as HostData, dims: [...t.dims].map(Number) };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
