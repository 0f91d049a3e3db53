/**
 * Build dist/ once before the tests that run the CLI (bin/netmoments.js runs the compiled code).
 * Skipped when every compiled file is newer than its source (`npm test` has just built).
 *
 * The test files make scratch folders and files with os.tmpdir() (models, reports, banks: about a
 * thousand a run). They all go into one folder of this run, TMPDIR for the forks that run the files
 * (started after this setup, they inherit it), removed when the run ends.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

function upToDate(): boolean {
  for (const src of sources(join(ROOT, 'src'))) {
    const out = join(ROOT, 'dist', relative(join(ROOT, 'src'), src).replace(/\.ts$/, '.js'));
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) return false;
  }
  return true;
}

export default function setup(): () => void {
  const scratch = mkdtempSync(join(tmpdir(), 'netmoments-test-'));
  process.env.TMPDIR = scratch;
  build();
  return () => rmSync(scratch, { recursive: true, force: true });
}

function build(): void {
  if (upToDate()) return;
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (e) {
    const out = (e as { stdout?: Buffer }).stdout?.toString() ?? String(e);
    throw new Error(`npm run build failed before the tests:\n${out}`);
  }
}
