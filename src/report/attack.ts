/**
 * The files of `netmoments attack`: attack.json (netmoments.attack/1), mu.npy (the noise means) and
 * PNG pictures of clean / noise / noisy inputs, and the summary text (experiments/attack.ts finds
 * the noise).
 */
import { imageGeometry, pixelIndex, requireImageGeometry, type ImageGeometry, type LayoutChoice } from '../data/layout.js';
import { encodeNpy } from '../data/npy.js';
import type { AttackMode, AttackResult, FoundNoise, UniversalResult, UniversalSettings } from '../experiments/attack.js';
import { sig, toJson } from '../experiments/cli.js';
import { toPixels } from '../experiments/common.js';
import { isPerChannel, type Preprocessing } from '../data/preprocess.js';
import type { TensorDescription } from '../linearize/linearizer.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { Canvas, textWidth } from './heatmap.js';

/**
 * How model-unit inputs become pixels: the input preprocessing undone, pixel/255 = (v - offset) /
 * scale * std[c] + mean[c] (experiments/common.ts, toPixels), when it is known (`range`, or a
 * per-channel mean or std); else the images are scaled by their joint min and max.
 */
export interface Display extends Preprocessing {
  /** The valid input range in model units, when the model declares its preprocessing (or --scale/--offset) and it is not per channel. */
  range?: { lo: number; hi: number };
}

/** What the pictures need: the image geometry, the display, and one draw of found noise for an input index. */
export interface AttackPictures {
  geometry: ImageGeometry;
  display: Display;
  /** Each input pixel becomes zoom x zoom picture pixels (default: defaultZoom). */
  zoom?: number;
  draw: (found: FoundNoise, input: number) => Float64Array;
}

/** The run the report describes besides the result. */
export interface AttackRunInfo {
  mode: AttackMode | 'universal';
  /** The model file and its SHA-256. */
  model: { file: string; sha256: string };
  /** The input or data file. */
  input: string;
  inputShape: number[];
  split: SplitPoint;
  output: TensorDescription;
  settings: Required<Pick<UniversalSettings, 'alpha' | 'beta' | 'varMax' | 'iters' | 'rounds' | 'temperature' | 'verify' | 'seed' | 'kappa'>> &
    Pick<UniversalSettings, 'clipTo'>;
  /** Eq. 3: the target class. */
  target?: number;
  version: string;
}

type Panel = { title: string; values: ArrayLike<number>; kind: 'image' | 'noise' };

/** Where the pictures were drawn (canvas pixels): each panel's image area, zoom x the input's size. */
export interface PicturesLayout {
  width: number;
  height: number;
  zoom: number;
  images: Array<{ x: number; y: number; width: number; height: number }>;
}

/** The default zoom: the largest whole number that keeps the picture's long side at most 224 pixels (28 -> 8x), at least 1. */
export function defaultZoom(g: { height: number; width: number }): number {
  return Math.max(1, Math.floor(224 / Math.max(g.height, g.width)));
}

/** One input drawn as an image, each pixel a zoom x zoom block (nearest neighbour): 1 channel (or 4, or anything but 3) in gray from channel 0, 3 channels in RGB. */
function drawImage(cv: Canvas, x0: number, y0: number, v: ArrayLike<number>, g: ImageGeometry, map: (t: number) => number, zoom: number): void {
  for (let r = 0; r < g.height; r++)
    for (let c = 0; c < g.width; c++) {
      const px = (ch: number) => {
        const t = map(v[pixelIndex(g, ch, r, c)]);
        return t <= 0 ? 0 : t >= 255 ? 255 : Math.round(t);
      };
      const rgb = g.channels === 3 ? [px(0), px(1), px(2)] : [px(0), px(0), px(0)];
      cv.fill(x0 + c * zoom, y0 + r * zoom, zoom, zoom, rgb);
    }
}

