/**
 * The real model run forward, without a split: g at a batch of inputs through onnxruntime, for the
 * clean outputs and the Monte Carlo of an analysis that does not linearize (moment propagation,
 * src/propagate/). The same batching as the Linearizer's `evaluate` (src/linearize/linearizer.ts):
 * at most EVALUATE_BATCH inputs per run, and one input at a time for a model that bakes batch 1 in
 * somewhere the batch rewrite did not reach.
 */
import { NetmomentsError } from '../errors.js';
import type { Graph } from '../onnx/graph.js';
import { DataType } from '../onnx/proto.js';
import { ModelSession, type HostTensor, type Provider } from '../runtime/session.js';
import { moveWeightsToInputs } from '../onnx/weightInputs.js';
import type { TensorDescription } from './linearizer.js';

/** Inputs per onnxruntime run (as Linearizer.evaluate). */
const EVALUATE_BATCH = 64;

/**
 * The session starts as a one-run session (ModelSession runOnce: no graph optimizations, no
 * pre-packed weights, the large weights fed as inputs: src/onnx/weightInputs.ts), which is all an
 * analysis of one input without a Monte Carlo check asks for (its clean output): making an
 * optimized session of AlexNet cost 0.7 CPU s, more than the run, and a one-run session with its
 * weights as initializers still 0.6 s (serializing, parsing and copying 244 MB). The first call
 * with more than one input, or the second call, replaces it with an optimized one.
 */
export class ModelEvaluator {
  private batched = true;
  private calls = 0;
  private optimized?: Promise<void>;

  private constructor(
    readonly input: TensorDescription,
    readonly output: TensorDescription,
    private session: ModelSession,
    /** The one-run session's weights, fed at each of its runs (none once optimized). */
    private weights: Record<string, HostTensor>,
    private readonly graph: Graph,
    private readonly options: { threads?: number; provider?: Provider; file: string },
  ) {}

  private get file(): string {
    return this.options.file;
  }

  /**
   * A session of `graph` (batch axis already dynamic: src/onnx/batch.ts) pruned to the one output
   * `output`, read from the input `input`.
   */
  static async create(
    graph: Graph,
    input: TensorDescription,
    output: TensorDescription,
    options: { threads?: number; provider?: Provider; file: string },
  ): Promise<ModelEvaluator> {
    const fwd = graph.clone();
    fwd.outputs = [{ name: output.name, elemType: DataType.FLOAT }];
    fwd.valueInfo.delete(output.name);
    fwd.prune();
    const once = fwd.clone();
    const weights = moveWeightsToInputs(once);
    const session = await ModelSession.create(once.toBytes(), { threads: options.threads, provider: options.provider, file: options.file, runOnce: true });
    return new ModelEvaluator(input, output, session, weights, fwd, options);
  }

  /** The optimized session, made at the first call with several inputs or the second call (see the class comment). */
  private optimize(): Promise<void> {
    this.optimized ??= (async () => {
      const once = this.session;
      this.session = await ModelSession.create(this.graph.toBytes(), { threads: this.options.threads, provider: this.options.provider, file: this.file });
      this.weights = {};
      await once.release();
    })();
    return this.optimized;
  }

  /** g on `count` inputs ([count, n] float32), float64 [count, d]. */
  async evaluate(xs: Float32Array, count: number): Promise<Float64Array> {
    const n = this.input.size;
    const d = this.output.size;
    if (xs.length !== count * n) throw new NetmomentsError(`${xs.length} values for ${count} inputs of ${n} elements`);
    if (count > 1 || this.calls > 0) await this.optimize();
    this.calls++;
    const out = new Float64Array(count * d);
    const run = async (start: number, m: number) => {
      const feed: HostTensor = { type: 'float32', data: xs.subarray(start * n, (start + m) * n), dims: [m, ...this.input.shape] };
      const r = await this.session.run({ ...this.weights, [this.input.name]: feed }, [this.output.name]);
      const t = r[this.output.name].data as Float32Array;
      if (t.length !== m * d) throw new NetmomentsError(`the model returned ${t.length} values for ${m} inputs, expected ${m * d}`, { file: this.file });
      for (let i = 0; i < m * d; i++) out[start * d + i] = t[i];
    };
    if (count > 1 && this.batched) {
      try {
        for (let start = 0; start < count; start += EVALUATE_BATCH) await run(start, Math.min(EVALUATE_BATCH, count - start));
        return out;
      } catch {
        this.batched = false;
      }
    }
    for (let i = 0; i < count; i++) await run(i, 1);
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
