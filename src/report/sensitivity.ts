/**
 * The files of `netmoments sensitivity`: sensitivity.json (netmoments.sensitivity/1), the raw
 * per-image maps and the per-class averages as .npy, the per-class average maps as PNG heat maps
 * (each window's value on its centre pixels, over the class's mean input in grey, with pixel axes
 * and a colour bar), the first inputs beside their own P(flip) maps; and the summary line.
 */
import { imageGeometry, pixelIndex, type ImageGeometry } from '../data/layout.js';
import { encodeNpy } from '../data/npy.js';
import type { Preprocessing } from '../data/preprocess.js';
import { sig, toJson } from '../experiments/cli.js';
import { toPixels } from '../experiments/common.js';
import { classAverages, type SensitivityImage, type SensitivityResult } from '../experiments/sensitivity.js';
import { argmax } from '../util/argmax.js';
import { heatmapPng, windowGrid, type HeatPanel } from './heatmap.js';

/** What the report says about the run besides the result. */
export interface SensitivityRunInfo {
  /** The model file and its SHA-256. */
  model: { file: string; sha256: string };
  data: string;
  /** The data has labels: the maps are grouped by label, else by the clean class. */
  labelled: boolean;
  sigma: number;
  windowSize: number;
  stride: number;
  seed: number;
  probabilityPoints: number;
  version: string;
  /** The input preprocessing, when known: the inputs under the maps are drawn as pixels (grayImage). */
  display?: Preprocessing;
}

/** Maps of equal length stacked into one float32 array (for .npy). */
function stack(maps: Float64Array[]): Float32Array {
  const P = maps[0]?.length ?? 0;
  const out = new Float32Array(maps.length * P);
  maps.forEach((m, i) => out.set(m, i * P));
  return out;
}

/** The arithmetic mean (NaN for no values). */
function mean(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return v.length > 0 ? s / v.length : Number.NaN;
}

/** One image's line in the report: its averages and its most sensitive window (the first of the largest P(flip)). */
function imageSummary(im: SensitivityImage, cols: number, stride: number) {
  const best = argmax(im.flipProbability);
  return {
    input: im.index,
    label: im.label,
    cleanClass: im.cleanClass,
    foolingRateMean: mean(im.foolingMean),
    meanFlipProbability: mean(im.flipProbability),
    mostSensitiveWindow: {
      row: Math.floor(best / cols) * stride,
      col: (best % cols) * stride,
      flipProbability: im.flipProbability[best],
      meanMargin: im.meanMargin[best],
    },
    sampledWindows: im.sampledWindows,
  };
}

/** Inputs shown beside their own maps in inputs-flip-probability.png. */
export const SHOWN_INPUTS = 6;

/**
 * An input in grey for the picture, 0 (black) to 1 (white). With the input preprocessing known
 * (`display`), each value is first taken back to x = pixel/255 per channel (toPixels: x = ((v -
 * offset) / scale) * std[c] + mean[c]) and the channels averaged; without it the channels are
 * averaged in model units and scaled to 0..1 by the image's own min and max.
 */
export function grayImage(x: ArrayLike<number>, g: ImageGeometry, display?: Preprocessing): Float64Array {
  const v = display ? toPixels(x, display, g) : x;
  const out = new Float64Array(g.height * g.width);
  for (let r = 0; r < g.height; r++)
    for (let c = 0; c < g.width; c++) {
      let s = 0;
      for (let ch = 0; ch < g.channels; ch++) s += v[pixelIndex(g, ch, r, c)];
      out[r * g.width + c] = s / g.channels;
    }
  if (display) {
    for (let i = 0; i < out.length; i++) out[i] /= 255;
    return out;
  }
  let lo = Infinity,
    hi = -Infinity;
  for (const t of out) {
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
  }
  for (let i = 0; i < out.length; i++) out[i] = hi > lo ? (out[i] - lo) / (hi - lo) : 0.5;
  return out;
}

/**
 * Every file of a sensitivity run (name -> content, sensitivity.json last) and the report it holds.
 * `inputs[k]` is the input of result.images[k] (model units): with it the maps are drawn over the
 * inputs (per class, over the class's mean input) and the first inputs are shown beside their maps.
 */