/**
 * Panels side by side (original, perturbation, adversarial), each upscaled by `zoom` with nearest
 * neighbour and framed, a title above each and a caption under the row that says how the grey levels
 * read: images in pixels through the model's preprocessing (or scaled by their joint min and max),
 * the perturbation with mid grey at 0 and white / black at +/- its largest magnitude (model units).
 */
export function picturesPng(panels: Panel[], g: ImageGeometry, disp: Display, zoom = defaultZoom(g)): { png: Uint8Array; layout: PicturesLayout } {
  const H = g.height;
  const W = g.width;
  const ts = zoom * Math.max(H, W) >= 160 ? 2 : 1;
  const titleH = 7 * ts + 8;
  const gap = 16;
  // a per-channel normalization (--mean/--std or the model's metadata) is undone channel by channel
  const perChannel = isPerChannel(disp);
  const known = disp.range !== undefined || perChannel;
  let lo = Infinity,
    hi = -Infinity;
  if (!known)
    for (const p of panels)
      if (p.kind === 'image')
        for (let i = 0; i < p.values.length; i++) {
          lo = Math.min(lo, p.values[i]);
          hi = Math.max(hi, p.values[i]);
        }
  let noiseMax = 0;
  for (const p of panels) if (p.kind === 'noise') for (let k = 0; k < p.values.length; k++) noiseMax = Math.max(noiseMax, Math.abs(p.values[k]));
  const caption: string[] = [
    perChannel
      ? `images: pixels 0..255, the normalization undone per channel (x * std + mean), ${zoom}x nearest neighbour`
      : disp.range
        ? `images: pixels 0..255 (model units ${sig(disp.range.lo)}..${sig(disp.range.hi)}), ${zoom}x nearest neighbour`
        : `images: grey from ${sig(lo)} (black) to ${sig(hi)} (white) in model units, ${zoom}x nearest neighbour`,
  ];
  if (panels.some((p) => p.kind === 'noise')) caption.push(`noise: mid grey 0, white +${sig(noiseMax)}, black -${sig(noiseMax)} (model units)`);
  const pw = Math.max(W * zoom, ...panels.map((p) => textWidth(p.title, ts)));
  const captionH = caption.length * (7 * ts + 6) + 6;
  const width = Math.max(gap + panels.length * (pw + gap), gap * 2 + Math.max(...caption.map((c) => textWidth(c, ts))));
  const height = gap + titleH + H * zoom + 2 + captionH + gap;
  const cv = new Canvas(width, height);
  const imageMap = known ? (t: number) => t : (t: number) => (hi > lo ? ((t - lo) / (hi - lo)) * 255 : 128);
  const images: PicturesLayout['images'] = [];
  panels.forEach((p, i) => {
    const x0 = gap + i * (pw + gap);
    const y0 = gap + titleH;
    cv.text(x0, gap, p.title, ts);
    const map = p.kind === 'noise' ? (t: number) => 128 + (noiseMax > 0 ? (127 * t) / noiseMax : 0) : imageMap;
    drawImage(cv, x0, y0, p.kind === 'image' && known ? toPixels(p.values, disp, g) : p.values, g, map, zoom);
    const w = W * zoom,
      h = H * zoom;
    cv.fill(x0 - 1, y0 - 1, w + 2, 1, [120, 120, 120]);
    cv.fill(x0 - 1, y0 + h, w + 2, 1, [120, 120, 120]);
    cv.fill(x0 - 1, y0 - 1, 1, h + 2, [120, 120, 120]);
    cv.fill(x0 + w, y0 - 1, 1, h + 2, [120, 120, 120]);
    images.push({ x: x0, y: y0, width: w, height: h });
  });
  caption.forEach((c, k) => cv.text(gap, gap + titleH + H * zoom + 8 + k * (7 * ts + 6), c, ts, [60, 60, 60]));
  return { png: cv.png(), layout: { width, height, zoom, images } };
}

function panelsPng(panels: Panel[], g: ImageGeometry, disp: Display, zoom?: number): Uint8Array {
  return picturesPng(panels, g, disp, zoom).png;
}

