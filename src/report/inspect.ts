/** The human-readable text of `netmoments inspect` (the data: onnx/describe.ts). */
import type { InspectReport } from '../onnx/describe.js';
import type { Dim } from '../onnx/graph.js';

function fmtShape(shape: Dim[] | null): string {
  if (!shape) return '(no shape)';
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

/** Strings from the model (names, metadata) with control characters shown as '?': no terminal escapes reach the screen. */
function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function table(cells: string[][], indent = '  '): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map(
      (r) =>
        indent +
        r
          .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c])))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

/** The human-readable report. */
export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`model       ${r.file}`);
  lines.push(`producer    ${printable(r.producer) || '(not recorded)'}`);
  lines.push(`opset       ${r.opset}`);
  lines.push(`parameters  ${r.parameters.toLocaleString('en-US')}`);
  lines.push('');
  lines.push('inputs');
  lines.push(table(r.inputs.map((t) => [t.name, t.type, fmtShape(t.shape)])));
  lines.push('outputs');
  lines.push(table(r.outputs.map((t) => [t.name, t.type, fmtShape(t.shape)])));
  lines.push('ops');
  const ops = Object.entries(r.ops).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  lines.push(table(ops.map(([op, n]) => [op, String(n)])));
  const pre = Object.entries(r.metadata).filter(([k]) => k.startsWith('netmoments.'));
  if (pre.length > 0) {
    lines.push('netmoments metadata (preprocessing, provenance)');
    lines.push(table(pre.map(([k, v]) => [k, v])));
  }
  lines.push('');
  if (r.relus.length === 0) {
    lines.push('ReLU split points: none (the model has no top-level Relu, LeakyRelu, PRelu or Clip node; it cannot be split)');
  } else {
    lines.push(`ReLU split points (${r.relus.length}; split with --relu INDEX)`);
    const rows = [['index', 'node', 'op', 'tensor', 'shape', 'width p', 'linearizable']];
    for (const s of r.relus) {
      rows.push([String(s.index), s.node, s.op, s.tensor, fmtShape(s.shape), String(s.width), s.supported ? 'yes' : `no (${s.unsupportedOps.join(', ')})`]);
    }
    lines.push(table(rows));
  }
  if (r.propagate) {
    const p = r.propagate;
    const counts = new Map<string, number>();
    for (const f of p.fused) counts.set(f, (counts.get(f) ?? 0) + 1);
    const fused = [...counts].map(([f, n]) => (n > 1 ? `${n} x ${f}` : f)).join(', ');
    lines.push('');
    lines.push(
      p.reason
        ? `moments through every layer (--method propagate): not judged here: ${p.reason} (analyze fixes all but one with --noise-input and --feed)`
        : p.supported
          ? `moments through every layer (--method propagate): every op on the path to the first output has a moment rule${fused ? ` (fused unit-wise: ${fused})` : ''}`
          : `moments through every layer (--method propagate): no moment rule for ${p.missing.join(', ')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
