/**
 * Hostile model files through the real CLI (issue 7, docs/SECURITY.md): declared tensor sizes that
 * the data does not back, length fields past the end of the file, nested control-flow subgraphs,
 * protobuf nesting deeper than the stack. Both `inspect` and `analyze` must answer exit 2 with one
 * line naming the file, before any work, and leave no report behind.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, type TensorProto } from '../../src/onnx/proto.js';
import { expectBadInput, ROOT, runCli } from '../helpers/cli.js';
import { encodeNpy } from '../../src/data/npy.js';
import { cli, f32, fcModel, graphField, nestedIfModel, tmp, varint, withGraphLength, write } from './models.js';

/** inspect and analyze (with --out) both refuse `file` with `problem`; nothing is written. */
async function bothRefuse(file: string, problem: RegExp, real = false): Promise<void> {
  const run = real ? async (a: string[]) => runCli(a) : cli;
  expectBadInput(await run(['inspect', file]), file, problem);
  const dir = tmp('nm-hard-out-');
  const out = join(dir, 'report.json');
  expectBadInput(await run(['analyze', file, '--quiet', '--out', out]), file, problem);
  expect(existsSync(out)).toBe(false);
  expect(readdirSync(dir)).toEqual([]);
}

describe('declared tensor sizes against the data in the file', () => {
  it('raw_data shorter or longer than the dims say', async () => {
    const dir = tmp();
    const short: TensorProto = { name: 'W1', dataType: DataType.FLOAT, dims: [6, 4], rawData: new Uint8Array(8) };
    await bothRefuse(
      write(dir, 'short.onnx', fcModel({ inits: [short, f32('b1', [6]), f32('W2', [3, 6]), f32('b2', [3])] })),
      /initializer 'W1' declares 24 elements of float32 \(96 bytes\) but holds 8 bytes/,
    );
    const long: TensorProto = { name: 'W1', dataType: DataType.FLOAT, dims: [6, 4], rawData: new Uint8Array(100) };
    await bothRefuse(
      write(dir, 'long.onnx', fcModel({ inits: [long, f32('b1', [6]), f32('W2', [3, 6]), f32('b2', [3])] })),
      /initializer 'W1' declares 24 elements .* but holds 100 bytes/,
    );
  });

  it('float_data with fewer values than the dims, and a huge declared tensor with no data', async () => {
    const dir = tmp();
    const few: TensorProto = { name: 'b1', dataType: DataType.FLOAT, dims: [6], floatData: [1, 2] };
    await bothRefuse(
      write(dir, 'few.onnx', fcModel({ inits: [f32('W1', [6, 4]), few, f32('W2', [3, 6]), f32('b2', [3])] })),
      /initializer 'b1' declares 6 elements but holds 2|'b1'.*6.*2/,
    );
    // 2^31 - 1 elements claimed, 4 bytes present: refused from the dims, nothing allocated
    const huge: TensorProto = { name: 'b1', dataType: DataType.FLOAT, dims: [2 ** 31 - 1], rawData: new Uint8Array(4) };
    await bothRefuse(
      write(dir, 'huge.onnx', fcModel({ inits: [f32('W1', [6, 4]), huge, f32('W2', [3, 6]), f32('b2', [3])] })),
      /initializer 'b1' declares 2147483647 elements .* but holds 4 bytes/,
    );
  });

  it('negative, absurd and too many dims on an initializer', async () => {
    const dir = tmp();
    const withB1 = (t: TensorProto) => fcModel({ inits: [f32('W1', [6, 4]), t, f32('W2', [3, 6]), f32('b2', [3])] });
    await bothRefuse(
      write(dir, 'neg.onnx', withB1({ name: 'b1', dataType: DataType.FLOAT, dims: [-6], rawData: new Uint8Array(24) })),
      /initializer 'b1' declares an invalid dimension \(-6\)/,
    );
    await bothRefuse(
      write(dir, 'big.onnx', withB1({ name: 'b1', dataType: DataType.FLOAT, dims: [2 ** 40], rawData: new Uint8Array(24) })),
      /initializer 'b1' declares an absurd dimension/,
    );
    await bothRefuse(
      write(dir, 'count.onnx', withB1({ name: 'b1', dataType: DataType.FLOAT, dims: [2 ** 20, 2 ** 20], rawData: new Uint8Array(24) })),
      /initializer 'b1' declares 1099511627776 elements, more than netmoments handles/,
    );
    await bothRefuse(
      write(dir, 'axes.onnx', withB1({ name: 'b1', dataType: DataType.FLOAT, dims: Array(70).fill(1), rawData: new Uint8Array(4) })),
      /initializer 'b1' declares 70 dimensions/,
    );
    // the same on a Constant node's tensor attribute
    const constant = makeNode('Constant', [], ['k'], { name: 'k', attributes: { value: makeTensor('', DataType.FLOAT, [2], [1, 2]) } });
    constant.attribute![0].t!.dims = [-2];
    const g = fcModel({
      nodes: [
        constant,
        makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
        makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
        makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
      ],
    });
    await bothRefuse(write(dir, 'attr.onnx', g), /tensor attribute of node 'k' .*declares an invalid dimension \(-2\)/);
  });
});

