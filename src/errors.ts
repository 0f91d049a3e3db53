/**
 * One error type for everything the user can cause. The CLI maps it to exit code 2 and prints
 * one line: "netmoments: <file>: <problem>". Anything else that escapes is an internal error (exit 3).
 * The exit codes and CheckFailed live here too, at the bottom of the imports, so that commands can
 * throw them without importing the CLI that runs them.
 */

/** Process exit codes (README, "Commands"): success, a gate or check failed, bad usage or input, internal error. */
export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_INTERNAL = 3;

/** Thrown by a command that ran fine but whose check failed (gate): exit 1. */
export class CheckFailed extends Error {}

export type ErrorCode =
  | 'BAD_INPUT' // malformed file, wrong shape, NaN, non-PSD covariance, ...
  | 'BAD_USAGE' // conflicting or missing options
  | 'UNSUPPORTED' // op, dtype or provider we do not handle
  | 'RESOURCE'; // would need more memory/time than allowed

export class NetmomentsError extends Error {
  readonly code: ErrorCode;
  /** The file the problem is about, when there is one. */
  readonly file?: string;

  constructor(message: string, options: { code?: ErrorCode; file?: string; cause?: unknown } = {}) {
    super(oneLine(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NetmomentsError';
    this.code = options.code ?? 'BAD_INPUT';
    this.file = options.file;
  }

  /** The one-line message the CLI prints, naming the file first when known. */
  describe(): string {
    return this.file ? `${this.file}: ${this.message}` : this.message;
  }
}

/** Collapse a multi-line message (onnxruntime's errors are several lines long) into one line. */
export function oneLine(message: string): string {
  return message
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .join(' ')
    .replace(/\s+/g, ' ')
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '?'); // no terminal escapes from names inside a model
}

/** Throw a BAD_INPUT error about `file` unless `cond` holds. */
export function check(cond: unknown, message: string, file?: string): asserts cond {
  if (!cond) throw new NetmomentsError(message, { file });
}
