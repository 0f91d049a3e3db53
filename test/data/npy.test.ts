import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { encodeNpy, npyToFloat64, parseNpy, readNpy, writeNpy, type NpyData, type NpyDtype } from '../../src/data/npy.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Files written by NumPy 1.24 (np.save), base64.
const NUMPY = {
  // np.arange(12, dtype='<f4').reshape(3, 4)
  f4: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsIDQpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPwAAAEAAAEBAAACAQAAAoEAAAMBAAADgQAAAAEEAABBBAAAgQQAAMEE=',
  // np.lib.format.write_array(f, np.ones((2, 2), '<f4'), version=(2, 0))
  v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwgMiksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAIA/AACAPwAAgD8AAIA/',
  // np.asfortranarray(np.ones((2, 3), '<f4'))
  fortran:
    'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAIA/AACAPwAAgD8AAIA/AACAPwAAgD8=',
  // np.ones(3, '>f4')
  bigEndian:
    'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo/gAAAP4AAAD+AAAA=',
  // np.array([1, -2, 3], dtype=np.int64)
  i8: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAAAAAAAP7/////////AwAAAAAAAAA=',
};
const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** A hand-made .npy: header dict text, data bytes, format version. */
function rawNpy(dict: string, data: Uint8Array, version = 1): Uint8Array {
  const prefix = version === 1 ? 10 : 12;
  let header = dict + '\n';
  while ((prefix + header.length) % 64 !== 0) header = header.slice(0, -1) + ' \n';
  const out = new Uint8Array(prefix + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const v = new DataView(out.buffer);
  if (version === 1) v.setUint16(8, header.length, true);
  else v.setUint32(8, header.length, true);
  out.set(new TextEncoder().encode(header), prefix);
  out.set(data, prefix + header.length);
  return out;
}

function expectError(fn: () => unknown, pattern: RegExp, file?: string): NetmomentsError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(NetmomentsError);
  const e = err as NetmomentsError;
  expect(e.message).toMatch(pattern);
  if (file) {
    expect(e.file).toBe(file);
    expect(e.describe()).toContain(file);
  }
  return e;
}

