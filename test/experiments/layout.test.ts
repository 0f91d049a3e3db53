/**
 * Channels-last (NHWC) inputs, end to end: a twin of the bundled LeNet that takes [N, 28, 28, 1]
 * and transposes it to NCHW first (what torch's permute and tf2onnx export) must give the same
 * numbers as fixtures/lenet.onnx on the same digits, through analyze --window, sensitivity and a
 * PNG input; --layout overrides the image layout rule; attack on a flat input writes mu.npy and
 * attack.json without pictures.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectBadInput, cli } from '../helpers/cli.js';
import { encodeNpy, npyToFloat64, readNpy } from '../../src/data/npy.js';
import { encodeRgbPng } from '../../src/data/png.js';
import { loadModel } from '../../src/onnx/load.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-layout-'));
const LENET = 'fixtures/lenet.onnx';
const TWIN = join(dir, 'lenet-nhwc.onnx');

/** fixtures/lenet.onnx behind a Transpose perm [0, 3, 1, 2]: input [N, 28, 28, 1]. */
function writeNhwcLenet(): void {
  const g = loadModel(LENET).graph.clone();
  const inner = g.inputs[0].name;
  g.inputs = [{ name: 'input_nhwc', elemType: DataType.FLOAT, shape: ['N', 28, 28, 1] }];
  const t = makeNode('Transpose', ['input_nhwc'], [inner], { name: 'to_nchw', attributes: { perm: [0, 3, 1, 2] } });
  g.nodes.unshift({ name: t.name!, opType: 'Transpose', domain: '', inputs: ['input_nhwc'], outputs: [inner], attributes: t.attribute! });
  writeFileSync(TWIN, g.toBytes());
}

/** NCHW [N, C, H, W] data as NHWC [N, H, W, C]. */
function toNhwc(x: Float32Array, N: number, C: number, H: number, W: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < N; b++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) {
          out[((b * H + i) * W + j) * C + c] = x[((b * C + c) * H + i) * W + j];
        }
  return out;
}

/** Element-wise |a - b| <= tol * max(|a|, |b|, floor) over nested arrays of numbers (and nulls). */
function expectClose(a: unknown, b: unknown, tol = 1e-6, floor = 1e-9, path = ''): void {
  if (typeof a === 'number' && typeof b === 'number') {
    const scale = Math.max(Math.abs(a), Math.abs(b), floor);
    if (!(Math.abs(a - b) <= tol * scale)) throw new Error(`${path}: ${a} vs ${b}`);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    expect(a.length, path).toBe(b.length);
    a.forEach((v, i) => expectClose(v, b[i], tol, floor, `${path}[${i}]`));
    return;
  }
  expect(a, path).toEqual(b);
}

const NUMBERS = [
  'mean',
  'variance',
  'variancePaper',
  'covariance',
  'clean',
  'classProbabilities',
  'flipProbability',
  'marginBound',
  'predicted',
  'cleanPredicted',
] as const;