describe('protobuf framing', () => {
  it('a length field that runs past the end of the file', async () => {
    const dir = tmp();
    const bytes = fcModel();
    const g = graphField(bytes);
    // the graph's length claims the rest of the file and more
    const rest = bytes.length - g.lenEnd;
    for (const extra of [1, 1000, 2 ** 31]) {
      const file = write(dir, `past-${extra}.onnx`, withGraphLength(bytes, rest + extra));
      await bothRefuse(file, /not an ONNX model or truncated: /, extra === 1);
    }
  });

  it('a file cut anywhere inside a real model', async () => {
    const dir = tmp();
    const full = new Uint8Array(readFileSync(join(ROOT, 'fixtures', 'residual.onnx')));
    for (const at of [1, 7, 100, Math.floor(full.length / 2), full.length - 1]) {
      await bothRefuse(write(dir, `cut-${at}.onnx`, full.subarray(0, at)), /not an ONNX model|truncated|not produced|reads|no graph|no data input|no outputs/);
    }
  });

  it('protobuf nesting far deeper than the stack (30,000 levels of node/attribute/graph)', async () => {
    const headers: number[][] = [];
    let len = 0;
    const wrap = (tag: number): void => {
      const h = [(tag << 3) | 2, ...varint(len)];
      headers.push(h);
      len += h.length;
    };
    for (let d = 0; d < 30000; d++) {
      wrap(6); // AttributeProto.g
      wrap(5); // NodeProto.attribute
      wrap(1); // GraphProto.node
    }
    wrap(7); // ModelProto.graph
    const file = write(tmp(), 'deep.onnx', Uint8Array.from(headers.reverse().flat()));
    await bothRefuse(file, /not an ONNX model or truncated: messages nest too deeply|nest/, true);
  });
});

describe('control-flow subgraphs', () => {
  it('If bodies nested 17 levels deep are rejected; 16 levels load but their ReLU cannot be split', async () => {
    const dir = tmp();
    await bothRefuse(write(dir, 'if17.onnx', nestedIfModel(17)), /control-flow subgraphs nest deeper than 16 levels/);
    await bothRefuse(write(dir, 'if40.onnx', nestedIfModel(40)), /control-flow subgraphs nest deeper than 16 levels/);
    const file = write(dir, 'if16.onnx', nestedIfModel(16));
    const inspect = await cli(['inspect', file]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/ReLU split points: none/);
    const out = join(dir, 'r.json');
    expectBadInput(await cli(['analyze', file, '--quiet', '--out', out]), file, /inside control-flow subgraphs.*cannot be split/);
    expect(existsSync(out)).toBe(false);
  });

  it('a model that uses ai.onnx ops without importing the opset, or names no graph', async () => {
    const dir = tmp();
    const m = makeModel({
      name: 'g',
      node: [makeNode('Relu', ['x'], ['y'])],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 2])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
    });
    m.opsetImport = [{ domain: 'com.example', version: 1 }];
    await bothRefuse(write(dir, 'noopset.onnx', encodeModel(m)), /imports no ai\.onnx opset/);
    const empty = makeModel({ name: 'g' });
    delete empty.graph;
    await bothRefuse(write(dir, 'nograph.onnx', encodeModel(empty)), /holds no graph|empty/);
  });
});

describe('hostile values and strings inside a well-formed model', () => {
  it('weights that overflow float32 when the model runs: exit 2 naming the model, not a crash', async () => {
    const dir = tmp();
    const big = makeTensor('W1', DataType.FLOAT, [6, 4], new Array(24).fill(3e38));
    const file = write(dir, 'overflow.onnx', fcModel({ inits: [big, f32('b1', [6]), f32('W2', [3, 6]), f32('b2', [3])] }));
    const x = write(dir, 'x.npy', encodeNpy(new Float32Array(4).fill(2), [4]));
    const out = join(dir, 'r.json');
    // at x = 2 the first layer is 4 x 3e38 x 2: Inf in float32 (at x = 0 everything stays finite in float64)
    const r = await cli(['analyze', file, '--quiet', '--input', x, '--sigma', '1', '--out', out]);
    expectBadInput(r, file, /non-finite|overflow/);
    expect(existsSync(out)).toBe(false);
  });

  it('names and metadata with terminal escape sequences never reach the terminal raw', async () => {
    const esc = '\u001b[2J\u001b]0;owned\u0007';
    const m = makeModel(
      {
        name: 'esc',
        node: [
          makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: `fc${esc}`, attributes: { transB: 1 } }),
          makeNode('Relu', ['h'], [`r${esc}`], { name: `relu${esc}` }),
          makeNode('Gemm', [`r${esc}`, 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['N', 4])],
        output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
        initializer: [f32('W1', [6, 4]), f32('b1', [6]), f32('W2', [3, 6]), f32('b2', [3])],
      },
      { producerName: `evil${esc}`, metadata: { [`netmoments.note${esc}`]: `value${esc}` } },
    );
    const file = write(tmp(), 'esc.onnx', encodeModel(m));
    const human = await cli(['inspect', file]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('relu?[2J');
    expect(human.stdout).not.toMatch(/[\u001b\u0007]/);
    const json = await cli(['inspect', file, '--json']);
    expect(json.stdout).not.toMatch(/[\u001b\u0007]/); // JSON escapes them as \u001b
    expect(JSON.parse(json.stdout).relus[0].node).toBe(`relu${esc}`);
    const bad = await cli(['analyze', file, '--relu', 'nope', '--quiet']);
    expectBadInput(bad, file, /no ReLU named 'nope'/);
    expect(bad.stderr).not.toMatch(/[\u001b\u0007]/);
    // two-stage: its summary names the split node
    const summary = await cli(['analyze', file, '--sigma', '0.1', '--method', 'two-stage', '--out', join(tmp(), 'r.json')]);
    expect(summary.code, summary.stderr).toBe(0);
    expect(summary.stderr).toMatch(/split at ReLU 0/);
    expect(summary.stderr).not.toMatch(/[\u001b\u0007]/);
  });
});
