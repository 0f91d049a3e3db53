/**
 * Worker thread of the pair-term pool in network.ts: evaluates a row range of a pair panel held in
 * a SharedArrayBuffer (pairPanelRows) and answers with the request id. Units (s, a, diag) arrive once
 * per fold, keyed by fold so concurrent folds do not mix.
 */
import { parentPort } from 'node:worker_threads';
import { pairPanelRows } from './network.js';

const folds = new Map<number, { s: Float64Array; a: Float64Array; diag: Float64Array }>();

interface RowsMessage {
  type: 'rows';
  id: number;
  fold: number;
  panel: Float64Array;
  rows: number;
  width: number;
  r0: number;
  paper: boolean;
  rowStart: number;
  rowEnd: number;
}
interface UnitsMessage {
  type: 'units';
  fold: number;
  s: Float64Array;
  a: Float64Array;
  diag: Float64Array;
}
interface DropMessage {
  type: 'drop';
  fold: number;
}

parentPort?.on('message', (msg: RowsMessage | UnitsMessage | DropMessage) => {
  if (msg.type === 'units') {
    folds.set(msg.fold, { s: msg.s, a: msg.a, diag: msg.diag });
    return;
  }
  if (msg.type === 'drop') {
    folds.delete(msg.fold);
    return;
  }
  try {
    const u = folds.get(msg.fold);
    if (!u) throw new Error(`no units for fold ${msg.fold}`);
    pairPanelRows(msg.panel, msg.rows, msg.width, msg.r0, u.s, u.a, u.diag, msg.paper, msg.rowStart, msg.rowEnd);
    parentPort?.postMessage({ id: msg.id });
  } catch (e) {
    parentPort?.postMessage({ id: msg.id, error: e instanceof Error ? e.message : String(e) });
  }
});