/**
 * The geometry the pictures are drawn in, or undefined (with a note on stderr) when the input is
 * not a picture (a flat [100] input, a 16-channel feature map). An explicit --layout that cannot
 * read the input as an image at all is a usage error naming the model.
 */
export function pictureGeometry(shape: number[], choice: LayoutChoice, file: string, warn: (m: string) => void): ImageGeometry | undefined {
  const g = choice === 'auto' ? imageGeometry(shape, choice) : requireImageGeometry(shape, choice, `--layout ${choice}`, file);
  if (g?.picture) return g;
  warn(
    `the model's input [${shape.join(', ')}] is not an image (${g ? `${g.channels} channels` : 'no rows and columns'}): ` +
      'writing no PNG pictures, only mu.npy and attack.json',
  );
  return undefined;
}

/** What every attack report holds: the model, the split, the box and the optimizer. */
function reportHeader(info: AttackRunInfo) {
  const { alpha, beta, varMax, iters, rounds, temperature, verify, seed, clipTo } = info.settings;
  return {
    schema: 'netmoments.attack/1',
    mode: info.mode,
    model: info.model.file,
    input: info.input,
    split: info.split,
    output: info.output,
    box: { beta, varMin: 1e-6 * varMax, varMax, alpha, validRange: clipTo ?? null },
    optimizer: {
      method: 'spectral projected gradient (Birgin, Martinez and Raydan 2000) with a nonmonotone line search, on the box-scaled variables',
      iterations: iters,
      rounds,
      linearization: rounds === 1 ? 'once, at the clean image (as in the paper)' : `at the clean image, then re-linearized at x + mu ${rounds - 1} time(s)`,
      smoothing: `log-sum-exp of the max at temperature ${temperature}`,
    },
    run: { version: info.version, modelSha256: info.model.sha256, seed, verify },
  };
}

/** The files of a universal attack on `xs` (inputs `indices`): mu.npy, universal.png (mu and the first three inputs, clean and noisy) and attack.json. */
export function universalFiles(res: UniversalResult, xs: Float32Array[], info: AttackRunInfo, pictures?: AttackPictures): Record<string, string | Uint8Array> {
  const files: Record<string, string | Uint8Array> = {};
  files['mu.npy'] = encodeNpy(Float32Array.from(res.mu), info.inputShape);
  if (pictures) {
    const panels: Panel[] = [{ title: 'mu', values: res.mu, kind: 'noise' }];
    for (let i = 0; i < Math.min(3, xs.length); i++) {
      const e = pictures.draw(res, res.images[i].input);
      const im = res.images[i];
      panels.push({ title: `clean ${im.cleanClass}`, values: xs[i], kind: 'image' });
      panels.push({ title: `+mu: ${im.realClass}`, values: Float64Array.from(xs[i], (v, k) => v + e[k]), kind: 'image' });
    }
    files['universal.png'] = panelsPng(panels, pictures.geometry, pictures.display, pictures.zoom);
  }
  const report = {
    ...reportHeader(info),
    elements: res.elements.length,
    sigma2: res.sigma2,
    objective: res.objective,
    objectiveStart: res.objectiveStart,
    objectiveDefinition: `mean over images of max(E_c - max_{j != c} E_j, -${info.settings.kappa}), c the label (or the clean class)`,
    iterations: res.iterations,
    evaluations: res.evaluations,
    predictedFoolingRate: res.predictedFoolingRate,
    realFoolingRate: res.realFoolingRate,
    sampledFoolingRate: res.sampledFoolingRate,
    mu: { file: 'mu.npy', linf: Math.max(...Array.from(res.mu, Math.abs)), l2: Math.hypot(...res.mu) },
    results: res.images,
    files: Object.keys(files).concat('attack.json'),
  };
  files['attack.json'] = toJson(report);
  return files;
}

