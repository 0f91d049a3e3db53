/**
 * Memory of a propagation, estimated before anything is allocated (issue 15: "a memory estimate
 * that matches what the run allocates"), by walking the same steps the engine runs
 * (layoutPropagation) with the factor's row count as it grows, and counting what is live at once.
 *
 * What the engine holds (src/propagate/propagator.ts, segment.ts, rules/):
 *  - every tensor from the step that makes it to its last reader (then dropped): its factor F,
 *    rows x size float32, and its mean and residual, 2 x size float64;
 *  - the input noise's factor for the whole call (kept for the next input), and with an unsketched
 *    factor (no residual at the input) the first segment's outputs too (segment.ts, `remember`);
 *  - during an affine segment: the inputs padded to one row count, with R residual rows appended
 *    when they carry a residual (new arrays), onnxruntime's working set (no memory arena, so
 *    freed after the run; the largest node's output at the outgoing row count, with a Conv's
 *    input too: onnxruntime reorders it into its blocked NCHWc layout, a copy),
 *    its outputs twice (onnxruntime's buffer and the copy onnxruntime-node hands back; the
 *    residual rows are then rescaled in place);
 *  - during a unit-wise step: the outgoing factor with K Hermite rows more, a K-row buffer and
 *    seven float64 arrays per unit; during a MaxPool: the window Gram matrices (L^2 float64 per
 *    window), the Hermite sketch (2K float64 per window), the weights and indices (20 bytes per
 *    window element) and the outgoing factor;
 *  - building the input factor: the probes (float64, probes x n) besides the factor.
 * Row counts: probes (P, none when K = 0) + k at the input; + R at each affine segment whose inputs carry a
 * residual (all but a first segment fed an unsketched factor); + K at each unit-wise or MaxPool
 * step (Softmax adds none). The peak is the largest (live + transient) over the steps.
 *
 * Calibration (docs/BENCHMARKS.md, "ImageNet scale", propagate): the estimate against the peak
 * resident memory of real runs of `analyze --method propagate`.
 */
import { attrInts } from '../onnx/graph.js';
import type { PropagationLayout } from './propagator.js';

export interface PropagationMemoryOptions {
  /** Factor columns carried (the rank). */
  rank: number;
  /** Whether the input factor is a sketch (rank below the noise's columns: a residual at the input). */
  sketched: boolean;
  /** Hermite rows per kinked op, K. */
  hermiteRows: number;
  /** Probe rows carried for the Hermite sketches, P (none when K is 0). */
  hermiteProbes: number;
  /** Residual rows per affine segment, R. */
  residualRows: number;
}

export interface PropagationMemory {
  /** Peak bytes the propagation holds at once. */
  peak: number;
  /** The step at the peak (e.g. 'affine[Conv,Add]'). */
  at: string;
  /** Factor rows at the output (probes, columns, Hermite and residual rows). */
  rows: number;
}

const F32 = 4;
const F64 = 8;

