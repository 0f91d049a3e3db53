/**
 * Memory of a propagation, estimated before anything is allocated (issue 15: "a memory estimate
 * that matches what the run allocates"), by walking the same steps the engine runs
 * (layoutPropagation) with the factor's row count as it grows and following every large array the
 * engine (src/propagate/propagator.ts, segment.ts, rules/) makes: from the step that allocates it
 * to the V8 collection after which it is gone. Each term is an array the run holds; checked step by
 * step against the peak resident memory of real runs (docs/BENCHMARKS.md, "Memory estimate of
 * propagate, step by step").
 *
 * What is held (F: rows x units float32, a factor; m and r: 2 x units float64 beside it):
 *  - the input noise's factor, for the whole call (kept for the next input); with an unsketched
 *    factor (no residual at the input) also the first segment's outputs (segment.ts, `remember`),
 *    and a MaxPool's window Grams on them;
 *  - every tensor's (F, m, r) from the step that makes it to its last reader. A rule's output that
 *    an affine segment reads is made with room for the R residual rows (rules/factor.ts newFactor):
 *    that room is untouched, so not resident, until the residual rows are written into it;
 *  - what the engine's locals point to during a step: V8 keeps a local of a suspended async
 *    function alive until the same variable is assigned again, so the engine runs each step in its
 *    own function (a unit-wise step's input, an affine step's padded inputs, their copies with
 *    residual rows and its outputs die when the step returns; before, as locals of the `moments`
 *    loop, they lived until the next step of their kind);
 *  - garbage: an array nothing points to any more is freed at the next V8 collection: the engine
 *    asks for one after a step that dropped COLLECT_BYTES or more (propagator.ts), and V8 makes one
 *    itself when the next step allocates its first large array; so it is counted to the end of the
 *    step in which it became garbage (ResNet-18, rank 512: the first segment's copy of the input
 *    with residual rows is still resident while the third step runs);
 *  - with `reverse` (the output covariance by reverse passes, src/propagate/adjoint.ts): what each
 *    rule records for it, to the end of the forward pass (a unit-wise step: slopes and residual,
 *    2 float64 per unit, and a copy of its K Hermite rows, or the Kt > K it sketched for the
 *    record (rules/factor.ts carryHermiteRows); a MaxPool: the same per output unit and
 *    the window weights and indices, 12 bytes per window element; a Softmax: its D x D expected
 *    Jacobians); then the reverse pass: u cotangent rows (u output units) at a step's inputs and
 *    outputs, as float64 (with an affine-only copy at a rule's output) and as float32 on their way
 *    through onnxruntime (about 20 bytes per row and unit), and the u x u result.
 * Transient, during one step:
 *  - an affine segment: the inputs padded to one row count (new arrays), the residual rows (written
 *    into the room a rule left, else a copy of the input with rows + R rows), and onnxruntime's run
 *    (no memory arena, so freed after it): the larger of its working set, walked node by node
 *    (each node's output, held until its last reader in the segment, and a copy of a Conv's
 *    inputs, reordered into the blocked NCHWc layout), and twice the outputs (onnxruntime's
 *    buffers and the copies onnxruntime-node hands back; see segmentWorkingSet);
 *  - a unit-wise step: the outgoing factor with K Hermite rows more, a K-row buffer (two Hermite
 *    orders) and ten float64 arrays per unit; a MaxPool: the window Gram matrices (L^2 float64 per
 *    window), the list of (row, window) pairs holding a nonzero (an int32 per pair, all pairs of a
 *    dense factor) with its bitset, the window weights and indices (20 bytes per window element)
 *    and the Hermite targets;
 *  - building the input factor: the probes (float64, probes x n).
 * Row counts: probes (P, none when K = 0) + k at the input; + R at each affine segment whose inputs
 * carry a residual (all but a first segment fed an unsketched factor); + K at each unit-wise or
 * MaxPool step (Softmax adds none). The peak is the largest (held + transient) over the steps.
 */
import { attrInts } from '../onnx/graph.js';
import { tapeHermiteColumns } from './rules/factor.js';
import { MAX_LOG_SOFTMAX_ROWS } from './rules/softmax.js';
import type { PropagationLayout } from './propagator.js';
import { keepsArena, segmentUnits } from './segment.js';

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
  /**
   * The output covariance by reverse passes with `rows` cotangent rows (the output units it
   * covers), each kinked op recording `hermiteColumns` Hermite columns (default K; see
   * PropagatorOptions.reverseHermiteColumns).
   */
  reverse?: { rows: number; hermiteColumns?: number };
}

