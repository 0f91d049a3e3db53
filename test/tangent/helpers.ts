/** Shared by the tangent and Jacobian tests: tiny in-memory models, seeded randoms, JVP-vs-FD checks. */
import { expect } from 'vitest';
import { Graph, graphFromModelProto } from '../../src/onnx/graph.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, onnx, type NodeProto, type TensorProto } from '../../src/onnx/proto.js';
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
  return floatInit(
    name,
    dims,
    r.normals(
      dims.reduce((a, d) => a * d, 1),
      scale,
    ),
  );
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
 * Whole networks, where some kink always lies within a step of some column and float32 rounding
 * limits small steps. Central differences are computed at steps h0, h0/2, h0/4, ... For each
 * column, the FD estimate is taken at the largest step h where FD(h) and FD(h/2) agree within
 * their rounding noise (no kink crossed within h: along one input coordinate a PL network is PL,
 * and central differences are exact between kinks). Columns where no step is self-consistent are
 * unverifiable (a kink too close to the point). The JVP takes no part in these choices. Then:
 * at least `minVerifiable` of the columns are verifiable, and on every verifiable column
 * |J_jvp - J_fd| <= tol * max |J| + 3 * noise(h) entry by entry.
 */
export async function expectJvpCloseToFd(
  g: Graph,
  o: {
    point: Point;
    /** Largest step (default 0.05 * max(1, rms(point))). */
    step?: number;
    /** Number of halvings (default 12). */
    levels?: number;
    tol?: number;
    minVerifiable?: number;
    varying?: string[];
    outputs?: string[];
    maxColumns?: number;
    seed?: number;
  },
): Promise<{ jvp: JacobianResult; verifiable: number; worst: number }> {
  const common = { varying: o.varying, outputs: o.outputs };
  const values = isArrayLike(o.point) ? Array.from(o.point) : Object.values(o.point).flatMap((v) => Array.from(v));
  const rms = Math.sqrt(values.reduce((a, v) => a + v * v, 0) / Math.max(1, values.length));
  const h0 = o.step ?? 0.05 * Math.max(1, rms);
  const steps = Array.from({ length: (o.levels ?? 12) + 1 }, (_, i) => h0 / 2 ** i);
  const tol = o.tol ?? 1e-3;
  const jvpEngine = await createJacobianEngine(g, { ...common, mode: 'jvp' });
  try {
    const n = jvpEngine.inputSize;
    let columns: Int32Array | undefined;
    if (o.maxColumns !== undefined && n > o.maxColumns) {
      const r = rng(o.seed ?? 99);
      const all = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(r.uniform() * (i + 1));
        [all[i], all[j]] = [all[j], all[i]];
      }
      columns = Int32Array.from(all.slice(0, o.maxColumns).sort((a, b) => a - b));
    }
    const jvp = await jvpEngine.jacobian(o.point, { columns });
    const { rows, cols } = jvp;
    const fds: JacobianResult[] = [];
    for (const step of steps) {
      const e = await createJacobianEngine(g, { ...common, mode: 'fd', fdStep: step });
      try {
        fds.push(await e.jacobian(o.point, { columns }));
      } finally {
        await e.release();
      }
    }
    expect(maxAbsDiff(jvp.outputValue, fds[0].outputValue)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(fds[0].outputValue)));
    const scale = maxAbs(jvp.J);
    expect(scale).toBeGreaterThan(0);
    const noise = steps.map((h) => fdNoise(fds[0], h));
    let verifiable = 0;
    let worst = 0;
    for (let c = 0; c < cols; c++) {
      let level = -1;
      for (let i = 0; i + 1 < steps.length && level < 0; i++) {
        let ok = true;
        for (let r = 0; r < rows && ok; r++) {
          ok = Math.abs(fds[i].J[r * cols + c] - fds[i + 1].J[r * cols + c]) <= 2 * (noise[i] + noise[i + 1]) + tol * scale;
        }
        if (ok) level = i;
      }
      if (level < 0) continue;
      verifiable++;
      for (let r = 0; r < rows; r++) {
        const excess = Math.abs(jvp.J[r * cols + c] - fds[level].J[r * cols + c]) / (tol * scale + 3 * noise[level]);
        if (process.env.NM_DEBUG && excess > 1) {
          console.log(
            'DBG col',
            c,
            'row',
            r,
            'level',
            level,
            'jvp',
            jvp.J[r * cols + c],
            'fd',
            fds.map((f) => f.J[r * cols + c].toExponential(3)).join(' '),
            'noise',
            noise[level],
            'scale',
            scale,
          );
        }
        worst = Math.max(worst, excess);
      }
    }
    expect(verifiable / cols).toBeGreaterThanOrEqual(o.minVerifiable ?? 0.7);
    // worst: the largest |J_jvp - J_fd| in units of its allowance (<= 1 passes).
    expect(worst).toBeLessThanOrEqual(1);
    return { jvp, verifiable: verifiable / cols, worst };
  } finally {
    await jvpEngine.release();
  }
}

function isArrayLike(p: Point): p is ArrayLike<number> {
  return typeof (p as ArrayLike<number>).length === 'number';
}

/** ||a - b||_F / ||b||_F. */
export function relFroDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d2 = 0;
  let n2 = 0;
  for (let i = 0; i < b.length; i++) {
    d2 += (a[i] - b[i]) ** 2;
    n2 += b[i] ** 2;
  }
  return n2 > 0 ? Math.sqrt(d2 / n2) : Math.sqrt(d2);
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
