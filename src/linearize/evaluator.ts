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
import type { TensorDescription } from './linearizer.js';

/** Inputs per onnxruntime run (as Linearizer.evaluate). */
const EVALUATE_BATCH = 64;

export class ModelEvaluator {
  private batched = true;

  private constructor(
    readonly input: TensorDescription,
    readonly output: TensorDescription,
    private readonly session: ModelSession,
    private readonly file: string,
  ) {}

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
    const session = await ModelSession.create(fwd.toBytes(), { threads: options.threads, provider: options.provider, file: options.file });
    return new ModelEvaluator(input, output, session, options.file);
  }

  /** g on `count` inputs ([count, n] float32), float64 [count, d]. */
  async evaluate(xs: Float32Array, count: number): Promise<Float64Array> {
    const n = this.input.size;
    const d = this.output.size;
    if (xs.length !== count * n) throw new NetmomentsError(`${xs.length} values for ${count} inputs of ${n} elements`);
    const out = new Float64Array(count * d);
    const run = async (start: number, m: number) => {
      const feed: HostTensor = { type: 'float32', data: xs.subarray(start * n, (start + m) * n), dims: [m, ...this.input.shape] };
      const r = await this.session.run({ [this.input.name]: feed }, [this.output.name]);
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
