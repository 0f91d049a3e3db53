/**
 * Max-pool windows of a MaxPool node, for counting windows whose winner may change under noise.
 * Window geometry follows the ONNX MaxPool spec (kernel_shape, strides, pads, dilations,
 * ceil_mode, auto_pad) for 2-D pooling over [C, H, W]. The winner of a window is its first
 * maximal element in row-major order, the convention of onnxruntime's Indices output, PyTorch,
 * and the tangent rule.
 */
import { attrInt, attrInts, attrString, type GraphNode } from '../graph.js';

export interface PoolWindows {
  /** windows x kernel flat input indices (per sample), -1 where the window overhangs padding. */
  members: Int32Array;
  windows: number;
  kernel: number;
}

/** Windows of a 2-D MaxPool over an input of per-sample dims [C, H, W]; undefined for other ranks. */
export function maxPoolWindows(node: GraphNode, dims: readonly number[]): PoolWindows | undefined {
  if (dims.length !== 3) return undefined;
  const [C, H, W] = dims;
  const k = attrInts(node, 'kernel_shape');
  if (!k || k.length !== 2) return undefined;
  const s = attrInts(node, 'strides') ?? [1, 1];
  const d = attrInts(node, 'dilations') ?? [1, 1];
  let pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
  const ceil = attrInt(node, 'ceil_mode', 0) === 1;
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  const extent = [d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1];
  let outH: number;
  let outW: number;
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    outH = Math.ceil(H / s[0]);
    outW = Math.ceil(W / s[1]);
    const ph = Math.max(0, (outH - 1) * s[0] + extent[0] - H);
    const pw = Math.max(0, (outW - 1) * s[1] + extent[1] - W);
    const lowH = autoPad === 'SAME_UPPER' ? Math.floor(ph / 2) : Math.ceil(ph / 2);
    const lowW = autoPad === 'SAME_UPPER' ? Math.floor(pw / 2) : Math.ceil(pw / 2);
    pads = [lowH, lowW, ph - lowH, pw - lowW];
  } else {
    if (autoPad === 'VALID') pads = [0, 0, 0, 0];
    const round = ceil ? Math.ceil : Math.floor;
    outH = round((H + pads[0] + pads[2] - extent[0]) / s[0]) + 1;
    outW = round((W + pads[1] + pads[3] - extent[1]) / s[1]) + 1;
    // ceil_mode: the last window must start inside the input or the left padding
    if (ceil && (outH - 1) * s[0] >= H + pads[0]) outH--;
    if (ceil && (outW - 1) * s[1] >= W + pads[1]) outW--;
  }
  const kernel = k[0] * k[1];
  const windows = C * outH * outW;
  const members = new Int32Array(windows * kernel).fill(-1);
  let w = 0;
  for (let c = 0; c < C; c++) {
    for (let oh = 0; oh < outH; oh++) {
      for (let ow = 0; ow < outW; ow++, w++) {
        let m = 0;
        for (let i = 0; i < k[0]; i++) {
          const h = oh * s[0] - pads[0] + i * d[0];
          for (let j = 0; j < k[1]; j++, m++) {
            const x = ow * s[1] - pads[1] + j * d[1];
            if (h >= 0 && h < H && x >= 0 && x < W) members[w * kernel + m] = c * H * W + h * W + x;
          }
        }
      }
    }
  }
  return { members, windows, kernel };
}