describe('npy: reading files NumPy wrote', () => {
  it('reads float32 [3, 4] and int64 with the values NumPy stored', () => {
    const a = parseNpy(b64(NUMPY.f4));
    expect(a.dtype).toBe('float32');
    expect(a.shape).toEqual([3, 4]);
    expect(a.version).toBe(1);
    expect(Array.from(a.data as Float32Array)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    const b = parseNpy(b64(NUMPY.i8));
    expect(b.dtype).toBe('int64');
    expect(Array.from(b.data as BigInt64Array)).toEqual([1n, -2n, 3n]);
  });

  it('reads a version 2.0 file', () => {
    const a = parseNpy(b64(NUMPY.v2));
    expect(a.version).toBe(2);
    expect(a.shape).toEqual([2, 2]);
    expect(Array.from(a.data as Float32Array)).toEqual([1, 1, 1, 1]);
  });

  it('writes the same bytes as NumPy for a float32 [3, 4] array', () => {
    const ours = encodeNpy(
      Float32Array.from({ length: 12 }, (_, i) => i),
      [3, 4],
    );
    expect(Buffer.from(ours).toString('base64')).toBe(NUMPY.f4);
  });

  it('copies data that sits at an odd offset inside a larger buffer', () => {
    const src = b64(NUMPY.f4);
    const big = new Uint8Array(src.length + 3);
    big.set(src, 3);
    const a = parseNpy(big.subarray(3));
    expect((a.data as Float32Array)[11]).toBe(11);
  });
});

describe('npy: round trips', () => {
  const cases: { dtype: NpyDtype; data: NpyData; shape: number[] }[] = [
    { dtype: 'float32', data: Float32Array.from([1.5, -2.25, 3e-8, 1e30, -0, 7]), shape: [2, 3] },
    { dtype: 'float64', data: Float64Array.from([Math.PI, -Math.E, 1e-300, 1e300]), shape: [2, 1, 2] },
    { dtype: 'uint8', data: Uint8Array.from([0, 1, 127, 128, 255]), shape: [5] },
    { dtype: 'int8', data: Int8Array.from([-128, -1, 0, 127]), shape: [4] },
    { dtype: 'int32', data: Int32Array.from([-2147483648, 0, 2147483647]), shape: [3] },
    { dtype: 'int64', data: BigInt64Array.from([-(2n ** 63n), -1n, 0n, 2n ** 62n]), shape: [2, 2] },
    { dtype: 'float32', data: new Float32Array([42]), shape: [] },
    { dtype: 'float64', data: new Float64Array(0), shape: [0, 5] },
  ];
  for (const version of [1, 2, 3] as const) {
    for (const c of cases) {
      it(`${c.dtype} shape [${c.shape}] through a v${version} header`, () => {
        const bytes = encodeNpy(c.data, c.shape, { version });
        expect(bytes[6]).toBe(version);
        const headerLen = version === 1 ? new DataView(bytes.buffer).getUint16(8, true) + 10 : new DataView(bytes.buffer).getUint32(8, true) + 12;
        expect(headerLen % 64).toBe(0); // data aligned like NumPy's
        const back = parseNpy(bytes);
        expect(back.dtype).toBe(c.dtype);
        expect(back.shape).toEqual(c.shape);
        expect(back.version).toBe(version);
        expect(back.data.constructor).toBe(c.data.constructor);
        expect(Array.from(back.data as ArrayLike<number>)).toEqual(Array.from(c.data as ArrayLike<number>));
      });
    }
  }

  it('bool (a 0/1 Uint8Array) with dtype: bool writes |b1', () => {
    const bytes = encodeNpy(Uint8Array.from([1, 0, 1, 1]), [2, 2], { dtype: 'bool' });
    expect(new TextDecoder().decode(bytes.subarray(10, 40))).toContain("'|b1'");
    const back = parseNpy(bytes);
    expect(back.dtype).toBe('bool');
    expect(Array.from(back.data as Uint8Array)).toEqual([1, 0, 1, 1]);
  });

  it('writeNpy writes through a temporary file and readNpy reads it back', () => {
    const path = join(dir, 'round.npy');
    writeNpy(path, Float64Array.from([1, 2, 3]), [3]);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const a = readNpy(path);
    expect(Array.from(npyToFloat64(a))).toEqual([1, 2, 3]);
  });

  it('switches to a v2 header when the shape does not fit v1', () => {
    const shape = Array.from({ length: 30 }, () => 1);
    const bytes = encodeNpy(new Float32Array(1), shape, { version: 1 });
    expect(parseNpy(bytes).shape).toEqual(shape);
    expect(() => encodeNpy(new Float32Array(3), [2, 2])).toThrow(/3 values/);
  });
});

describe('npy: errors name the file', () => {
  const file = join(dir, 'bad.npy');
  const write = (bytes: Uint8Array) => writeFileSync(file, bytes);

  it('Fortran order', () => {
    write(b64(NUMPY.fortran));
    const e = expectError(() => readNpy(file), /Fortran-order/, file);
    expect(e.code).toBe('UNSUPPORTED');
  });

  it('big endian', () => {
    write(b64(NUMPY.bigEndian));
    expectError(() => readNpy(file), /big-endian.*'>f4'/, file);
  });

  it('bad magic', () => {
    write(new TextEncoder().encode('PK\x03\x04 this is a zip, not an npy file'));
    expectError(() => readNpy(file), /bad magic/, file);
    write(new Uint8Array(3));
    expectError(() => readNpy(file), /bad magic/, file);
  });

  it('truncated data', () => {
    const good = b64(NUMPY.f4);
    write(good.subarray(0, good.length - 3));
    expectError(() => readNpy(file), /truncated .npy data: shape \(3, 4\) of float32 needs 48 bytes, the file holds 45/, file);
  });

  it('truncated header', () => {
    write(b64(NUMPY.f4).subarray(0, 40));
    expectError(() => readNpy(file), /truncated .npy header/, file);
  });

  it('extra data after the array', () => {
    const good = b64(NUMPY.f4);
    const more = new Uint8Array(good.length + 4);
    more.set(good);
    write(more);
    expectError(() => readNpy(file), /holds 52 bytes of data but its header/, file);
  });

  it('unsupported dtypes: float16, complex64, structured', () => {
    write(rawNpy("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", new Uint8Array(4)));
    expectError(() => readNpy(file), /unsupported dtype '<f2'/, file);
    write(rawNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", new Uint8Array(16)));
    expectError(() => readNpy(file), /unsupported dtype '<c8'/, file);
    write(rawNpy("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }", new Uint8Array(16)));
    expectError(() => readNpy(file), /structured dtypes/, file);
  });

  it('malformed headers', () => {
    write(rawNpy("{'descr': '<f4', 'shape': (2,), }", new Uint8Array(8)));
    expectError(() => readNpy(file), /missing 'fortran_order'/, file);
    write(rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,-1), }", new Uint8Array(8)));
    expectError(() => readNpy(file), /bad 'shape'/, file);
    write(rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", new Uint8Array(8)));
    expectError(() => readNpy(file), /malformed .npy header/, file);
    write(rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", new Uint8Array(8), 7));
    expectError(() => readNpy(file), /format version 7/, file);
  });

  it('a missing file', () => {
    expectError(() => readNpy(join(dir, 'nope.npy')), /ENOENT/, join(dir, 'nope.npy'));
  });

  it('accepts a hand-made v3 (UTF-8) header and the old int64 "L" suffix', () => {
    const data = new Uint8Array(Float32Array.from([5, 6]).buffer);
    const a = parseNpy(rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }", data, 3), 'x.npy');
    expect(a.shape).toEqual([2]);
    expect(Array.from(a.data as Float32Array)).toEqual([5, 6]);
  });

  it('reads the bundled sample as float32 [100, 1, 28, 28]', () => {
    const a = readNpy('fixtures/mnist/digits-100.npy');
    expect(a.shape).toEqual([100, 1, 28, 28]);
    expect(a.dtype).toBe('float32');
    const raw = readFileSync('fixtures/mnist/digits-100.npy');
    expect(raw.length).toBe(128 + 100 * 784 * 4);
  });
});
