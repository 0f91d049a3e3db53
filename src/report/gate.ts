/**
 * The CI gate's checks on a dataset report and how CI systems show them: JUnit XML (one testcase
 * per threshold; GitHub, GitLab, Jenkins and Azure render it natively) and a Markdown summary
 * (for $GITHUB_STEP_SUMMARY).
 */
import { describeRun, type ReportSummary } from './summary.js';

export interface GateThresholds {
  /** Largest allowed flip rate (mean over inputs of P(class changes under noise)), in [0, 1]. */
  maxFlipRate: number;
  /** Smallest allowed expected accuracy under noise, in [0, 1]. */
  minAccuracy?: number;
  /** Pass inputs whose trust verdict is "fail" (their numbers are wrong) instead of failing on them. */
  allowUntrusted?: boolean;
  /**
   * With Monte Carlo in the report: the largest allowed |analytic - Monte Carlo| flip rate over the
   * inputs that got samples (src/trust.ts flipTolerance of the pooled samples).
   */
  mcFlipTolerance?: number;
}

export interface GateCheck {
  name: string;
  passed: boolean;
  /** The measured value and the threshold. */
  value: number;
  threshold: number;
  /** One line for a failure. */
  message: string;
  /** How value and threshold read: a fraction (default) or a count. */
  unit?: 'fraction' | 'count';
}

/** A check's value as the gate prints it. */
export function checkValue(c: GateCheck, x = c.value): string {
  return c.unit === 'count' ? String(x) : pct(x);
}

function pct(x: number, digits = 3): string {
  return Number.isNaN(x) ? 'n/a' : `${(100 * x).toFixed(digits)}%`;
}

