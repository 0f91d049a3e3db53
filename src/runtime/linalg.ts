/**
 * The moments engine's LinearAlgebra (src/moments/linalg.ts) on onnxruntime's float64 Gemm
 * kernel (MLAS DGEMM, multi-threaded): measured ~80 GFlop/s on 2 cores against ~1 GFlop/s for the
 * plain TypeScript loops (docs/BENCHMARKS.md, "Moments engine").
 *
 * Each transpose and operand-type combination is one tiny ONNX model built in memory (a single Gemm node with
 * float64 inputs of symbolic shape), turned into an InferenceSession the first time it is needed
 * and reused for every later product: onnxruntime-node leaks memory when sessions are created and
 * released in a loop, so sessions are never created per call. `sharedOrtLinearAlgebra(threads)`
 * hands out one instance per thread count for the whole process.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { NetmomentsError, oneLine } from '../errors.js';
import { type GemmOptions, type LinearAlgebra, type Matrix, gemmShape, gemmSync } from '../moments/linalg.js';

const { onnx } = onnxProto;
const FLOAT = 1; // TensorProto.DataType.FLOAT
const DOUBLE = 11; // TensorProto.DataType.DOUBLE

export interface OrtLinearAlgebraOptions {
  /** onnxruntime intra-op threads (default: onnxruntime's choice, the physical cores). */
  threads?: number;
  /**
   * Products with fewer multiply-adds than this run in TypeScript instead (an onnxruntime call
   * costs tens of microseconds of fixed overhead). Default 32768; 0 sends everything to onnxruntime.
   */
  minFlops?: number;
}

/**
 * The serialized model computing Y = op(A) op(B) in float64 for A, B of any 2-D shape: one Gemm
 * node, preceded by a Cast to float64 for an operand declared float32 (`aFloat32`, `bFloat32`;
 * the widening is exact, so the product is the float64 product of the widened values).
 */
export function gemmModelBytes(transA: boolean, transB: boolean, aFloat32 = false, bFloat32 = false): Uint8Array {
  const dims = (a: string, b: string) =>
    onnx.TensorShapeProto.create({ dim: [onnx.TensorShapeProto.Dimension.create({ dimParam: a }), onnx.TensorShapeProto.Dimension.create({ dimParam: b })] });
  const valueInfo = (name: string, type: number, a: string, b: string) =>
    onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: type, shape: dims(a, b) }) }) });
  const intAttr = (name: string, v: number) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });
  const nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  const operand = (name: string, float32: boolean): string => {
    if (!float32) return name;
    nodes.push(onnx.NodeProto.create({ name: `widen_${name}`, opType: 'Cast', input: [name], output: [`${name}64`], attribute: [intAttr('to', DOUBLE)] }));
    return `${name}64`;
  };
  const a = operand('A', aFloat32);
  const b = operand('B', bFloat32);
  nodes.push(
    onnx.NodeProto.create({
      name: 'gemm',
      opType: 'Gemm',
      input: [a, b],
      output: ['Y'],
      attribute: [intAttr('transA', transA ? 1 : 0), intAttr('transB', transB ? 1 : 0)],
    }),
  );
  const graph = onnx.GraphProto.create({
    name: `netmoments_gemm_${transA ? 't' : 'n'}${transB ? 't' : 'n'}${aFloat32 ? 'f' : 'd'}${bFloat32 ? 'f' : 'd'}`,
    node: nodes,
    input: [valueInfo('A', aFloat32 ? FLOAT : DOUBLE, 'a_rows', 'a_cols'), valueInfo('B', bFloat32 ? FLOAT : DOUBLE, 'b_rows', 'b_cols')],
    output: [valueInfo('Y', DOUBLE, 'y_rows', 'y_cols')],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'netmoments',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}

export class OrtLinearAlgebra implements LinearAlgebra {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private readonly threads?: number;
  readonly minFlops: number;

  constructor(options: OrtLinearAlgebraOptions = {}) {
    if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 0)) {
      throw new NetmomentsError(`the thread count must be a non-negative integer, got ${options.threads}`, { code: 'BAD_USAGE' });
    }
    this.threads = options.threads;
    this.minFlops = options.minFlops ?? 32768;
  }

  private session(transA: boolean, transB: boolean, aFloat32: boolean, bFloat32: boolean): Promise<ort.InferenceSession> {
    const key = `${transA ? 1 : 0}${transB ? 1 : 0}${aFloat32 ? 'f' : 'd'}${bFloat32 ? 'f' : 'd'}`;
    let s = this.sessions.get(key);
    if (!s) {
      const opts: ort.InferenceSession.SessionOptions = {
        executionProviders: ['cpu'],
        logSeverityLevel: 4,
        graphOptimizationLevel: 'all',
        // Several sessions share the cores; idle onnxruntime threads spin by default and would
        // steal the cores from whichever session runs.
        extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
      };
      if (this.threads) {
        opts.intraOpNumThreads = this.threads;
        opts.interOpNumThreads = 1;
      }
      s = ort.InferenceSession.create(gemmModelBytes(transA, transB, aFloat32, bFloat32), opts).catch((e: unknown) => {
        this.sessions.delete(key);
        throw new NetmomentsError(`onnxruntime cannot create its float64 Gemm session: ${oneLine(e instanceof Error ? e.message : String(e))}`, {
          code: 'UNSUPPORTED',
        });
      });
      this.sessions.set(key, s);
    }
    return s;
  }

  async gemm(a: Matrix, aRows: number, aCols: number, b: Matrix, bRows: number, bCols: number, opts: GemmOptions = {}): Promise<Float64Array> {
    const [m, k, n] = gemmShape(a, aRows, aCols, b, bRows, bCols, opts);
    if (m === 0 || n === 0 || k === 0 || m * n * k < this.minFlops) return gemmSync(a, aRows, aCols, b, bRows, bCols, opts);
    const aFloat32 = a instanceof Float32Array;
    const bFloat32 = b instanceof Float32Array;
    const session = await this.session(!!opts.transA, !!opts.transB, aFloat32, bFloat32);
    const tensor = (x: Matrix, rows: number, cols: number) =>
      x instanceof Float32Array ? new ort.Tensor('float32', x, [rows, cols]) : new ort.Tensor('float64', x, [rows, cols]);
    const out = await session.run({ A: tensor(a, aRows, aCols), B: tensor(b, bRows, bCols) });
    const y = out.Y as ort.Tensor;
    const data = y.data as Float64Array;
    if (data.length !== m * n) throw new Error(`onnxruntime Gemm returned ${data.length} values, expected ${m}x${n}`);
    return data;
  }

  /** Release the sessions (a later gemm creates them again). */
  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) {
      try {
        await (await s).release();
      } catch {
        // a session that failed to start has nothing to release
      }
    }
  }
}

const shared = new Map<string, OrtLinearAlgebra>();

/** One OrtLinearAlgebra per (threads, minFlops) for the whole process, so sessions are made once. */
export function sharedOrtLinearAlgebra(options: OrtLinearAlgebraOptions = {}): OrtLinearAlgebra {
  const key = `${options.threads ?? 0}/${options.minFlops ?? 32768}`;
  let la = shared.get(key);
  if (!la) {
    la = new OrtLinearAlgebra(options);
    shared.set(key, la);
  }
  return la;
}
