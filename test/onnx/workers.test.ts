/**
 * Worker threads with their own onnxruntime sessions (src/runtime/workers.ts): on the bundled LeNet,
 * each worker's run equals the main thread's session on the same inputs (the workers' sessions
 * have no pre-packed weights, so float32 rounding may differ: 1e-5 of the largest logit), constant
 * feeds are taken once, and a model onnxruntime cannot load is a one-line error naming the file,
 * with no temporary model left behind.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { ModelSession } from '../../src/runtime/session.js';
import { SessionWorkers } from '../../src/runtime/workers.js';
import { digit } from '../linearize/nets.js';

const LENET = new URL('../../fixtures/lenet.onnx', import.meta.url).pathname;
const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`netmoments-${process.pid}-`));

describe('onnxruntime sessions in worker threads', () => {
  it('two workers give the logits of the main thread session, batch by batch', async () => {
    const bytes = readFileSync(LENET);
    const main = await ModelSession.create(bytes);
    const workers = await SessionWorkers.create(bytes, 2, { file: LENET });
    try {
      expect(workers.size).toBe(2);
      expect(leftovers()).toEqual([]);
      const input = main.inputNames[0];
      const output = main.outputNames[0];
      const x = digit();
      const batches = [0, 1, 2, 3].map((b) => Float32Array.from({ length: 3 * 784 }, (_, i) => x[i % 784] + 0.1 * b * ((i * 7) % 13)));
      const expected = await Promise.all(batches.map((data) => main.run({ [input]: { type: 'float32', data, dims: [3, 1, 28, 28] } }, [output])));
      const got = await Promise.all(batches.map((data, b) => workers.run(b % 2, { [input]: { type: 'float32', data, dims: [3, 1, 28, 28] } }, [output])));
      for (let b = 0; b < batches.length; b++) {
        const e = expected[b][output].data as Float32Array;
        const g = got[b][output].data as Float32Array;
        expect(got[b][output].dims).toEqual([3, 10]);
        const scale = Math.max(...Array.from(e, Math.abs));
        expect(scale).toBeGreaterThan(1);
        for (let i = 0; i < e.length; i++) expect(Math.abs(g[i] - e[i])).toBeLessThanOrEqual(1e-5 * scale);
      }
      // a constant feed, sent once, is used by every later run
      await workers.setConstants({ [input]: { type: 'float32', data: batches[2], dims: [3, 1, 28, 28] } });
      const c = await workers.run(1, {}, [output]);
      expect(Array.from(c[output].data as Float32Array)).toEqual(Array.from(got[2][output].data as Float32Array));
    } finally {
      await workers.release();
      await main.release();
    }
    await expect(workers.run(0, {}, ['x'])).rejects.toThrow(/released/);
  });

  it('a model onnxruntime cannot load: one line naming the file, nothing left in the temporary folder', async () => {
    const bad = readFileSync(LENET).subarray(0, 5000);
    const err = await SessionWorkers.create(bad, 1, { file: 'broken.onnx' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetmomentsError);
    expect((err as NetmomentsError).file).toBe('broken.onnx');
    expect((err as Error).message).toMatch(/onnxruntime failed to load the model in a worker thread/);
    expect((err as Error).message).not.toMatch(/\n/);
    expect(leftovers()).toEqual([]);
  });
});
