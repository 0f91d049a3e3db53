/** CSV text (RFC 4180 quoting) for every CSV the tool writes. */

export type CsvCell = string | number | boolean | null | undefined;

/** One cell: numbers at full precision (non-finite: empty), strings quoted when they hold , " or a newline. */
export function csvCell(v: CsvCell): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV text from a header and rows, one line each, ending in a newline. */
export function csv(header: readonly string[], rows: Iterable<readonly CsvCell[]>): string {
  const lines = [header.map(csvCell).join(',')];
  for (const r of rows) lines.push(r.map(csvCell).join(','));
  return `${lines.join('\n')}\n`;
}