/** The peak memory of one propagation (see the file comment). */
export function propagationMemory(layout: PropagationLayout, options: PropagationMemoryOptions): PropagationMemory {
  const { sampleShape, variable, output } = layout;
  const size = (t: string) => sampleShape(t).reduce((a, d) => a * d, 1);
  const K = options.hermiteRows;
  const R = options.residualRows;
  const probes = K > 0 ? options.hermiteProbes : 0;
  const n = size(layout.input);
  const rows0 = probes + options.rank;
  const tensorBytes = (units: number, rows: number) => units * (rows * F32 + 2 * F64);

  const live = new Map<string, { bytes: number; rows: number; residual: boolean }>();
  live.set(layout.input, { bytes: tensorBytes(n, rows0), rows: rows0, residual: options.sketched });
  // the input factor stays for the next call; while it is being made, the probes too
  let held = tensorBytes(n, rows0);
  let peak = held + probes * n * F64;
  let at = 'input factor';
  const liveBytes = () => [...live.values()].reduce((a, v) => a + v.bytes, 0);
  const lastStep = new Map<string, number>();
  layout.steps.forEach((s, k) => {
    const reads = s.kind === 'affine' ? segmentInputs(s.nodes, variable) : [s.input];
    for (const t of reads) lastStep.set(t, k);
  });
  let outRows = rows0;
  layout.steps.forEach((s, k) => {
    let transient = 0;
    const made: [string, { bytes: number; rows: number; residual: boolean }][] = [];
    if (s.kind === 'affine') {
      const ins = segmentInputs(s.nodes, variable).map((t) => ({ t, units: size(t), ...live.get(t)! }));
      const rowsIn = Math.max(...ins.map((x) => x.rows));
      const residual = ins.some((x) => x.residual);
      const rowsOut = rowsIn + (residual ? R : 0);
      for (const x of ins) {
        if (x.rows < rowsIn) transient += x.units * rowsIn * F32;
        if (residual) transient += x.units * rowsOut * F32;
      }
      const produced = s.nodes.flatMap((nd) => nd.outputs).filter((t) => t && variable.has(t));
      const kept = produced.filter((t) => t === output || (layout.lastUse.get(t) ?? -1) > s.end - 1);
      const outUnits = kept.reduce((a, t) => a + size(t), 0);
      // onnxruntime's working set: per node its output at the outgoing row count, and a Conv's
      // input (copied into the blocked NCHWc layout)
      const units = (ts: string[]) => ts.filter((t) => t && variable.has(t)).reduce((a, t) => a + size(t), 0);
      const working = s.nodes.map((nd) => units(nd.outputs) + (nd.opType === 'Conv' ? units(nd.inputs) : 0));
      transient += Math.max(0, ...working) * rowsOut * F32;
      transient += 2 * outUnits * rowsOut * F32;
      for (const t of kept) made.push([t, { bytes: tensorBytes(size(t), rowsOut), rows: rowsOut, residual: false }]);
      if (k === 0 && !options.sketched) held += outUnits * rowsOut * F32; // remembered for the next call
    } else {
      const x = live.get(s.input)!;
      const units = size(s.output);
      const rowsOut = x.rows + (s.kind === 'softmax' ? 0 : K);
      transient += units * rowsOut * F32 + units * 7 * F64 + (s.kind === 'softmax' ? 0 : units * K * F32);
      if (s.kind === 'maxpool') {
        const inUnits = size(s.node.outputs[0]);
        const L = (attrInts(s.node, 'kernel_shape') ?? [1]).reduce((a, v) => a * v, 1);
        transient += inUnits * (L * L * F64 + 2 * K * F64 + L * 20);
      }
      made.push([s.output, { bytes: tensorBytes(units, rowsOut), rows: rowsOut, residual: true }]);
    }
    const now = liveBytes() + transient + (live.has(layout.input) ? 0 : held);
    if (now > peak) {
      peak = now;
      at = s.kind === 'affine' ? `affine[${s.nodes.map((nd) => nd.opType).join(',')}]` : s.kind === 'maxpool' && s.relu ? 'MaxPool+Relu' : s.node.opType;
    }
    for (const [t, v] of made) live.set(t, v);
    for (const [t, last] of lastStep) if (last === k && t !== output) live.delete(t);
    outRows = live.get(output)?.rows ?? outRows;
  });
  return { peak, at, rows: outRows };
}

/** Variable tensors a run of affine nodes reads that it does not produce (AffineSegment's inputs). */
function segmentInputs(nodes: readonly { inputs: string[]; outputs: string[] }[], variable: ReadonlySet<string>): string[] {
  const produced = new Set(nodes.flatMap((n) => n.outputs));
  return [...new Set(nodes.flatMap((n) => n.inputs).filter((x) => variable.has(x) && !produced.has(x)))];
}
