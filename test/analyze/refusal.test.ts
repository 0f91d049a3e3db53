/**
 * A two-stage run over the memory limit is refused before the linearization starts, and the refusal
 * says what it would cost (tangent passes: r noise directions for A, and B by reverse mode, d = 10 rows
 * instead of p columns, with a rough time) and which method fits: --method propagate where its estimate is under the limit, else a
 * window or a narrower split. LeNet split at ReLU 0 (p = 11520), isotropic noise on all 784 pixels.
 */
import { describe, expect, it } from 'vitest';
import { analyze } from '../../src/analyze.js';
import { npyToFloat32, readNpy } from '../../src/data/npy.js';
import { NetmomentsError } from '../../src/errors.js';
import { loadModel } from '../../src/onnx/load.js';

const fixture = (name: string) => new URL(`../../fixtures/${name}`, import.meta.url).pathname;

describe('two-stage refusal for memory', () => {
  it('names the passes, a time and the method that fits', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const x = npyToFloat32(readNpy(fixture('mnist/digits-100.npy'))).slice(0, 784);
    const run = (maxMemory: string) =>
      analyze(model, x, 1, { method: 'two-stage', relu: 0, noise: { kind: 'isotropic', sigma: 8 }, maxMemory, probabilitySamples: 0 }).catch((e: unknown) => e);
    const fitsPropagate = await run('300M');
    expect(fitsPropagate).toBeInstanceOf(NetmomentsError);
    expect((fitsPropagate as NetmomentsError).code).toBe('RESOURCE');
    expect((fitsPropagate as Error).message).toMatch(
      /two-stage at split point 0 \('\/Relu', p = 11520\) is refused before it starts: this run would need about .*; it would also take about 794 tangent passes \(784 noise directions for A, 10 reverse passes for B\), roughly \d+ (s|min) at [\d.]+ ms per forward pass \(per input of a batch of 8\); what fits: --method propagate \(moments through every layer, noise factor rank \d+: about \d+ MiB\)/,
    );
    const nothingFits = await run('12M'); // propagate's estimate at its lowest auto rank (16) is about 69 MiB
    expect((nothingFits as Error).message).toMatch(/what fits: noise on fewer input elements \(--window\) or a narrower split \(a later --relu\)$/);
  }, 120_000);
});
