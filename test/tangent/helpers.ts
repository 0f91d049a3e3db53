/** Shared by the tangent and Jacobian tests: tiny in-memory models, seeded randoms, JVP-vs-FD checks. */
import { expect } from 'vitest';
import { Graph, graphFromModelProto } from '../../src/onnx/graph.js';
import {
  DataType,
  encodeModel,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  onnx,
  type NodeProto,
  type TensorProto,
} from '../../src/onnx/proto.js';
import { createJacobianEngine, type JacobianResult, type Point } from '../../src/linearize/jacobian.js';

export { makeNode };

/** mulberry32 + Box-Muller. */
export function rng(seed: number): { uniform(): number; normal(): number; normals(n: number, scale?: number): Float32Array } {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal, normals: (n, scale = 1) => Float32Array.from({ length: n }, () => scale * normal()) };
}

export function floatInit(name: string, dims: number[], values: ArrayLike<number>): TensorProto {
  return makeTensor(name, DataType.FLOAT, dims, values);
}
export function intInit(name: string, values: number[]): TensorProto {
  return makeTensor(name, DataType.INT64, [values.length], values);
}
export function randomInit(r: ReturnType<typeof rng>, name: string, dims: number[], scale = 0.5): TensorProto {
  return floatInit(name, dims, r.normals(dims.reduce((a, d) => a * d, 1), scale));
}

export interface ModelSpecLite {
  opset?: number;
  inputs: [string, (number | string)[]][];
  outputs: string[];
  nodes: NodeProto[];
  initializers?: TensorProto[];
}

/** A Graph from an in-memory model, through an encode/decode round trip (as from a file). */
export function buildGraph(spec: ModelSpecLite): Graph {
  const model = makeModel(
    {
      name: 'test',
      node: spec.nodes,
      input: spec.inputs.map(([n, d]) => makeValueInfo(n, DataType.FLOAT, d)),
      output: spec.outputs.map((o) => makeValueInfo(o, DataType.FLOAT)),
      initializer: spec.initializers ?? [],
    },
    { opset: spec.opset ?? 13 },
  );
  return graphFromModelProto(onnx.ModelProto.decode(encodeModel(model)));
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export interface CompareOptions {
  varying?: string[];
  outputs?: string[];
  point?: Point;
  seed?: number;
  /** Central-difference step (default 1e-3: small enough to stay off the kinks at a random point). */
  step?: number;
  /**
   * |J_jvp - J_fd| <= tol * max |J| + noise per entry (default 2e-3), where noise = 8 ulp of the
   * largest output over the step, 8 * 2^-23 * max |f| / h: what float32 rounding of the outputs
   * does to a central difference.
   */
  tol?: number;
  /** Also build the tangent model without static shapes and require the same Jacobian (default true). */
  bothShapeModes?: boolean;
}

/** Float32 rounding noise of a central difference: 8 ulp of the largest output over 2h. */
export function fdNoise(fd: JacobianResult, step: number): number {
  return (8 * 2 ** -23 * maxAbs(fd.outputValue)) / (2 * step);
}

/**
 * Whole networks (many units, so some kink always lies within a step of some column): JVP vs FD in
 * norm, ||J_jvp - J_fd||_F <= froTol ||J_fd||_F, and per entry for all but a small fraction.
 */
export async function expectJvpCloseToFd(
  g: Graph,
  o: { point: Point; step: number; froTol: number; entryTol: number; maxBadFraction: number; varying?: string[]; outputs?: string[] },
): Promise<{ jvp: JacobianResult; fd: JacobianResult; relFro: number; badFraction: number }> {
  const common = { varying: o.varying, outputs: o.outputs };
  const jvpEngine = await createJacobianEngine(g, { ...common, mode: 'jvp' });
  const fdEngine = await createJacobianEngine(g, { ...common, mode: 'fd', fdStep: o.step });
  try {
    const jvp = await jvpEngine.jacobian(o.point);
    const fd = await fdEngine.jacobian(o.point);
    expect([jvp.rows, jvp.cols]).toEqual([fd.rows, fd.cols]);
    expect(maxAbsDiff(jvp.outputValue, fd.outputValue)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(fd.outputValue)));
    let d2 = 0;
    let n2 = 0;
    let bad = 0;
    const bound = o.entryTol * maxAbs(fd.J) + fdNoise(fd, o.step);
    for (let i = 0; i < fd.J.length; i++) {
      const d = jvp.J[i] - fd.J[i];
      d2 += d * d;
      n2 += fd.J[i] * fd.J[i];
      if (Math.abs(d) > bound) bad++;
    }
    const relFro = Math.sqrt(d2 / n2);
    const badFraction = bad / fd.J.length;
    expect(n2).toBeGreaterThan(0);
    expect(relFro).toBeLessThanOrEqual(o.froTol);
    expect(badFraction).toBeLessThanOrEqual(o.maxBadFraction);
    return { jvp, fd, relFro, badFraction };
  } finally {
    await jvpEngine.release();
    await fdEngine.release();
  }
}

