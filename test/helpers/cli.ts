/** Run the built CLI (`node bin/netmoments.js ...`) the way a user does; test/global-setup.ts builds dist/ first. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'netmoments.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
    env: { ...process.env, ...options.env },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? (r.signal ? 128 : -1), stdout: r.stdout, stderr: r.stderr };
}

/** The checks every bad-input case shares: exit 2, one stderr line naming `file` and matching `problem`, no stack trace. */
export function expectBadInput(r: CliResult, file: string, problem: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  const where = `stderr: ${r.stderr}\nstdout: ${r.stdout}`;
  if (r.code !== 2) throw new Error(`exit code ${r.code}, expected 2\n${where}`);
  if (lines.length !== 1) throw new Error(`expected one stderr line, got ${lines.length}\n${where}`);
  if (!lines[0].startsWith('netmoments: ')) throw new Error(`stderr does not start with 'netmoments: '\n${where}`);
  if (!lines[0].includes(file)) throw new Error(`stderr does not name ${file}\n${where}`);
  if (!problem.test(lines[0])) throw new Error(`stderr does not match ${problem}\n${where}`);
  if (/\bat .+:\d+:\d+/.test(r.stderr) || /internal error/.test(r.stderr)) throw new Error(`stack trace or internal error\n${where}`);
}
