/**
 * `attack`: the smoothed objective and its weights, the box-constrained optimizer, the closed-form
 * gradient against finite differences, and the real property the issue asks for: a targeted attack
 * on the LeNet reaches the target on at least 5 digits with at least half of the verification
 * samples, drawn from the found N(x + mu, sigma^2 I) and run through the real model, classified as
 * the target.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { encodeNpy, npyToFloat32, npyToFloat64, readNpy } from '../../src/data/npy.js';
import { AttackProblem, chooseElements, smoothedObjective } from '../../src/experiments/attack.js';
import { RestrictedSurrogate, allIndices, type PointSurrogate } from '../../src/experiments/common.js';
import { spgMinimize } from '../../src/experiments/optimize.js';
import { networkMeanOnly } from '../../src/moments/gradients.js';
import { Rng } from '../../src/moments/montecarlo.js';
import { imageGeometry, pixelIndex } from '../../src/data/layout.js';
import { displayPreprocessing, inputRange, openModelInputs } from '../../src/data/inputs.js';
import { encodeRgbPng } from '../../src/data/png.js';
import { grayImage } from '../../src/report/sensitivity.js';
import { defaultZoom, picturesPng } from '../../src/report/attack.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'nm-attack-'));

function randomSurrogate(n: number, p: number, d: number, seed: number, skip: boolean): PointSurrogate {
  const rng = new Rng(seed);
  const fill = (k: number, s = 1) => Float64Array.from({ length: k }, () => s * rng.normal());
  return {
    n,
    p,
    d,
    point: new Float32Array(n),
    A: fill(p * n, 0.5),
    zb: fill(p, 0.3),
    B: fill(d * p),
    c2: fill(d),
    D: skip ? fill(d * n, 0.2) : undefined,
    gb: fill(d),
  };
}

describe('attack: objective, optimizer, gradients', () => {
  it('the smoothed max is within t log(d - 1) of the max and its weights sum to 0', async () => {
    const E = [1, 3, 2.5, -1];
    const t = 0.1;
    const tg = smoothedObjective(E, 'targeted', 2, t);
    expect(tg.exact).toBeCloseTo(0.5, 12);
    expect(tg.f).toBeGreaterThanOrEqual(tg.exact);
    expect(tg.f - tg.exact).toBeLessThanOrEqual(t * Math.log(3) + 1e-12);
    expect(tg.weights.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 12);
    expect(tg.weights[2]).toBe(-1);
    const ut = smoothedObjective(E, 'untargeted', 1, t);
    expect(ut.exact).toBeCloseTo(0.5, 12); // E_1 - max_{i != 1} E_i
    expect(ut.f).toBeLessThanOrEqual(ut.exact);
    expect(ut.weights.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 12);
  });

  it('SPG solves a box-constrained quadratic', async () => {
    const c = Float64Array.from([2, -0.3, -5, 0.7]);
    const f = async (x: Float64Array) => x.reduce((a, v, i) => a + (i + 1) * (v - c[i]) ** 2, 0);
    const fg = async (x: Float64Array) => ({ f: await f(x), g: Float64Array.from(x, (v, i) => 2 * (i + 1) * (v - c[i])) });
    const lo = new Float64Array(4).fill(-1);
    const hi = new Float64Array(4).fill(1);
    const r = await spgMinimize(fg, f, new Float64Array(4), lo, hi, { maxIter: 200 });
    expect(Array.from(r.x).map((v) => Number(v.toFixed(6)))).toEqual([1, -0.3, -1, 0.7]);
    expect(r.converged).toBe(true);
  });

  it('the fast mean equals networkMeanOnly, and the closed-form gradient matches central differences', async () => {
    for (const skip of [false, true]) {
      const s = randomSurrogate(6, 9, 3, skip ? 7 : 5, skip);
      const S = Int32Array.from([0, 2, 3, 5]);
      const base = Float64Array.from([0.1, -0.2, 0, 0.3]);
      const pr = new AttackProblem(new RestrictedSurrogate(s, S), base, 2, 1.5, 'targeted', 1, 0.2);
      const z = Float64Array.from([0.3, -0.5, 0.2, 0.9, 0.4]);
      const ref = await networkMeanOnly(pr.network(z), pr.noise(z));
      const fast = pr.mean(z);
      for (let i = 0; i < 3; i++) expect(fast[i]).toBeCloseTo(ref[i], 12);
      const { f, g } = await pr.valueAndGradient(z);
      expect(f).toBeCloseTo(pr.value(z), 12);
      const h = 1e-6;
      for (let k = 0; k < z.length; k++) {
        const zp = Float64Array.from(z);
        const zm = Float64Array.from(z);
        zp[k] += h;
        zm[k] -= h;
        const fd = (pr.value(zp) - pr.value(zm)) / (2 * h);
        expect(Math.abs(g[k] - fd)).toBeLessThan(1e-5 * (1 + Math.abs(fd)));
      }
    }
  });

  it('the attacked elements: round(alpha n), sorted, seeded', async () => {
    const a = chooseElements(784, 0.04, 3);
    expect(a.length).toBe(31);
    expect(Array.from(a)).toEqual([...a].sort((x, y) => x - y));
    expect(new Set(a).size).toBe(31);
    expect(Array.from(chooseElements(784, 0.04, 3))).toEqual(Array.from(a));
    expect(Array.from(chooseElements(784, 0.04, 4))).not.toEqual(Array.from(a));
    expect(Array.from(chooseElements(5, 1, 0))).toEqual(Array.from(allIndices(5)));
  });
});

describe('attack pictures: original, perturbation, adversarial, upscaled', () => {
  it('each panel is zoom x the input, nearest neighbour, with the perturbation mid grey at 0', async () => {
    const g = imageGeometry([1, 28, 28])!;
    expect(defaultZoom(g)).toBe(8);
    const x = Float64Array.from({ length: 784 }, (_, i) => ((i * 37) % 256) / 255);
    const e = Float64Array.from({ length: 784 }, (_, i) => (i === 0 ? 0.5 : i === 1 ? -0.5 : 0));
    const panels = [
      { title: 'original', values: x, kind: 'image' as const },
      { title: 'perturbation', values: e, kind: 'noise' as const },
      { title: 'adversarial', values: x.map((v, i) => v + e[i]), kind: 'image' as const },
    ];
    for (const zoom of [8, 3]) {
      const { png, layout } = picturesPng(panels, g, { scale: 1, offset: 0, range: { lo: 0, hi: 1 } }, zoom);
      const img = PNG.sync.read(Buffer.from(png));
      expect([img.width, img.height]).toEqual([layout.width, layout.height]);
      expect(layout.images).toHaveLength(3);
      for (const m of layout.images) expect([m.width, m.height]).toEqual([28 * zoom, 28 * zoom]);
      const grey = (px: number, py: number) => img.data[4 * (py * img.width + px)];
      const [a, n] = layout.images;
      // every input pixel is a constant zoom x zoom block of its own grey level
      for (const [r, c] of [
        [0, 0],
        [5, 17],
        [27, 27],
      ])
        for (let i = 0; i < zoom; i++)
          for (let j = 0; j < zoom; j++) expect(grey(a.x + c * zoom + j, a.y + r * zoom + i)).toBe(Math.round(x[r * 28 + c] * 255));
      // the perturbation: white at +max, black at -max, mid grey at 0
      expect(grey(n.x, n.y)).toBe(255);
      expect(grey(n.x + zoom, n.y)).toBe(1);
      expect(grey(n.x + 2 * zoom, n.y)).toBe(128);
    }
  });
});

describe('pictures of normalized inputs: the per-channel mean/std undone', () => {
  it('an RGB PNG read with --mean/--std comes back as its own pixels in attack pictures and heat-map backdrops (chw and hwc)', () => {
    // 3 x 2 RGB pixels spanning 0..255 in every channel
    const rgb = Uint8Array.from([255, 0, 51, 102, 153, 204, 0, 255, 128, 17, 34, 250, 200, 100, 0, 60, 240, 180]);
    const d = tmp();
    const file = join(d, 'rgb.png');
    writeFileSync(file, encodeRgbPng(rgb, 3, 2));
    const o = { metadata: {}, modelFile: 'm.onnx', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    const display = displayPreprocessing(o)!;
    expect(display).toBeDefined();
    for (const [shape, layout] of [
      [[3, 2, 3], 'chw'],
      [[2, 3, 3], 'hwc'],
    ] as const) {
      const g = imageGeometry([...shape], layout)!;
      const x = openModelInputs(file, { ...o, inputShape: [...shape], layout }).get(0);
      // the model sees normalized values (e.g. red 255 -> (1 - 0.485) / 0.229 = 2.249), far outside 0..1
      expect(x[pixelIndex(g, 0, 0, 0)]).toBeCloseTo((1 - 0.485) / 0.229, 5);
      const { png, layout: at } = picturesPng([{ title: 'clean', values: x, kind: 'image' }], g, { ...display, range: inputRange(o) }, 2);
      const img = PNG.sync.read(Buffer.from(png));
      const im = at.images[0];
      const back = grayImage(x, g, display);
      for (let r = 0; r < 2; r++)
        for (let c = 0; c < 3; c++) {
          const want = [0, 1, 2].map((ch) => rgb[(r * 3 + c) * 3 + ch]);
          // the centre of the pixel's 2 x 2 block in the picture
          const at4 = 4 * ((im.y + 2 * r + 1) * img.width + im.x + 2 * c + 1);
          expect(Array.from(img.data.subarray(at4, at4 + 3))).toEqual(want);
          expect(back[r * 3 + c]).toBeCloseTo((want[0] + want[1] + want[2]) / 3 / 255, 6);
        }
    }
  });
});

describe('attack: CLI on the LeNet', () => {
  it('Eq. 3: the target (3) is reached on at least 5 digits with at least 50% of verification samples', async () => {
    const dir = tmp();
    const all = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy'));
    const pick = [0, 1, 2, 3, 4, 5, 6, 8]; // index 7 is a 3
    const batch = new Float32Array(pick.length * 784);
    pick.forEach((i, k) => batch.set(all.subarray(i * 784, (i + 1) * 784), k * 784));
    const input = join(dir, 'eight.npy');
    writeFileSync(input, encodeNpy(batch, [pick.length, 1, 28, 28]));
    const out = join(dir, 'out');
    const r = await cli(
      ['attack', 'fixtures/lenet.onnx', '--input', input, '--target', '3', '--rounds', '4', '--iters', '25', '--verify', '200', '--out-dir', out, '-q'],
      { timeoutMs: 300_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8'));
    expect(rep.schema).toBe('netmoments.attack/1');
    expect(rep.mode).toBe('targeted');
    expect(rep.box.beta).toBe(30);
    const reached = rep.results.filter(
      (x: { cleanClass: number; verification: { rate: number; samples: number } }) =>
        x.cleanClass !== 3 && x.verification.samples === 200 && x.verification.rate >= 0.5,
    );
    expect(reached.length, JSON.stringify(rep.results.map((x: { verification: unknown }) => x.verification))).toBeGreaterThanOrEqual(5);
    for (const x of rep.results) {
      expect(x.sigma2).toBeGreaterThan(0);
      expect(x.sigma2).toBeLessThanOrEqual(2);
      expect(x.mu.linf).toBeLessThanOrEqual(30 + 1e-9);
    }
    const mu = readNpy(join(out, 'mu.npy'));
    expect(mu.shape).toEqual([8, 1, 28, 28]);
    expect(Math.max(...Array.from(npyToFloat64(mu), Math.abs))).toBeLessThanOrEqual(30 + 1e-4);
    expect(readFileSync(join(out, 'attack-0.png')).subarray(1, 4).toString()).toBe('PNG');
  });

  it('Eq. 4: the noise lives on alpha = 4% of the pixels inside the box, and lowers the true-class margin', async () => {
    const out = tmp();
    const r = await cli([
      'attack',
      'fixtures/lenet.onnx',
      '--input',
      'fixtures/mnist/digit-0.npy',
      '--untargeted',
      '--iters',
      '60',
      '--verify',
      '200',
      '--out-dir',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const x = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8')).results[0];
    expect(x.elements).toBe(31);
    expect(x.trueClass).toBe(2);
    expect(x.objective).toBeLessThan(x.objectiveStart);
    const mu = npyToFloat64(readNpy(join(out, 'mu.npy')));
    expect(mu.filter((v) => v !== 0).length).toBeLessThanOrEqual(31);
    expect(Math.max(...Array.from(mu, Math.abs))).toBeLessThanOrEqual(550 + 1e-3);
  });

  it('universal: one mu for several digits lowers the average margin; mu.npy has the input shape', async () => {
    const out = tmp();
    const r = await cli([
      'attack',
      'fixtures/lenet.onnx',
      '--universal',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--labels',
      'fixtures/mnist/labels-100.npy',
      '--count',
      '4',
      '--beta',
      '60',
      '--iters',
      '15',
      '--verify',
      '20',
      '--valid-range',
      '--out-dir',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8'));
    expect(rep.mode).toBe('universal');
    expect(rep.objective).toBeLessThan(rep.objectiveStart);
    expect(rep.results).toHaveLength(4);
    const mu = readNpy(join(out, 'mu.npy'));
    expect(mu.shape).toEqual([1, 28, 28]);
    // --valid-range: every x + mu stays within [-127.5, 127.5]
    const m = npyToFloat64(mu);
    const xs = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy'));
    for (let i = 0; i < 4; i++)
      for (let k = 0; k < 784; k++) {
        const v = xs[i * 784 + k] + m[k];
        expect(v >= -127.5 - 1e-3 && v <= 127.5 + 1e-3).toBe(true);
      }
  });

  it('bad usage: no mode, a target out of range', async () => {
    const out = tmp();
    const r = await cli(['attack', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--out-dir', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exactly one of --target/);
    const r2 = await cli(['attack', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--target', '12', '--out-dir', out]);
    expect(r2.code).toBe(2);
    expect(r2.stderr.trim().split('\n')).toHaveLength(1);
    expect(r2.stderr).toMatch(/--target must be a class index in \[0, 10\)/);
    expectBadInput(await cli(['attack', 'fixtures/lenet.onnx', '--input', 'nothere.npy', '--target', '1', '--out-dir', out]), 'nothere.npy', /no such file/);
  });
});