/** JVP Jacobian vs central finite differences at a random (or given) point. */
export async function expectJvpMatchesFd(g: Graph, o: CompareOptions = {}): Promise<{ jvp: JacobianResult; fd: JacobianResult }> {
  const common = { varying: o.varying, outputs: o.outputs };
  const step = o.step ?? 1e-3;
  const tol = o.tol ?? 2e-3;
  const jvpEngine = await createJacobianEngine(g, { ...common, mode: 'jvp' });
  const fdEngine = await createJacobianEngine(g, { ...common, mode: 'fd', fdStep: step });
  const fdEngine2 = await createJacobianEngine(g, { ...common, mode: 'fd', fdStep: 2 * step });
  try {
    expect(jvpEngine.mode).toBe('jvp');
    expect(fdEngine.mode).toBe('fd');
    const n = jvpEngine.primalInputs.reduce((a, s) => a + s.size, 0);
    // A point away from kinks: central differences at steps h and 2h agree there (a kink within
    // 2h of the point makes them differ). The JVP takes no part in choosing the point.
    let point: Point | undefined;
    let fd: JacobianResult | undefined;
    for (let attempt = 0; attempt < 10 && !fd; attempt++) {
      const candidate = o.point ?? rng((o.seed ?? 1) + 1000 * attempt).normals(n);
      const f1 = await fdEngine.jacobian(candidate);
      const f2 = await fdEngine2.jacobian(candidate);
      if (maxAbsDiff(f1.J, f2.J) <= (tol / 4) * maxAbs(f1.J) + 2 * fdNoise(f1, step)) {
        point = candidate;
        fd = f1;
      } else if (o.point) {
        throw new Error('the given point is within 2h of a kink: central differences at h and 2h disagree');
      }
    }
    if (!fd || !point) throw new Error('no point away from kinks found in 10 tries');
    const jvp = await jvpEngine.jacobian(point);
    expect([jvp.rows, jvp.cols]).toEqual([fd.rows, fd.cols]);
    expect(jvp.rows).toBeGreaterThan(0);
    const scale = maxAbs(fd.J);
    expect(maxAbsDiff(jvp.J, fd.J)).toBeLessThanOrEqual(tol * scale + fdNoise(fd, step));
    expect(maxAbsDiff(jvp.outputValue, fd.outputValue)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(fd.outputValue)));
    // The Jacobian is not trivially zero (a wrong rule returning zeros would pass the comparison).
    expect(maxAbs(jvp.J)).toBeGreaterThan(1e-3);
    if (o.bothShapeModes !== false) {
      const plain = await createJacobianEngine(g, { ...common, mode: 'jvp', staticShapes: false });
      try {
        const j2 = await plain.jacobian(point);
        expect(maxAbsDiff(j2.J, jvp.J)).toBeLessThanOrEqual(1e-6 * scale);
      } finally {
        await plain.release();
      }
    }
    return { jvp, fd };
  } finally {
    await jvpEngine.release();
    await fdEngine.release();
    await fdEngine2.release();
  }
}