export function sensitivityFiles(result: SensitivityResult, info: SensitivityRunInfo, inputs?: ArrayLike<number>[]) {
  const { rows, cols } = result;
  const { windowSize: w, stride, sigma } = info;
  const d = result.output.size;
  const classes = classAverages(result, d);
  const N = result.images.length;
  const shape = [N, rows, cols];
  const grouped = info.labelled ? 'label' : 'clean class';
  const geometry = imageGeometry(result.inputShape, result.layout);
  const pixels = geometry ? windowGrid(geometry.height, geometry.width, w, stride) : undefined;
  const n = result.inputShape.reduce((a, b) => a * b, 1);
  // the mean input of each class (grouped as the maps are), drawn under the class's map
  const classMeans = classes.map(() => new Float64Array(n));
  if (inputs && geometry)
    result.images.forEach((im, k) => {
      const c = im.label ?? im.cleanClass;
      if (!(c >= 0 && c < d)) return;
      const m = classMeans[c];
      for (let i = 0; i < n; i++) m[i] += inputs[k][i] / classes[c].images;
    });
  const backdrop = (x: ArrayLike<number>) => (inputs && geometry ? grayImage(x, geometry, info.display) : undefined);
  const panels = (pick: (c: (typeof classes)[number]) => Float64Array): HeatPanel[] =>
    classes.map((c, k) => ({
      title: `${c.class} (n=${c.images})`,
      values: pick(c),
      rows,
      cols,
      pixels,
      background: c.images > 0 ? backdrop(classMeans[k]) : undefined,
    }));
  const cell = Math.max(2, Math.round(160 / Math.max(pixels?.height ?? rows, pixels?.width ?? cols)));
  const under = inputs && geometry ? ', over the mean input' : '';
  const files: Record<string, Uint8Array | string> = {
    'fooling-mean.npy': encodeNpy(stack(result.images.map((im) => im.foolingMean)), shape),
    'flip-probability.npy': encodeNpy(stack(result.images.map((im) => im.flipProbability)), shape),
    'mean-margin.npy': encodeNpy(stack(result.images.map((im) => im.meanMargin)), shape),
    'class-fooling-mean.npy': encodeNpy(stack(classes.map((c) => c.foolingMean)), [d, rows, cols]),
    'class-flip-probability.npy': encodeNpy(stack(classes.map((c) => c.flipProbability)), [d, rows, cols]),
    'fooling-mean.png': heatmapPng(
      panels((c) => c.foolingMean),
      { vmin: 0, title: `fooled by the mean, per ${grouped}${under}: ${w}x${w} window, sigma ${sigma}`, colorbarLabel: 'rate (0-1)', cell },
    ),
    'flip-probability.png': heatmapPng(
      panels((c) => c.flipProbability),
      { vmin: 0, title: `P(flip), average per ${grouped}${under}: ${w}x${w} window, sigma ${sigma}`, colorbarLabel: 'P(flip) (0-1)', cell },
    ),
  };
  if (inputs && geometry && N > 0) {
    const shown: HeatPanel[] = [];
    result.images.slice(0, SHOWN_INPUTS).forEach((im, k) => {
      const background = grayImage(inputs[k], geometry, info.display);
      shown.push({ title: `input ${im.index}${im.label !== null ? ` label ${im.label}` : ''}`, rows, cols, pixels, background });
      shown.push({ title: `P(flip), clean ${im.cleanClass}`, values: im.flipProbability, rows, cols, pixels, background });
    });
    files['inputs-flip-probability.png'] = heatmapPng(shown, {
      vmin: 0,
      columns: 4,
      title: `P(flip) of noise in a ${w}x${w} window centred at each pixel, sigma ${sigma}`,
      colorbarLabel: 'P(flip) (0-1)',
      cell,
    });
  }
  const report = {
    schema: 'netmoments.sensitivity/1',
    model: info.model.file,
    data: info.data,
    split: result.split,
    output: result.output,
    noise: { kind: 'isotropic', sigma, windowSize: w, stride, channels: 'all', layout: result.layout },
    positions: { rows, cols, inputShape: result.inputShape, note: 'cell (r, c) is the window with top-left corner (r * stride, c * stride)' },
    run: {
      version: info.version,
      modelSha256: info.model.sha256,
      seed: info.seed,
      probabilityPoints: info.probabilityPoints,
      probabilityShifts: 8,
      skipBelow: 1e-4,
    },
    groupedBy: info.labelled ? 'label' : 'cleanClass',
    overall: {
      images: N,
      foolingRateMean: mean(result.images.map((im) => mean(im.foolingMean))),
      meanFlipProbability: mean(result.images.map((im) => mean(im.flipProbability))),
    },
    classes: classes.map((c) => ({
      class: c.class,
      images: c.images,
      foolingRateMean: c.images ? mean(c.foolingMean) : null,
      meanFlipProbability: c.images ? mean(c.flipProbability) : null,
    })),
    images: result.images.map((im) => imageSummary(im, cols, stride)),
    files: Object.keys(files),
  };
  files['sensitivity.json'] = toJson(report);
  return { files, report };
}

/** The summary line on stderr. */
export function sensitivitySummary(report: ReturnType<typeof sensitivityFiles>['report'], outDir: string): string {
  const { split, positions, noise, overall } = report;
  return (
    `sensitivity of ${report.model} (ReLU ${split.index}): ${overall.images} images x ${positions.rows * positions.cols} windows of ${noise.windowSize}x${noise.windowSize}, sigma ${noise.sigma}: ` +
    `fooled by the mean in ${sig(100 * overall.foolingRateMean)}% of (image, window) pairs, average P(flip) ${sig(overall.meanFlipProbability)}; wrote ${outDir}\n`
  );
}
