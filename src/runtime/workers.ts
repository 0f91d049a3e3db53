/**
 * Worker threads, each with its own onnxruntime session of one model, for runs that can go side by
 * side. onnxruntime-node runs a session's run on the calling thread (two runs started together on
 * the main thread, even of two sessions, take as long as one after the other), and some kernels use
 * one core whatever the intra-op threads (ConvTranspose, the adjoint of Conv); so the only way to a
 * second core for many independent runs (the reverse passes of the Gram form) is a second thread
 * with a session of its own. Each worker holds a full copy of the model's weights: callers count
 * that memory (src/resources.ts) and make as few as pay.
 *
 * The workers are plain CommonJS evaluated from a string (no file to find after the build), loading
 * the same onnxruntime-node the main thread uses. They load the model from a temporary file, not
 * from bytes sent to them: a worker's copy of the bytes would stay in its heap (VGG-11's bottom
 * adjoint, 515 MB: 2.1 GiB resident per worker from bytes, 0.6 GiB from a file); and without
 * onnxruntime's pre-packed weights, which hold the Gemm and Conv weights a second time (1.05 GiB
 * with them).
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { NetmomentsError, oneLine } from '../errors.js';
import type { HostTensor, Provider } from './session.js';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ort);
ort.env.logLevel = 'fatal';
let session;
let constants = {};
const tensors = (feeds) => {
  const out = {};
  for (const [k, t] of Object.entries(feeds)) out[k] = new ort.Tensor(t.type, t.data, t.dims);
  return out;
};
parentPort.on('message', async (m) => {
  try {
    if (m.kind === 'create') {
      session = await ort.InferenceSession.create(m.path, m.options);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.kind === 'constants') {
      constants = tensors(m.feeds);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.kind === 'run') {
      const r = await session.run({ ...constants, ...tensors(m.feeds) }, m.outputs);
      const out = {};
      const transfer = [];
      for (const [k, t] of Object.entries(r)) {
        const data = t.data.slice();
        out[k] = { type: t.type, data, dims: t.dims.map(Number) };
        transfer.push(data.buffer);
      }
      parentPort.postMessage({ id: m.id, ok: true, out }, transfer);
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, message: String((e && e.message) || e) });
  }
});
`;

interface Reply {
  id: number;
  ok: boolean;
  message?: string;
  out?: Record<string, HostTensor>;
}

/** One worker thread and its session; requests are answered in order. */
class SessionWorker {
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private failure?: Error;

  constructor(private readonly worker: Worker) {
    worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      p?.resolve(r);
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', (e) => fail(new NetmomentsError(`an onnxruntime worker thread failed: ${oneLine(e.message)}`)));
    worker.on('exit', (code) => fail(new NetmomentsError(`an onnxruntime worker thread stopped (exit code ${code})`)));
  }

  request(message: Record<string, unknown>, what: string): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    }).then((r) => {
      if (!r.ok) throw new NetmomentsError(`onnxruntime failed to ${what} in a worker thread: ${oneLine(r.message ?? '')}`);
      return r;
    });
  }

  async terminate(): Promise<void> {
    this.failure ??= new NetmomentsError('the onnxruntime worker threads were released');
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export interface SessionWorkersOptions {
  provider?: Provider;
  /** The file the model came from, for error messages. */
  file?: string;
}

/**
 * `count` worker threads, each with an onnxruntime session of `model` (one intra-op thread each: the
 * parallelism is the workers'), made one after the other from one temporary file, removed once
 * they hold the model.
 */
export class SessionWorkers {
  private constructor(private readonly workers: SessionWorker[]) {}

  static async create(model: Uint8Array, count: number, options: SessionWorkersOptions = {}): Promise<SessionWorkers> {
    const ort = createRequire(import.meta.url).resolve('onnxruntime-node');
    const path = join(tmpdir(), `netmoments-${process.pid}-${randomBytes(6).toString('hex')}.onnx`);
    const sessionOptions = {
      executionProviders: [options.provider ?? 'cpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 4,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      extra: { session: { disable_prepacking: '1' } },
    };
    const workers: SessionWorker[] = [];
    try {
      try {
        writeFileSync(path, model);
      } catch (e) {
        throw new NetmomentsError(`cannot write the model for the worker threads to ${path}: ${oneLine(e instanceof Error ? e.message : String(e))}`);
      }
      for (let i = 0; i < count; i++) {
        const w = new SessionWorker(new Worker(WORKER_SOURCE, { eval: true, workerData: { ort } }));
        workers.push(w);
        await w.request({ kind: 'create', path, options: sessionOptions }, 'load the model');
      }
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      if (e instanceof NetmomentsError && !e.file) throw new NetmomentsError(e.message, { file: options.file, cause: e });
      throw e;
    } finally {
      rmSync(path, { force: true });
    }
    return new SessionWorkers(workers);
  }

  /** The number of workers. */
  get size(): number {
    return this.workers.length;
  }

  /** Feeds every later run of every worker gets (sent once: e.g. the point a Jacobian is taken at). */
  async setConstants(feeds: Record<string, HostTensor>): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request({ kind: 'constants', feeds }, 'take the constant inputs')));
  }

  /** Run worker `i` with `feeds` (plus the constants); the requested outputs, copied out of the worker. */
  async run(i: number, feeds: Record<string, HostTensor>, outputs: readonly string[]): Promise<Record<string, HostTensor>> {
    const r = await this.workers[i].request({ kind: 'run', feeds, outputs: [...outputs] }, 'run the model');
    return r.out!;
  }

  async release(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
