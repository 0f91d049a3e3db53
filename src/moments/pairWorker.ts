/**
 * Worker thread of the pair-term pool in network.ts: evaluates a row range of a pair panel held in
 * a SharedArrayBuffer (pairPanelRows) and answers with the request id. Units (s, a, diag) arrive once
 * per fold.
 */
import { parentPort } from 'node:worker_threads';
import { pairPanelRows } from './network.js';

let s: Float64Array = new Float64Array(0);
let a: Float64Array = new Float64Array(0);
let diag: Float64Array = new Float64Array(0);

interface RowsMessage {
  type: 'rows';
  id: number;
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
  s: Float64Array;
  a: Float64Array;
  diag: Float64Array;
}

parentPort?.on('message', (msg: RowsMessage | UnitsMessage) => {
  if (msg.type === 'units') {
    s = msg.s;
    a = msg.a;
    diag = msg.diag;
    return;
  }
  try {
    pairPanelRows(msg.panel, msg.rows, msg.width, msg.r0, s, a, diag, msg.paper, msg.rowStart, msg.rowEnd);
    parentPort?.postMessage({ id: msg.id });
  } catch (e) {
    parentPort?.postMessage({ id: msg.id, error: e instanceof Error ? e.message : String(e) });
  }
});
