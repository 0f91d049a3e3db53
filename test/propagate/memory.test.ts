/**
 * The propagation's memory estimate (src/propagate/memory.ts, src/method.ts) walks the steps the
 * engine runs: on the bundled LeNet the layout's steps are the propagator's plan, one for one; the
 * estimate grows with the rank and covers the factor at the input; an asked-for propagation over
 * the memory limit is refused with a RESOURCE error before any session is made, while auto falls
 * back to two-stage. (The estimate against real peak memory at ImageNet size is a benchmark:
 * bench/scale.mjs --propagate, docs/BENCHMARKS.md.)
 */
import { describe, expect, it } from 'vitest';
import { chooseMethod, estimatePropagateMemory, planPropagation } from '../../src/method.js';
import { NetmomentsError } from '../../src/errors.js';
import { loadModel } from '../../src/onnx/load.js';
import { createPropagator } from '../../src/propagate/index.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;

describe('propagate memory estimate', () => {
  it('walks the same steps as the engine and grows with the rank', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const plan = await planPropagation(model, {});
    expect(plan.layout).toBeDefined();
    const p = await createPropagator({ ...model, graph: plan.graph }, { output: plan.output.name, rank: 32, shapes: plan.shapes });
    try {
      const kinds = plan.layout!.steps.map((s) => (s.kind === 'affine' ? 'affine' : s.kind === 'maxpool' ? 'maxpool' : s.node.opType));
      const engine = p.plan.map((l) => (l.startsWith('affine') ? 'affine' : l.startsWith('MaxPool') ? 'maxpool' : l));
      expect(kinds).toEqual(engine);
    } finally {
      await p.release();
    }
    const n = plan.input.size;
    const at = (rank: number) => estimatePropagateMemory(plan, rank, n).total;
    expect(at(16)).toBeLessThan(at(64));
    expect(at(64)).toBeLessThan(at(n));
    // at least the input's factor: (2K probes + rank) rows of n float32 values
    expect(at(n)).toBeGreaterThan((64 + n) * n * 4);
  }, 60_000);

  it('refuses --method propagate over the limit before any session; auto falls back to two-stage', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const limit = { bytes: 1024 * 1024, source: 'option' as const };
    const err = await chooseMethod(model, { method: 'propagate' }, 784, limit).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetmomentsError);
    expect((err as NetmomentsError).code).toBe('RESOURCE');
    expect((err as Error).message).toMatch(/this run would need about .* \(factors of rank \d+/);
    const auto = await chooseMethod(model, {}, 784, limit);
    expect(auto.decision.method).toBe('two-stage');
    expect(auto.decision.reason).toMatch(/^propagate at rank \d+ would need .*, over the memory limit$/);
  }, 60_000);
});