export interface PropagationMemory {
  /** Peak bytes the propagation holds at once. */
  peak: number;
  /** The step at the peak (e.g. 'affine[Conv,Add]'). */
  at: string;
  /** Factor rows at the output (probes, columns, Hermite and residual rows). */
  rows: number;
  /** Per step: its label and the most bytes held at once while it runs (the peak is the largest). */
  steps: { label: string; bytes: number }[];
}

const F32 = 4;
const F64 = 8;

/** Bytes freed by one step above which the engine asks V8 for a collection (propagator.ts COLLECT_BYTES). */
export const COLLECT_BYTES = 256 * 2 ** 20;

/** The peak memory of one propagation (see the file comment). */
export function propagationMemory(layout: PropagationLayout, options: PropagationMemoryOptions): PropagationMemory {
  const { sampleShape, variable, output } = layout;
  const size = (t: string) => sampleShape(t).reduce((a, d) => a * d, 1);
  const K = options.hermiteRows;
  const R = options.residualRows;
  const probes = K > 0 ? options.hermiteProbes : 0;
  const n = size(layout.input);
  const rows0 = probes + options.rank;

  // every array allocated and not yet collected (key: a tensor's name for its (F, m, r), else a
  // name of its own), and what points to them: the engine's state, the input cache, its locals
  const arrays = new Map<string, number>();
  interface Tensor {
    rows: number;
    residual: boolean;
    /** Made by a rule with room for the residual rows (newFactor). */
    room: boolean;
  }
  const state = new Map<string, Tensor>();
  const kept = new Set<string>(); // held for the whole call
  const locals = { ins: [] as string[], withRows: [] as string[], outs: [] as string[], x: [] as string[] };
  const factorBytes = (units: number, rows: number) => units * rows * F32;
  const held = () => [...arrays.values()].reduce((a, b) => a + b, 0);
  const collect = () => {
    const live = new Set([...state.keys(), ...kept, ...locals.ins, ...locals.withRows, ...locals.outs, ...locals.x]);
    for (const key of [...arrays.keys()]) if (!live.has(key)) arrays.delete(key);
  };

  arrays.set(layout.input, factorBytes(n, rows0) + 2 * n * F64);
  state.set(layout.input, { rows: rows0, residual: options.sketched, room: false });
  kept.add(layout.input);
  let peak = held() + probes * n * F64 + n * F64;
  let at = 'input factor';

  const lastStep = new Map<string, number>();
  layout.steps.forEach((s, k) => {
    const reads = s.kind === 'affine' ? segmentInputs(s.nodes, variable) : [s.input];
    for (const t of reads) lastStep.set(t, k);
  });
  const readByAffine = new Set(layout.steps.flatMap((s) => (s.kind === 'affine' ? segmentInputs(s.nodes, variable) : [])));
  let outRows = rows0;
  const perStep: { label: string; bytes: number }[] = [];
  layout.steps.forEach((s, k) => {
    let top = 0; // the most held at once during the step
    let freed = 0; // what the engine counts as dropped (its V8 collection threshold)
    const label = s.kind === 'affine' ? `affine[${s.nodes.map((nd) => nd.opType).join(',')}]` : s.kind === 'maxpool' && s.relu ? 'MaxPool+Relu' : s.node.opType;
    // V8 collects on its own when a large array is allocated: what was garbage before the step is
    // gone by its first allocation (what its locals still point to is not garbage yet)
    collect();
    if (s.kind === 'affine') {
      const names = segmentInputs(s.nodes, variable);
      const ins = names.map((t) => ({ t, units: size(t), ...state.get(t)! }));
      const rowsIn = Math.max(...ins.map((x) => x.rows));
      const residual = ins.some((x) => x.residual);
      const rowsOut = rowsIn + (residual && R > 0 ? R : 0);
      // padRows: a new array for an input with fewer rows
      locals.ins = ins.map((x) => {
        if (x.rows === rowsIn) return x.t;
        arrays.set(`pad:${k}:${x.t}`, factorBytes(x.units, rowsIn));
        return `pad:${k}:${x.t}`;
      });
      // appendResidualRows: into a rule's room (its pages now written), else a copy with R rows more
      if (rowsOut > rowsIn) {
        locals.withRows = ins.map((x) => {
          if (x.room && x.rows === rowsIn) {
            arrays.set(x.t, arrays.get(x.t)! + factorBytes(x.units, R));
            return x.t;
          }
          arrays.set(`with:${k}:${x.t}`, factorBytes(x.units, rowsOut));
          return `with:${k}:${x.t}`;
        });
        for (const x of ins) freed += factorBytes(x.units, rowsOut);
      } else locals.withRows = locals.ins;
      // onnxruntime's run
      const produced = s.nodes.flatMap((nd) => nd.outputs).filter((t) => t && variable.has(t));
      const outs = produced.filter((t) => t === output || (layout.lastUse.get(t) ?? -1) > s.end - 1);
      const outUnits = outs.reduce((a, t) => a + size(t), 0);
      const working = Math.max(2 * outUnits, segmentWorkingSet(s.nodes, variable, new Set(outs), size));
      top = held() + working * rowsOut * F32;
      locals.outs = outs;
      for (const t of outs) {
        arrays.set(t, factorBytes(size(t), rowsOut) + 2 * size(t) * F64);
        state.set(t, { rows: rowsOut, residual: false, room: false });
      }
      // a small segment's session keeps its arena, at the run's peak, for the whole call
      if (keepsArena(k, segmentUnits(s.nodes, variable, size), rows0, Math.max(K, R))) {
        arrays.set(`arena:${k}`, working * rowsOut * F32);
        kept.add(`arena:${k}`);
      }
      // the first segment fed an unsketched factor is remembered for the next call
      if (k === 0 && !residual) for (const t of outs) kept.add(t);
    } else {
      const x = state.get(s.input)!;
      locals.x = [s.input];
      const units = size(s.output);
      // a LogSoftmax adds a row per slice, up to MAX_LOG_SOFTMAX_ROWS (rules/softmax.ts)
      const hermite = s.kind === 'softmax' ? (s.node.opType === 'LogSoftmax' ? Math.min(MAX_LOG_SOFTMAX_ROWS, units) : 0) : K;
      // the Hermite columns sketched: more than K when the reverse pass records more (rules/factor.ts tapeHermiteColumns)
      const sketched = s.kind === 'softmax' ? 0 : tapeHermiteColumns(K, probes, options.reverse?.hermiteColumns);
      const rowsOut = x.rows + hermite;
      // the second order's buffer and the per-unit arrays: garbage after the step
      arrays.set(`tmp:${k}`, sketched * units * F32 + 11 * units * F64);
      if (s.kind === 'maxpool') {
        // per window (units: the pool's outputs) of L elements: Grams, weights and indices, Hermite
        // targets; per covariance row and window a nonzero's entry and bit
        const L = (attrInts(s.node, 'kernel_shape') ?? [1]).reduce((a, v) => a * v, 1);
        const grams = units * L * L * F64 + units * (x.rows - probes) * (F32 + 1 / 8);
        arrays.set(`tmp:${k}`, arrays.get(`tmp:${k}`)! + units * (L * 20 + 2 * F64));
        // the Grams are cached with the factor they came from: for the whole call on a remembered one
        arrays.set(`gram:${k}`, grams);
        if (kept.has(s.input)) kept.add(`gram:${k}`);
      }
      arrays.set(s.output, factorBytes(units, rowsOut) + 2 * units * F64);
      state.set(s.output, { rows: rowsOut, residual: true, room: readByAffine.has(s.output) && R > 0 });
      if (options.reverse) {
        // what the rule records for the reverse pass (see the header)
        let tape = 2 * units * F64 + sketched * units * F32;
        if (s.kind === 'maxpool') tape += size(s.input) * 12;
        if (s.kind === 'softmax') tape = 2 * units * F64 + units * units * F64; // at most: one slice of all units
        arrays.set(`tape:${k}`, tape);
        kept.add(`tape:${k}`);
      }
      top = held();
    }
    for (const [t, last] of lastStep) {
      if (last !== k || t === output || !state.has(t)) continue;
      freed += factorBytes(size(t), state.get(t)!.rows);
      state.delete(t);
    }
    // the engine runs each step in its own function: its locals die when the step returns
    locals.ins = [];
    locals.withRows = [];
    locals.outs = [];
    locals.x = [];
    if (freed >= COLLECT_BYTES) collect();
    perStep.push({ label, bytes: top });
    if (top > peak) {
      peak = top;
      at = label;
    }
    outRows = state.get(output)?.rows ?? outRows;
  });
  if (options.reverse && options.reverse.rows > 0) {
    collect();
    const u = options.reverse.rows;
    // the widest step: its inputs' and outputs' cotangent rows at about 20 bytes per row and unit
    // (float64 rows and the affine-only copy, the float32 rows fed to onnxruntime and those it
    // returns, widened again); ResNet-18, 16 rows: the reverse pass and its sessions added 0.25 GiB
    // to the resident memory the forward pass left (below the forward pass's own peak)
    let widest = 0;
    for (const st of layout.steps) widest = Math.max(widest, st.kind === 'affine' ? segmentUnits(st.nodes, variable, size) : size(st.input) + size(st.output));
    const top = held() + u * widest * 20 + 2 * u * u * F64;
    perStep.push({ label: 'reverse pass', bytes: top });
    if (top > peak) {
      peak = top;
      at = 'reverse pass';
    }
  }
  return { peak, at, rows: outRows, steps: perStep };
}

