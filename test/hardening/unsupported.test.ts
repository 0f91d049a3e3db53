/**
 * Models netmoments cannot analyse, or can only with a caveat (issue 7, docs/SECURITY.md): no
 * ReLU, a ReLU only inside a control-flow body, an op without a tangent rule below the split
 * (finite differences with a warning under --jacobian auto, a clear error under jvp), float16,
 * float64 and int8/uint8-quantized models (refused with a message that names the type).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeModel, makeModel, makeNode, makeValueInfo, DataType } from '../../src/onnx/proto.js';
import { expectBadInput, ROOT, runCli } from '../helpers/cli.js';
import { float64Net, noReluNet, reluInIfNet } from '../onnx/models.js';
import { absBottomModel, cli, float16InputModel, float16WeightsModel, quantizedModel, tmp, write } from './models.js';

describe('models without a usable ReLU', () => {
  it('no ReLU at all: inspect says so, analyze propagates by default, and two-stage is a clear error', async () => {
    const file = write(tmp(), 'norelu.onnx', noReluNet());
    const i = await cli(['inspect', file]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/ReLU split points: none/);
    const a = await cli(['analyze', file, '--quiet']);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ method: 'propagate', split: null });
    expectBadInput(
      await cli(['analyze', file, '--quiet', '--method', 'two-stage']),
      file,
      /no Relu node to split at; netmoments needs a piecewise-linear network with at least one ReLU/,
    );
  });

  it('the only ReLU inside an If body: a clear error naming the node', async () => {
    const file = write(tmp(), 'if.onnx', reluInIfNet());
    expectBadInput(await cli(['analyze', file, '--quiet']), file, /inside control-flow subgraphs.*'branch'.*cannot be split/);
    expectBadInput(await cli(['linearize', file, '--out-dir', join(tmp(), 'o'), '--quiet']), file, /inside control-flow subgraphs/);
  });

  it('a ReLU in a custom domain is not a ReLU', async () => {
    const m = makeModel(
      {
        name: 'custom',
        node: [makeNode('Relu', ['x'], ['y'], { name: 'myrelu', domain: 'com.example' })],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 3])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
      },
      { extraOpsets: [{ domain: 'com.example', version: 1 }] },
    );
    const file = write(tmp(), 'custom.onnx', encodeModel(m));
    const r = await cli(['analyze', file, '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(file);
    expect(r.stderr).not.toMatch(/internal error|\bat .+:\d+:\d+/);
  });
});

describe('an op without a tangent rule below the split (Abs)', () => {
  const file = write(tmp(), 'abs.onnx', absBottomModel());

  it('--jacobian auto: finite differences, with a warning naming the op', async () => {
    const r = await cli(['analyze', file, '--relu', '0', '--sigma', '0.1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no tangent \(JVP\) rule for Abs node 'abs'.*central finite differences instead/);
    const rep = JSON.parse(r.stdout);
    expect(rep.run.jacobian).toMatch(/^(fd|mixed)$/);
    expect(rep.results[0].mean.every(Number.isFinite)).toBe(true);
    // inspect marks the split as not linearizable by JVP, naming the op
    expect((await cli(['inspect', file])).stdout).toMatch(/no \(Abs\)/);
  });

  it('--jacobian jvp: a clear error, exit 2, no stack', async () => {
    expectBadInput(runCli(['analyze', file, '--relu', '0', '--jacobian', 'jvp', '--quiet']), file, /no tangent \(JVP\) rule for Abs node 'abs'/);
  });

  it('--jacobian fd works without a warning about the fallback', async () => {
    const r = await cli(['analyze', file, '--relu', '0', '--jacobian', 'fd']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/instead/);
  });
});

describe('number types: refused with a message that names the type', () => {
  it('float16 weights (refused by the loader) and a float16 input', async () => {
    const dir = tmp();
    const w = write(dir, 'half-weights.onnx', float16WeightsModel());
    expectBadInput(await cli(['inspect', w]), w, /initializer 'W1' has data type float16, which is not supported/);
    expectBadInput(await cli(['analyze', w, '--quiet']), w, /float16/);
    const i = write(dir, 'half-input.onnx', float16InputModel());
    expectBadInput(await cli(['analyze', i, '--quiet']), i, /the model input 'x' is float16, not float32; netmoments analyses float32 models/);
  });

  it('float64: inspect and split work, analyze refuses naming float64', async () => {
    const file = write(tmp(), 'f64.onnx', float64Net());
    const i = await cli(['inspect', file, '--json']);
    expect(i.code, i.stderr).toBe(0);
    expect(JSON.parse(i.stdout).inputs[0].type).toBe('float64');
    expectBadInput(await cli(['analyze', file, '--quiet']), file, /the model input 'x' is float64, not float32/);
  });

  it('int8- and uint8-quantized (QuantizeLinear/DequantizeLinear): refused naming the integer type', async () => {
    const dir = tmp();
    const q8 = write(dir, 'int8.onnx', quantizedModel('int8'));
    expectBadInput(runCli(['analyze', q8, '--quiet']), q8, /the model is int8-quantized \(QuantizeLinear node 'quant'\); netmoments analyses float32 models/);
    expectBadInput(await cli(['linearize', q8, '--out-dir', join(dir, 'o'), '--quiet']), q8, /int8-quantized/);
    const u8 = write(dir, 'uint8.onnx', quantizedModel('uint8'));
    expectBadInput(await cli(['analyze', u8, '--quiet']), u8, /the model is uint8-quantized/);
    // inspect still describes it, listing the ops without a rule
    const r = await cli(['inspect', q8]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/QuantizeLinear/);
  });

  it('the bundled float32 LeNet is supported', async () => {
    const r = await cli(['analyze', join(ROOT, 'fixtures', 'lenet.onnx'), '--window', '10,10,3,3', '--sigma', '8', '--variance', 'none', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
  });
});