/** The files of per-input attacks (Eq. 3 or Eq. 4; xs[k] the input of results[k]): mu.npy, attack-INPUT.png each and attack.json. */
export function attackFiles(results: AttackResult[], xs: Float32Array[], info: AttackRunInfo, pictures?: AttackPictures): Record<string, string | Uint8Array> {
  const targeted = info.mode === 'targeted';
  const files: Record<string, string | Uint8Array> = {};
  const n = info.inputShape.reduce((a, b) => a * b, 1);
  const mus = new Float32Array(results.length * n);
  results.forEach((r, k) => mus.set(r.mu, k * n));
  files['mu.npy'] = encodeNpy(mus, [results.length, ...info.inputShape]);
  if (pictures)
    results.forEach((r, k) => {
      const x = xs[k];
      const e = pictures.draw(r, r.input);
      const what = targeted ? `${r.targetClass}` : `not ${r.trueClass}`;
      files[`attack-${r.input}.png`] = panelsPng(
        [
          { title: `original: ${r.cleanClass}`, values: x, kind: 'image' },
          { title: 'perturbation (a draw)', values: e, kind: 'noise' },
          { title: `adversarial: ${what} in ${sig(100 * r.verification.rate, 3)}% of draws`, values: Float64Array.from(x, (v, j) => v + e[j]), kind: 'image' },
        ],
        pictures.geometry,
        pictures.display,
        pictures.zoom,
      );
    });
  const report = {
    ...reportHeader(info),
    target: targeted ? info.target : null,
    objectiveDefinition: targeted
      ? 'max_{i != j} E_i - E_j (Eq. 3; < 0: the target has the largest mean)'
      : 'E_c - max_{i != c} E_i (Eq. 4; < 0: the true class is not the largest mean)',
    successDefinition: targeted
      ? 'at least half of the verification samples are classified as the target'
      : 'at least half of the verification samples are not classified as the true class',
    succeeded: results.filter((r) => r.success).length,
    attacked: results.length,
    results: results.map((r, k) => ({
      ...r,
      elements: r.elements.length,
      mu: { file: 'mu.npy', index: k, linf: Math.max(...Array.from(r.mu, Math.abs)) },
      picture: pictures ? `attack-${r.input}.png` : null,
    })),
    files: Object.keys(files).concat('attack.json'),
  };
  files['attack.json'] = toJson(report);
  return files;
}

/** The stderr summary of a universal attack. */
export function universalSummary(res: UniversalResult, info: AttackRunInfo, outDir: string): string {
  return (
    `universal noise over ${res.images.length} inputs (ReLU ${info.split.index}, beta ${info.settings.beta}, sigma^2 ${sig(res.sigma2)}): margin ${sig(res.objectiveStart)} -> ${sig(res.objective)}; ` +
    `fooling predicted ${sig(100 * res.predictedFoolingRate, 4)}%, real at x + mu ${sig(100 * res.realFoolingRate, 4)}%, sampled ${sig(100 * res.sampledFoolingRate, 4)}%; wrote ${outDir}\n`
  );
}

/** The stderr summary of per-input attacks: one line each. */
export function attackSummary(results: AttackResult[], info: AttackRunInfo, outDir: string): string {
  const targeted = info.mode === 'targeted';
  const lines = results.map(
    (r) =>
      `  input ${r.input}: clean ${r.cleanClass}, objective ${sig(r.objectiveStart)} -> ${sig(r.objective)}, sigma^2 ${sig(r.sigma2)}, ` +
      `real model at x + mu: ${r.realAtMean.predicted}; ${targeted ? `samples classified ${r.targetClass}` : `samples away from ${r.trueClass}`}: ${sig(100 * r.verification.rate, 3)}% of ${r.verification.samples}`,
  );
  const succeeded = results.filter((r) => r.success).length;
  return `${info.mode} attack (Eq. ${targeted ? 3 : 4}) on ${results.length} input(s) (ReLU ${info.split.index}, beta ${info.settings.beta}, alpha ${info.settings.alpha}): ${succeeded} succeeded\n${lines.join('\n')}\nwrote ${outDir}\n`;
}
