/**
 * The pair-term worker threads run the compiled worker script (dist/moments/pairWorker.js, which the
 * test setup builds); from the TypeScript sources the engine falls back to one thread. So this test
 * drives the compiled engine and checks that several threads give bit-identical results.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from './integrate.js';

describe('pair terms on worker threads (compiled engine)', () => {
  it('give the same bits as one thread, and are used when asked', async () => {
    const url = new URL('../../dist/moments/network.js', import.meta.url).href;
    const { networkMoments } = (await import(url)) as typeof import('../../src/moments/network.js');
    const makeNet = (seed: number) => {
      const u = mulberry32(seed);
      const g = () => 2 * u() - 1;
      const n = 30,
        p = 600,
        d = 6;
      return {
        A: { data: Float64Array.from({ length: p * n }, g), rows: p, cols: n },
        B: { data: Float64Array.from({ length: d * p }, g), rows: d, cols: p },
        m: Float64Array.from({ length: p }, g),
        c2: new Float64Array(d),
      };
    };
    const noise = { kind: 'isotropic' as const, sigma: 0.8 };
    const opts = (threads: number) => ({ threads, panelElements: 50_000 });
    const [netA, netB] = [makeNet(12), makeNet(13)];
    const one = await networkMoments(netA, noise, opts(1));
    const three = await networkMoments(netA, noise, opts(3));
    expect(one.pairThreads).toBe(1);
    expect(three.pairThreads).toBe(3);
    expect(three.units.uncertain).toBeGreaterThan(500);
    expect([...(three.covariance as Float64Array)]).toEqual([...(one.covariance as Float64Array)]);
    expect([...(three.variancePaper as Float64Array)]).toEqual([...(one.variancePaper as Float64Array)]);
    // two computations interleaved at their awaits share the workers without mixing their units
    const oneB = await networkMoments(netB, noise, opts(1));
    const [a2, b2] = await Promise.all([networkMoments(netA, noise, opts(3)), networkMoments(netB, noise, opts(3))]);
    expect([...(a2.covariance as Float64Array)]).toEqual([...(one.covariance as Float64Array)]);
    expect([...(b2.covariance as Float64Array)]).toEqual([...(oneB.covariance as Float64Array)]);
  });
});
