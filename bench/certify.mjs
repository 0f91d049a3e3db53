// bench/certify: the analytic certified-radius estimate against Cohen et al.'s Monte Carlo
// CERTIFY (n0 = 100, N samples, alpha = 0.001) on held-out MNIST digits through the bundled LeNet,
// in one run: agreement of the radii (median and worst |R_analytic - R_mc| where neither abstains),
// class agreement, abstentions, and the cost ratio (process CPU seconds of MC / analytic).
// Usage: npm run build && node bench/certify.mjs [digits=100] [N=100000] [sigma=64]
// The digits are scripts/heldout-digits.mjs's (held-out digits 8000 .. 8000+digits-1), made on the fly.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadModel } from '../dist/onnx/load.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { certify, summarizeCertify } from '../dist/experiments/certify.js';
import { PhiInv } from '../dist/moments/special.js';
import { sharedOrtLinearAlgebra } from '../dist/runtime/linalg.js';

const digits = Number(process.argv[2] ?? 100);
const N = Number(process.argv[3] ?? 100000);
const sigma = Number(process.argv[4] ?? 64);
const dir = `/tmp/netmoments-heldout-${digits}`;
if (!existsSync(`${dir}/digits.npy`)) execFileSync('node', [new URL('../scripts/heldout-digits.mjs', import.meta.url).pathname, String(digits), dir]);
const xs = npyToFloat32(readNpy(`${dir}/digits.npy`));
const labels = Array.from(readNpy(`${dir}/labels.npy`).data, Number);
const model = loadModel(new URL('../fixtures/lenet.onnx', import.meta.url).pathname);
const f = (v, d = 4) => (v === null ? 'abstain' : Number(v.toPrecision(d)).toString());
console.log(`LeNet, ${digits} held-out digits, sigma ${sigma} (pixel units), MC: n0 = 100, N = ${N}, alpha = 0.001`);
console.log('digit label  analytic: class p_A R trust cpu_s |  mc: class p_A_lower R cpu_s');
const done = [];
const t0 = performance.now();
const rep = certify(model, xs, digits, labels, {
  sigma,
  mc: N,
  n0: 100,
  alpha: 0.001,
  seed: 0,
  linalg: sharedOrtLinearAlgebra(),
  onResult: (r) => {
    done.push(r);
    console.log(
      `${r.input} ${r.label}  ${r.analytic.class} ${f(r.analytic.pA, 6)} ${f(r.analytic.radius)} ${r.analytic.trust.verdict} ${r.analytic.cpuSeconds.toFixed(2)} | ` +
        `${r.mc.class} ${f(r.mc.pALower, 6)} ${f(r.mc.radius)} ${r.mc.cpuSeconds.toFixed(2)}`,
    );
  },
});
// interrupted (the machine is shared and N = 100,000 is slow): the summary over the digits done so far
for (const sig of ['SIGINT', 'SIGTERM'])
  process.once(sig, () => {
    console.log(`interrupted after ${done.length} of ${digits} digits`);
    report(done);
    process.exit(130);
  });
report((await rep).results);
function report(results) {
  if (results.length === 0) return;
  const s = summarizeCertify(results);
  const a = s.agreement;
  // the MC certificate cannot exceed sigma Phi^-1(alpha^(1/N)) (every sample in class A): the analytic radii above it are compared capped there too
  const cap = sigma * PhiInv(Math.exp(Math.log(0.001) / N));
  const both = results.filter((r) => r.analytic.radius !== null && r.mc.radius !== null);
  const capped = both.map((r) => Math.abs(Math.min(r.analytic.radius, cap) - r.mc.radius)).sort((p, q) => p - q);
  const med = (v) => (v.length ? (v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null);
  console.log(
    `${results.length} digits done in ${((performance.now() - t0) / 1000).toFixed(0)} s wall; trust ${s.trust.ok} ok / ${s.trust.warn} warn / ${s.trust.fail} fail`,
  );
  console.log(`class agreement ${(100 * a.classAgreement).toFixed(1)}%; abstentions analytic ${s.analytic.abstained}, mc ${s.mc.abstained}`);
  console.log(`|R_analytic - R_mc| over ${a.compared} digits with both radii: median ${f(a.medianAbsRadiusDifference)}, worst ${f(a.maxAbsRadiusDifference)}`);
  console.log(`  with R_analytic capped at the largest radius N samples can certify (${f(cap)}): median ${f(med(capped))}, worst ${f(capped.at(-1) ?? null)}`);
  console.log(
    `median radius analytic ${f(s.analytic.medianRadius)}, mc ${f(s.mc.medianRadius)}; certified with the label's class: analytic ${s.analytic.certifiedCorrect}, mc ${s.mc.certifiedCorrect}`,
  );
  console.log(
    `CPU seconds: analytic ${s.analytic.cpuSeconds.toFixed(1)} (${(s.analytic.cpuSeconds / results.length).toFixed(2)}/digit), mc ${s.mc.cpuSeconds.toFixed(1)} (${(s.mc.cpuSeconds / results.length).toFixed(2)}/digit); cost ratio mc/analytic ${s.costRatio.toFixed(1)}x`,
  );
  console.log(`wall seconds: analytic ${s.analytic.seconds.toFixed(1)}, mc ${s.mc.seconds.toFixed(1)}`);
  console.log(
    `projected for 100 digits: analytic ${((100 * s.analytic.cpuSeconds) / results.length / 60).toFixed(1)} CPU min, mc ${((100 * s.mc.cpuSeconds) / results.length / 60).toFixed(1)} CPU min`,
  );
}