async function analyzeJson(args: string[]): Promise<{ noise: Record<string, unknown>; results: Array<Record<string, unknown>> }> {
  const r = await cli(['analyze', ...args, '-q']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

function expectSameResults(a: Awaited<ReturnType<typeof analyzeJson>>, b: Awaited<ReturnType<typeof analyzeJson>>): void {
  expect(a.results.length).toBe(b.results.length);
  a.results.forEach((ra, i) => {
    for (const k of NUMBERS) expectClose(ra[k], b.results[i][k], 1e-6, 1e-9, `results[${i}].${k}`);
  });
  expect(a.noise.support).toBe(b.noise.support);
}

const NCHW_DATA = join(dir, 'digits-nchw.npy');
const NHWC_DATA = join(dir, 'digits-nhwc.npy');

beforeAll(async () => {
  writeNhwcLenet();
  const digits = readNpy('fixtures/mnist/digits-100.npy');
  const x = Float32Array.from(digits.data as Float32Array).subarray(0, 3 * 784);
  writeFileSync(NCHW_DATA, encodeNpy(x, [3, 1, 28, 28]));
  writeFileSync(NHWC_DATA, encodeNpy(toNhwc(x, 3, 1, 28, 28), [3, 28, 28, 1]));
});

describe('channels-last LeNet twin: the same numbers as the NCHW LeNet', () => {
  it('analyze --window R,C,H,W (rows and columns of the image, not the last two axes)', async () => {
    // a non-square window off the diagonal: swapped rows and columns would give other numbers
    const common = ['--sigma', '60', '--window', '5,9,6,8', '--covariance'];
    const nchw = await analyzeJson([LENET, '--input', NCHW_DATA, ...common]);
    const nhwc = await analyzeJson([TWIN, '--input', NHWC_DATA, ...common]);
    expect(nchw.noise).toMatchObject({ window: [5, 9, 6, 8], layout: 'chw', support: 48 });
    expect(nhwc.noise).toMatchObject({ window: [5, 9, 6, 8], layout: 'hwc', support: 48 });
    expectSameResults(nhwc, nchw);
    // the noise does something: the variances are not zero
    expect(Math.max(...(nchw.results[0].variance as number[]))).toBeGreaterThan(1e-4);
  });

  it('sensitivity: the same maps and summaries', async () => {
    const out = (name: string) => join(dir, name);
    const args = ['--count', '2', '--window-size', '7', '--stride', '7', '--sigma', '400', '--probability-points', '128', '-q'];
    for (const [model, data, o] of [
      [LENET, NCHW_DATA, 'sens-nchw'],
      [TWIN, NHWC_DATA, 'sens-nhwc'],
    ]) {
      const r = await cli(['sensitivity', model, '--data', data, ...args, '--out-dir', out(o)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const a = JSON.parse(readFileSync(join(out('sens-nhwc'), 'sensitivity.json'), 'utf8'));
    const b = JSON.parse(readFileSync(join(out('sens-nchw'), 'sensitivity.json'), 'utf8'));
    expect(a.positions).toMatchObject({ rows: 4, cols: 4, inputShape: [28, 28, 1] });
    expect(a.noise.layout).toBe('hwc');
    expect(b.noise.layout).toBe('chw');
    expectClose(a.overall, b.overall);
    expect(a.images.length).toBe(2);
    a.images.forEach((im: Record<string, unknown>, i: number) => {
      for (const k of ['cleanClass', 'foolingRateMean', 'meanFlipProbability', 'mostSensitiveWindow'])
        expectClose(im[k], b.images[i][k], 1e-6, 1e-9, `images[${i}].${k}`);
    });
    for (const f of ['mean-margin.npy', 'flip-probability.npy', 'fooling-mean.npy', 'class-flip-probability.npy']) {
      const x = readNpy(join(out('sens-nhwc'), f));
      const y = readNpy(join(out('sens-nchw'), f));
      expect(x.shape, f).toEqual([f.startsWith('class') ? 10 : 2, 4, 4]);
      expect(x.shape).toEqual(y.shape);
      expectClose(
        Array.from(npyToFloat64(x)).map((v) => (Number.isNaN(v) ? -1 : v)),
        Array.from(npyToFloat64(y)).map((v) => (Number.isNaN(v) ? -1 : v)),
      );
    }
    const margins = npyToFloat64(readNpy(join(out('sens-nchw'), 'mean-margin.npy')));
    expect(Math.max(...margins)).toBeGreaterThan(Math.min(...margins)); // not constant
    for (const f of ['fooling-mean.png', 'flip-probability.png']) {
      const pa = PNG.sync.read(readFileSync(join(out('sens-nhwc'), f)));
      const pb = PNG.sync.read(readFileSync(join(out('sens-nchw'), f)));
      expect([pa.width, pa.height]).toEqual([pb.width, pb.height]);
    }
  });

  it("a PNG digit is read in the twin's layout: the same numbers as lenet.onnx", async () => {
    for (const extra of [[], ['--window', '10,3,7,9']]) {
      const nchw = await analyzeJson([LENET, '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8', ...extra]);
      const nhwc = await analyzeJson([TWIN, '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8', ...extra]);
      expectSameResults(nhwc, nchw);
    }
  });

  it('--layout overrides the rule: chw reads [28, 28, 1] as 28 channels of 28 x 1', async () => {
    // rows 0..6 of column 0 over all 28 "channels" are, in the NHWC image, columns 0..6 of every row
    const over = await analyzeJson([TWIN, '--input', NHWC_DATA, '--sigma', '60', '--layout', 'chw', '--window', '0,0,7,1']);
    const ref = await analyzeJson([LENET, '--input', NCHW_DATA, '--sigma', '60', '--window', '0,0,28,7']);
    expect(over.noise).toMatchObject({ layout: 'chw', support: 196 });
    expectSameResults(over, ref);
    // the same window under the rule (hwc) is 7 pixels of column 0
    const auto = await analyzeJson([TWIN, '--input', NHWC_DATA, '--sigma', '60', '--window', '0,0,7,1']);
    const explicit = await analyzeJson([TWIN, '--input', NHWC_DATA, '--sigma', '60', '--layout', 'hwc', '--window', '0,0,7,1']);
    const small = await analyzeJson([LENET, '--input', NCHW_DATA, '--sigma', '60', '--window', '0,0,7,1']);
    expect(auto.noise.support).toBe(7);
    expectSameResults(auto, small);
    expectSameResults(explicit, small);
    // a window that does not fit the overridden reading: one line naming the model, exit 2
    expectBadInput(
      await cli(['analyze', TWIN, '--input', NHWC_DATA, '--sigma', '1', '--layout', 'chw', '--window', '0,0,7,7']),
      TWIN,
      /--window 0,0,7,7 does not fit inside the input \[28, 28, 1\], channels-first \(--layout chw\), rows x columns 28x1/,
    );
    expectBadInput(
      await cli(['sensitivity', TWIN, '--data', NHWC_DATA, '--sigma', '1', '--layout', 'chw', '--out-dir', join(dir, 'never')]),
      TWIN,
      /a 7x7 window does not fit in the input \[28, 28, 1\], channels-first \(--layout chw\), rows x columns 28x1/,
    );
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it("attack draws the twin's pictures as 28 x 28 images, like the LeNet's", async () => {
    const sizes = await Promise.all(
      [LENET, TWIN].map(async (model, k) => {
        const out = join(dir, `attack-${k}`);
        const r = await cli([
          'attack',
          model,
          '--input',
          k === 0 ? NCHW_DATA : NHWC_DATA,
          '--count',
          '1',
          '--target',
          '3',
          '--iters',
          '5',
          '--verify',
          '20',
          '--out-dir',
          out,
          '-q',
        ]);
        expect(r.code, r.stderr).toBe(0);
        const png = PNG.sync.read(readFileSync(join(out, 'attack-0.png')));
        return [png.width, png.height];
      }),
    );
    expect(sizes[1]).toEqual(sizes[0]);
    expect(sizes[0][1]).toBeGreaterThan(100); // 28 rows zoomed, not a 28 x 1 strip
  });
});

describe('colour PNGs follow the layout', () => {
  // x [N, 3, 5, 5] -> Flatten -> Gemm -> Relu -> Gemm -> y [N, 3], and its channels-last twin
  function colourNets(): { nchw: string; nhwc: string } {
    let s = 7;
    const r = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const W1 = makeTensor('W1', DataType.FLOAT, [8, 75], Array.from({ length: 600 }, r));
    const b1 = makeTensor('b1', DataType.FLOAT, [8], Array.from({ length: 8 }, r));
    const W2 = makeTensor('W2', DataType.FLOAT, [3, 8], Array.from({ length: 24 }, r));
    const body = [
      makeNode('Flatten', ['x'], ['f'], { attributes: { axis: 1 } }),
      makeNode('Gemm', ['f', 'W1', 'b1'], ['h'], { attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r']),
      makeNode('Gemm', ['r', 'W2'], ['y'], { attributes: { transB: 1 } }),
    ];
    const write = (name: string, input: string, shape: number[], pre: ReturnType<typeof makeNode>[]) => {
      const file = join(dir, name);
      writeFileSync(
        file,
        encodeModel(
          makeModel({
            name,
            node: [...pre, ...body],
            initializer: [W1, b1, W2],
            input: [makeValueInfo(input, DataType.FLOAT, ['N', ...shape])],
            output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
          }),
        ),
      );
      return file;
    };
    return {
      nchw: write('rgb-nchw.onnx', 'x', [3, 5, 5], []),
      nhwc: write('rgb-nhwc.onnx', 'x_nhwc', [5, 5, 3], [makeNode('Transpose', ['x_nhwc'], ['x'], { attributes: { perm: [0, 3, 1, 2] } })]),
    };
  }

  it('an RGB PNG given to a channels-last model is decoded channels-last (and --layout chw says otherwise)', async () => {
    const { nchw, nhwc } = colourNets();
    const png = join(dir, 'rgb.png');
    writeFileSync(
      png,
      encodeRgbPng(
        Uint8Array.from({ length: 75 }, (_, i) => (i * 53) % 256),
        5,
        5,
      ),
    );
    const a = await analyzeJson([nchw, '--input', png, '--sigma', '0.05', '--relu', '0']);
    const b = await analyzeJson([nhwc, '--input', png, '--sigma', '0.05', '--relu', '0']);
    expectSameResults(b, a);
    const wrong = await analyzeJson([nhwc, '--input', png, '--sigma', '0.05', '--relu', '0', '--layout', 'chw']);
    expect(wrong.results[0].mean).not.toEqual(b.results[0].mean);
  });
});

describe('non-image inputs', () => {
  const FLAT = 'fixtures/affine-relu-affine.onnx'; // input [N, 12]
  const flatData = join(dir, 'flat.npy');
  beforeAll(async () => {
    writeFileSync(
      flatData,
      encodeNpy(
        Float32Array.from({ length: 36 }, (_, i) => Math.sin(i + 1)),
        [3, 12],
      ),
    );
  });

  it('attack on a flat input: exit 0, mu.npy and attack.json, no PNG, a note on stderr', async () => {
    const out = join(dir, 'attack-flat');
    const r = await cli(['attack', FLAT, '--input', flatData, '--target', '1', '--beta', '0.5', '--iters', '20', '--verify', '50', '--out-dir', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/the model's input \[12\] is not an image \(no rows and columns\): writing no PNG pictures, only mu\.npy and attack\.json/);
    expect(readdirSync(out).sort()).toEqual(['attack.json', 'mu.npy']);
    const rep = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8'));
    expect(rep.files).toEqual(['mu.npy', 'attack.json']);
    expect(rep.results).toHaveLength(3);
    expect(rep.results.every((x: { picture: unknown }) => x.picture === null)).toBe(true);
    expect(readNpy(join(out, 'mu.npy')).shape).toEqual([3, 12]);

    const uni = join(dir, 'attack-flat-universal');
    const u = await cli(['attack', FLAT, '--universal', '--data', flatData, '--beta', '0.5', '--iters', '20', '--verify', '20', '--out-dir', uni, '-q']);
    expect(u.code, u.stderr).toBe(0);
    expect(readdirSync(uni).sort()).toEqual(['attack.json', 'mu.npy']);
    expect(JSON.parse(readFileSync(join(uni, 'attack.json'), 'utf8')).files).toEqual(['mu.npy', 'attack.json']);
    expect(readNpy(join(uni, 'mu.npy')).shape).toEqual([12]);
  });

  it('impossible combinations: one line naming the model, exit 2, nothing written', async () => {
    const out = join(dir, 'never-flat');
    expectBadInput(
      await cli(['attack', FLAT, '--input', flatData, '--target', '1', '--layout', 'hwc', '--out-dir', out]),
      FLAT,
      /--layout hwc needs an image input .*the model's input has shape \[12\]/,
    );
    expectBadInput(
      await cli(['sensitivity', FLAT, '--data', flatData, '--sigma', '1', '--out-dir', out]),
      FLAT,
      /a sliding window needs an image input .*shape \[12\]/,
    );
    expectBadInput(
      await cli(['analyze', FLAT, '--input', flatData, '--sigma', '1', '--window', '0,0,1,1']),
      FLAT,
      /--window needs an image input .*shape \[12\]/,
    );
    expect(existsSync(out)).toBe(false);
  });
});
