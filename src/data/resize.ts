/**
 * Resizing an image to the model's input size, one axis at a time (separable), in float64:
 *
 *   out[i][j][c] = sum_k sum_l Wrows[i][k] Wcols[j][l] in[k][l][c]
 *
 * where each axis's weights depend only on that axis's input size `from` and output size `to`:
 *   - enlarging (to >= from): bilinear with half-pixel centres (OpenCV INTER_LINEAR, PyTorch
 *     interpolate(mode='bilinear', align_corners=False)): output o samples the source at
 *     s = (o + 0.5) * from / to - 0.5, clamped to [0, from - 1]; it takes (1 - t) of pixel
 *     floor(s) and t of pixel floor(s) + 1, t = s - floor(s). At to = from this is the identity.
 *   - shrinking (to < from): area averaging, the antialiased box filter (OpenCV INTER_AREA, PIL's
 *     BOX): output o covers the source interval [o f, (o + 1) f), f = from / to, and pixel k
 *     weighs |[k, k + 1) intersected with that interval| / f. Every source pixel contributes, so
 *     shrinking never aliases (plain bilinear would skip pixels).
 * The image is stretched to the new size (no crop, the aspect ratio is not kept).
 */

/** One output position's source pixels and their weights (summing to 1). */
interface Tap {
  index: number[];
  weight: number[];
}

/** The weights of one axis resized from `from` to `to` pixels (module comment). */
export function axisWeights(from: number, to: number): Tap[] {
  if (!(from >= 1 && to >= 1)) throw new RangeError(`axisWeights: sizes must be >= 1, got ${from} -> ${to}`);
  const taps: Tap[] = [];
  if (to >= from) {
    const ratio = from / to;
    for (let o = 0; o < to; o++) {
      const s = Math.min(Math.max((o + 0.5) * ratio - 0.5, 0), from - 1);
      const k = Math.floor(s);
      const t = s - k;
      taps.push(k + 1 < from && t > 0 ? { index: [k, k + 1], weight: [1 - t, t] } : { index: [k], weight: [1] });
    }
    return taps;
  }
  const f = from / to;
  for (let o = 0; o < to; o++) {
    const lo = o * f;
    const hi = (o + 1) * f;
    const tap: Tap = { index: [], weight: [] };
    for (let k = Math.floor(lo); k < Math.min(Math.ceil(hi), from); k++) {
      const overlap = Math.min(k + 1, hi) - Math.max(k, lo);
      if (overlap > 0) {
        tap.index.push(k);
        tap.weight.push(overlap / f);
      }
    }
    taps.push(tap);
  }
  return taps;
}

/**
 * Resize an interleaved image (rows x columns x channels, row-major) from height x width to
 * toHeight x toWidth (module comment), columns first then rows.
 */
export function resizeInterleaved(x: ArrayLike<number>, height: number, width: number, channels: number, toHeight: number, toWidth: number): Float64Array {
  const cols = axisWeights(width, toWidth);
  const rows = axisWeights(height, toHeight);
  const mid = new Float64Array(height * toWidth * channels);
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < toWidth; j++) {
      const { index, weight } = cols[j];
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let t = 0; t < index.length; t++) s += weight[t] * x[(i * width + index[t]) * channels + c];
        mid[(i * toWidth + j) * channels + c] = s;
      }
    }
  }
  const out = new Float64Array(toHeight * toWidth * channels);
  for (let i = 0; i < toHeight; i++) {
    const { index, weight } = rows[i];
    for (let j = 0; j < toWidth; j++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let t = 0; t < index.length; t++) s += weight[t] * mid[(index[t] * toWidth + j) * channels + c];
        out[(i * toWidth + j) * channels + c] = s;
      }
    }
  }
  return out;
}