/**
 * The most elements (per factor row) onnxruntime holds at once while it runs a segment, walked in
 * node order: each node's variable outputs from the node to their last reader in the segment (the
 * segment's outputs, `outs`, to the end), and a copy of each Conv's variable inputs reordered into
 * the blocked NCHWc layout, all but those a Conv of the segment made (already in that layout): of
 * the segment's inputs made before the first node, of a tensor made inside (a Concat's output) just
 * before the Conv; each held until that Conv has run. Measured on segments alone (`node
 * bench/propagate-memory.mjs --segment MODEL --step K --rows N`, the growth of the peak over the
 * run in outputs' sizes): ResNet-18's [Conv] 1.93-2.00, [Conv,Add] 2.00, [Conv,Conv,Add] 4.00,
 * SqueezeNet 1.1's [Concat] 2.00 and [Concat,Conv] 16.0 (the larger of this walk and 2: 2, 2, 4, 2, 17),
 * MobileNetV2's [Conv,Conv] and [Conv,Add,Conv] 2.00 (2 and 2).
 */
export function segmentWorkingSet(
  nodes: readonly { opType: string; inputs: string[]; outputs: string[] }[],
  variable: ReadonlySet<string>,
  outs: ReadonlySet<string>,
  size: (t: string) => number,
): number {
  const produced = new Set(nodes.flatMap((nd) => nd.outputs));
  const byConv = new Set(nodes.filter((nd) => nd.opType === 'Conv').flatMap((nd) => nd.outputs));
  const last = new Map<string, number>();
  nodes.forEach((nd, i) => nd.inputs.forEach((x) => x && last.set(x, i)));
  const reordered = (nd: { opType: string; inputs: string[] }, inside: boolean) =>
    nd.opType !== 'Conv' ? 0 : nd.inputs.filter((x) => x && variable.has(x) && !byConv.has(x) && produced.has(x) === inside).reduce((a, x) => a + size(x), 0);
  const copies = new Map<number, number>(); // node index -> the reordered inputs it frees
  nodes.forEach((nd, i) => copies.set(i, reordered(nd, false)));
  const alive = new Map<string, number>();
  const sum = (m: Map<unknown, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  let top = sum(copies);
  nodes.forEach((nd, i) => {
    copies.set(i, copies.get(i)! + reordered(nd, true));
    for (const t of nd.outputs) if (t && variable.has(t)) alive.set(t, size(t));
    top = Math.max(top, sum(alive) + sum(copies));
    copies.delete(i);
    for (const [t] of alive) if (!outs.has(t) && (last.get(t) ?? -1) <= i) alive.delete(t);
  });
  return top;
}

/** Variable tensors a run of affine nodes reads that it does not produce (AffineSegment's inputs). */
function segmentInputs(nodes: readonly { inputs: string[]; outputs: string[] }[], variable: ReadonlySet<string>): string[] {
  const produced = new Set(nodes.flatMap((n) => n.outputs));
  return [...new Set(nodes.flatMap((n) => n.inputs).filter((x) => variable.has(x) && !produced.has(x)))];
}
