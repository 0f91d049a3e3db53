/**
 * Reading inputs with one clean error, and writing outputs atomically: bad input never leaves a
 * half-written report. Content goes to a temporary file beside the target and is renamed into
 * place only when complete.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { NetmomentsError, oneLine } from '../errors.js';

export interface ReadOptions {
  /** The message when the file does not exist (default 'no such file (ENOENT)'). */
  missing?: string;
}

/**
 * The bytes of a file, or a NetmomentsError naming it and the system's error code: 'no such file
 * (ENOENT)', 'is a directory, not a file (EISDIR)', 'cannot read the file (EACCES)'.
 */
export function readFileOrFail(path: string, options: ReadOptions = {}): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && options.missing !== undefined) throw new NetmomentsError(options.missing, { file: path, cause: e });
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a file' : 'cannot read the file';
    throw new NetmomentsError(`${why} (${code ?? oneLine(String(e))})`, { file: path, cause: e });
  }
}

/** A file's text (UTF-8), with readFileOrFail's errors. */
export function readTextOrFail(path: string, options: ReadOptions = {}): string {
  return new TextDecoder().decode(readFileOrFail(path, options));
}

/** Hex SHA-256 of text or of a typed array's bytes. */
export function sha256Hex(data: string | ArrayBufferView): string {
  const h = createHash('sha256');
  if (typeof data === 'string') h.update(data);
  else h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return h.digest('hex');
}

/** Write one file atomically (temporary file beside it, then rename). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * A staging folder inside `dir` for outputs made one file at a time: put() writes each file into
 * it (names may hold subfolders), commit() renames them into `dir` in the order they were put (so
 * the file that marks a complete output goes last), discard() removes the folder and whatever is
 * left in it; call it in a finally.
 */
export class StagingFolder {
  readonly path: string;
  private readonly names: string[] = [];

  /** @param name the staging folder's name inside `dir` (default .staging-PID); an old one of that name is removed */
  constructor(
    readonly dir: string,
    name = `.staging-${process.pid}`,
  ) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, name);
    rmSync(this.path, { recursive: true, force: true });
    mkdirSync(this.path, { recursive: true });
  }

  put(name: string, data: string | Uint8Array): void {
    mkdirSync(dirname(join(this.path, name)), { recursive: true });
    writeFileSync(join(this.path, name), data);
    this.names.push(name);
  }

  commit(): void {
    for (const name of this.names) {
      mkdirSync(dirname(join(this.dir, name)), { recursive: true });
      renameSync(join(this.path, name), join(this.dir, name));
    }
    this.names.length = 0;
  }

  discard(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/**
 * Write several files into `dir` all-or-nothing: everything is produced in memory first by the
 * caller, written to a staging folder, then each file renamed into place in the order of `files`'
 * keys.
 */
export function writeFilesAtomic(dir: string, files: Record<string, string | Uint8Array>): void {
  const staging = new StagingFolder(dir);
  try {
    for (const [name, data] of Object.entries(files)) staging.put(name, data);
    staging.commit();
  } finally {
    staging.discard();
  }
}