/** Evaluate the thresholds on a report summary (the caller makes sure the numbers exist). */
export function gateChecks(s: ReportSummary, t: GateThresholds): GateCheck[] {
  const checks: GateCheck[] = [];
  const flip = s.flipRate ?? 1;
  checks.push({
    name: `flip rate <= ${pct(t.maxFlipRate)}`,
    passed: flip <= t.maxFlipRate,
    value: flip,
    threshold: t.maxFlipRate,
    message: `flip rate ${pct(flip)} is above the maximum ${pct(t.maxFlipRate)} (${s.inputsLikelyToFlip ?? 0} of ${s.inputs} inputs more likely than not to flip)`,
  });
  const untrusted = s.untrusted ?? 0;
  checks.push({
    name: t.allowUntrusted ? 'inputs whose numbers failed the trust checks (allowed)' : 'no input fails the trust checks',
    passed: untrusted === 0 || !!t.allowUntrusted,
    value: untrusted,
    threshold: 0,
    unit: 'count',
    message: `${untrusted} of ${s.inputs} inputs failed the trust checks: their numbers are wrong (samples.csv's trust column, summary.md lists why); the flip rate over the trusted ones is ${s.trustedFlipRate === null ? 'n/a' : pct(s.trustedFlipRate)}. Lower the noise, split elsewhere, or pass --allow-untrusted`,
  });
  const f = s.tightness?.flip;
  if (f && t.mcFlipTolerance !== undefined) {
    const diff = Math.abs(f.analytic - f.monteCarlo);
    checks.push({
      name: `analytic and Monte Carlo flip rates agree within ${pct(t.mcFlipTolerance)}`,
      passed: diff <= t.mcFlipTolerance,
      value: diff,
      threshold: t.mcFlipTolerance,
      message: `the analytic flip rate ${pct(f.analytic)} and Monte Carlo's ${pct(f.monteCarlo)} on the ${s.tightness!.inputs} sampled inputs differ by ${pct(diff)}, more than ${pct(t.mcFlipTolerance)}: the analytic numbers are not to be trusted at this noise`,
    });
  }
  if (t.minAccuracy !== undefined) {
    const acc = s.accuracy?.underNoise ?? 0;
    checks.push({
      name: `accuracy under noise >= ${pct(t.minAccuracy)}`,
      passed: acc >= t.minAccuracy,
      value: acc,
      threshold: t.minAccuracy,
      message: `accuracy under noise ${pct(acc)} is below the minimum ${pct(t.minAccuracy)} (clean accuracy ${pct(s.accuracy?.clean ?? 0)})`,
    });
  }
  return checks;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** JUnit XML for the checks (testsuites > testsuite > testcase, failures with a message). */
export function gateJunit(s: ReportSummary, checks: GateCheck[], seconds: number): string {
  const failures = checks.filter((c) => !c.passed).length;
  const { noise, linearization } = describeRun(s);
  const suite = `netmoments gate: ${s.model} on ${s.data.file}`;
  const props: [string, string][] = [
    ['model', s.model],
    ['modelSha256', s.run.modelSha256],
    ['data', s.data.file],
    ['inputs', String(s.inputs)],
    ['noise', noise],
    ['linearization', linearization],
    ['split', s.split ? `ReLU ${s.split.index} (${s.split.node}, p = ${s.split.width})` : 'none (propagate)'],
    ['flipRate', String(s.flipRate)],
    ['trustedFlipRate', String(s.trustedFlipRate ?? null)],
    ['untrusted', String(s.untrusted ?? 0)],
    ['accuracyClean', String(s.accuracy?.clean ?? null)],
    ['accuracyUnderNoise', String(s.accuracy?.underNoise ?? null)],
    ['version', s.run.version],
    ['seed', String(s.run.seed)],
  ];
  const L: string[] = [];
  L.push('<?xml version="1.0" encoding="UTF-8"?>');
  L.push(`<testsuites name="netmoments gate" tests="${checks.length}" failures="${failures}" errors="0" time="${seconds.toFixed(3)}">`);
  L.push(`  <testsuite name="${xmlEscape(suite)}" tests="${checks.length}" failures="${failures}" errors="0" skipped="0" time="${seconds.toFixed(3)}">`);
  L.push('    <properties>');
  for (const [k, v] of props) L.push(`      <property name="${xmlEscape(k)}" value="${xmlEscape(v)}"/>`);
  L.push('    </properties>');
  for (const c of checks) {
    const attrs = `classname="netmoments.gate" name="${xmlEscape(c.name)}" time="0"`;
    if (c.passed) {
      L.push(`    <testcase ${attrs}>`);
      L.push(`      <system-out>${xmlEscape(`${c.name}: measured ${checkValue(c)}`)}</system-out>`);
      L.push('    </testcase>');
    } else {
      L.push(`    <testcase ${attrs}>`);
      L.push(`      <failure type="threshold" message="${xmlEscape(c.message)}">${xmlEscape(`${c.message}\nnoise: ${noise}\n${linearization}`)}</failure>`);
      L.push('    </testcase>');
    }
  }
  L.push('  </testsuite>');
  L.push('</testsuites>');
  return `${L.join('\n')}\n`;
}

/** The Markdown a CI job shows on its summary page. */
export function gateMarkdown(s: ReportSummary, checks: GateCheck[]): string {
  const ok = checks.every((c) => c.passed);
  const { noise, linearization } = describeRun(s);
  const L: string[] = [];
  L.push(`## ${ok ? '✅' : '❌'} netmoments gate ${ok ? 'passed' : 'failed'}: ${s.model}`);
  L.push('');
  L.push(`${s.inputs} inputs of \`${s.data.file}\` under ${noise}; ${linearization}.`);
  L.push('');
  L.push('| check | measured | threshold | result |');
  L.push('|---|---:|---:|---|');
  for (const c of checks) L.push(`| ${c.name} | ${checkValue(c)} | ${checkValue(c, c.threshold)} | ${c.passed ? 'pass' : '**fail**'} |`);
  if (s.accuracy)
    L.push('', `Clean accuracy ${pct(s.accuracy.clean, 2)}; ${s.inputsLikelyToFlip ?? 0} input(s) more likely than not to change class under the noise.`);
  L.push('');
  return `${L.join('\n')}\n`;
}
