/**
 * sensitivity, fooling and tightness over --data take the session settings every command takes:
 * --jacobian reaches their linearization (central finite differences give moments a little off
 * the forward-mode ones, on the bundled LeNet) and --provider their onnxruntime sessions (each
 * command does with --provider cuda what analyze does: here, without CUDA binaries, the same one-line
 * error and exit 2; with them, a run).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { encodeNpy } from '../../src/data/npy.js';
import { foolingRate } from '../../src/experiments/fooling.js';
import { sensitivityMaps } from '../../src/experiments/sensitivity.js';
import { tightnessOnData } from '../../src/experiments/tightness.js';
import { loadModel } from '../../src/onnx/load.js';
import { runCli } from '../helpers/cli.js';

const DATA = 'fixtures/mnist/digits-10.npy';

describe('--jacobian and --provider reach sensitivity, fooling and tightness', () => {
  it('--jacobian fd moves their numbers a little from forward mode', async () => {
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset(DATA, { inputShape: [1, 28, 28] });
    const runs = { forward: [] as number[][], fd: [] as number[][] };
    for (const jacobian of ['forward', 'fd'] as const) {
      const s = await sensitivityMaps(model, ds, [0], { windowSize: 7, stride: 7, sigma: 64, probabilityPoints: 16, jacobian });
      const f = await foolingRate(model, ds, [0], { perturbation: new Float64Array(784), sigma: 300, method: 'two-stage', jacobian });
      const t = await tightnessOnData(model, ds, { runs: 1, indices: [0], mc: 2, noise: { kind: 'isotropic', sigma: 64 }, method: 'two-stage', jacobian });
      runs[jacobian] = [Array.from(s.images[0].meanMargin), [f.images[0].flipProbability], t.runDetails[0].analytic.mean];
    }
    // [tolerance, what]: margins and means in logit units (about 10), the flip probability in 0..1
    const tol = [1e-2, 2e-2, 1e-2];
    runs.fd.forEach((v, k) => {
      expect(v, `part ${k}`).not.toEqual(runs.forward[k]);
      v.forEach((x, i) => expect(Math.abs(x - runs.forward[k][i]), `part ${k}[${i}]`).toBeLessThan(tol[k]));
    });
  }, 60_000);

  it('--provider cuda does in each what it does in analyze', () => {
    const ref = runCli(['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8', '--provider', 'cuda', '-q']);
    const out = mkdtempSync(join(tmpdir(), 'nm-sessions-'));
    writeFileSync(join(out, 'zero.npy'), encodeNpy(new Float32Array(784), [1, 28, 28]));
    const common = ['--data', DATA, '--sigma', '8', '--provider', 'cuda', '-q'];
    for (const args of [
      ['sensitivity', 'fixtures/lenet.onnx', ...common, '--count', '1', '--stride', '9', '--out-dir', join(out, 's')],
      ['fooling', 'fixtures/lenet.onnx', ...common, '--count', '1', '--perturbation', join(out, 'zero.npy'), '--out', join(out, 'f.json')],
      ['tightness', 'fixtures/lenet.onnx', ...common, '--runs', '1', '--mc', '10', '--out-dir', join(out, 't')],
    ]) {
      const r = runCli(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(ref.code);
      if (ref.code !== 0) expect(r.stderr.trim(), args[0]).toBe(ref.stderr.trim());
    }
  }, 60_000);
});
