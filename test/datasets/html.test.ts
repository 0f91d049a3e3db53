/**
 * `report --html`: the page shows what summary.json says (the flip rate as written there, one row
 * per class, the least robust inputs with their trust verdicts), a bar per class, and loads nothing
 * from outside (no URLs; pictures as data URIs).
 */
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { imageGeometry } from '../../src/data/layout.js';
import { HTML_WORST, reportHtml } from '../../src/report/html.js';
import { reportFiles, type ReportHeader, type SampleRecord } from '../../src/report/summary.js';

const header: ReportHeader = {
  model: 'net.onnx',
  data: { file: 'x.npy', labels: 'y.npy', count: 40, sha256: 'a'.repeat(64) },
  split: null,
  method: 'propagate',
  methodReason: 'every op has a moment rule',
  rank: 16,
  output: { name: 'logits', shape: [1, 4], size: 4 },
  noise: { kind: 'isotropic', sigma: 8, meanFile: null, window: null, support: 16 },
  linearization: { mode: 'input', k: null, bank: null, bankId: null, point: null, seed: null },
  run: {
    version: '0.0.0',
    modelSha256: 'b'.repeat(64),
    seed: 0,
    fingerprint: 'c'.repeat(64),
    variance: 'exact',
    perLogit: false,
    probabilitySamples: 1024,
    mc: null,
    chunk: 16,
    jacobian: 'jvp',
  },
};

/** 40 records, classes 0..3 by label, flip probabilities spread over [0, 1), every 7th input untrusted. */
function records(): SampleRecord[] {
  return Array.from({ length: 40 }, (_, i) => {
    const label = i % 4;
    const flip = ((i * 37) % 40) / 40;
    const probs = [0, 1, 2, 3].map((j) => (j === label ? 1 - flip : flip / 3));
    return {
      i,
      label,
      clean: label,
      pred: flip > 0.5 ? (label + 1) % 4 : label,
      margin: 1 - 2 * flip,
      flip,
      probs,
      mean: [0, 0, 0, 0],
      var: [1, 1, 1, 1],
      centre: null,
      dist: null,
      uncertain: 3,
      trust: i % 7 === 0 ? { verdict: 'fail' as const, reasons: ['Monte Carlo <disagrees> & more'] } : { verdict: 'ok' as const, reasons: [] },
    };
  });
}

describe('report --html', () => {
  it('shows the summary as summary.json writes it, one row and one bar per class, the worst inputs with their verdicts; nothing external', () => {
    const recs = records();
    const { files, summary } = reportFiles(header, recs);
    const json = JSON.parse(files['summary.json']);
    const g = imageGeometry([1, 4, 4])!;
    const html = reportHtml(summary, recs, { geometry: g, input: (i) => Float32Array.from({ length: 16 }, (_, k) => (k + i) % 5) });
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    // the flip rate exactly as summary.json has it, and shown in percent
    expect(html).toContain(`id="flip-rate" class="n" data-value="${JSON.stringify(json.flipRate)}"`);
    expect(html).toContain(`${(100 * json.flipRate).toFixed(3)}%`);
    expect(html).toContain(`data-value="${JSON.stringify(json.trustedFlipRate)}"`);
    // one row and one bar per class, each with that class's flip rate from summary.json
    const rows = html.match(/<tr class="class-row">.*?<\/tr>/g)!;
    expect(rows).toHaveLength(json.perClass.length);
    json.perClass.forEach((c: { class: number; flipRate: number }, k: number) => {
      expect(rows[k]).toContain(`data-value="${JSON.stringify(c.flipRate)}"`);
      expect(html).toContain(`<rect class="bar" data-class="${c.class}"`);
    });
    // bar lengths follow the flip rates
    const widths = json.perClass.map((c: { class: number }) =>
      Number(new RegExp(`data-class="${c.class}" x="[0-9.]+" y="[0-9.]+" width="([0-9.]+)"`).exec(html)![1]),
    );
    json.perClass.forEach((a: { flipRate: number }, i: number) =>
      json.perClass.forEach((b: { flipRate: number }, j: number) => {
        if (a.flipRate > b.flipRate) expect(widths[i]).toBeGreaterThan(widths[j]);
      }),
    );
    // the least robust inputs, largest P(flip) first, each with its verdict (reasons escaped)
    const worst = html.match(/<tr class="worst-row">.*?<\/tr>/g)!;
    expect(worst).toHaveLength(HTML_WORST);
    const order = [...recs].sort((a, b) => b.flip! - a.flip! || a.i - b.i).slice(0, HTML_WORST);
    worst.forEach((w, k) => {
      expect(w).toContain(`alt="input ${order[k].i}"`);
      expect(w).toContain(`<td class="${order[k].trust.verdict}">${order[k].trust.verdict}</td>`);
    });
    expect(html).toContain('Monte Carlo &lt;disagrees&gt; &amp; more');
    expect(html).not.toContain('<disagrees>');
    // self-contained: no URL, no external reference of any kind
    expect(html).not.toMatch(/https?:|\/\/[a-z]|<link|<script|@import|url\(/i);
    // the pictures are PNG data URIs of the input's size times a whole zoom
    const uri = /src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/.exec(html)!;
    const png = PNG.sync.read(Buffer.from(uri[1], 'base64'));
    expect(png.width % 4).toBe(0);
    expect(png.width).toBe(png.height);
  });

  it('a normalized input is drawn as its pixels: x * std + mean undone before the grey', () => {
    const recs = records();
    const { summary } = reportFiles(header, recs);
    const g = imageGeometry([1, 4, 4])!;
    const input = (i: number) => Float32Array.from({ length: 16 }, (_, k) => ((k + i) % 5) - 1); // -1 .. 3 in model units
    const html = reportHtml(summary, recs, { geometry: g, input, display: { scale: 1, offset: 0, mean: [0.5], std: [0.25] } });
    const first = [...recs].sort((a, b) => b.flip! - a.flip! || a.i - b.i)[0].i;
    const uri = /src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/.exec(html)!;
    const png = PNG.sync.read(Buffer.from(uri[1], 'base64'));
    const zoom = png.width / 4;
    const x = input(first);
    for (let k = 0; k < 16; k++) {
      // pixel = 255 (v * 0.25 + 0.5), clipped: -1 -> 64, 0 -> 128, 1 -> 191, 2 and 3 -> 255
      const want = Math.min(255, Math.max(0, Math.round(255 * (x[k] * 0.25 + 0.5))));
      expect(png.data[4 * (Math.floor(k / 4) * zoom * png.width + (k % 4) * zoom)], `pixel ${k}`).toBe(want);
    }
  });

  it('without flip probabilities (--variance none): no bar chart, no worst table', () => {
    const recs = records().map((r) => ({ ...r, flip: null, probs: null, var: null }));
    const { summary } = reportFiles({ ...header, run: { ...header.run, variance: 'none' } }, recs);
    const html = reportHtml(summary, recs);
    expect(html).not.toContain('class="bars"');
    expect(html).not.toContain('worst-row');
    expect(html.match(/<tr class="class-row">/g)).toHaveLength(4);
  });
});
