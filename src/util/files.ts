/**
 * Reading inputs with one clean error, and writing outputs atomically: bad input never leaves a
 * half-written report. Content goes to a temporary file beside the target and is renamed into
 * place only when complete.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { NetmomentsError, oneLine } from '../errors.js';

/**
 * The bytes of a file, or a NetmomentsError naming it and the system's error code: 'no such file
 * (ENOENT)', 'is a directory, not a file (EISDIR)', 'cannot read the file (EACCES)'.
 */
export function readFileOrFail(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a file' : 'cannot read the file';
    throw new NetmomentsError(`${why} (${code ?? oneLine(String(e))})`, { file: path, cause: e });
  }
}

/** A file's text (UTF-8), with readFileOrFail's errors. */
export function readTextOrFail(path: string): string {
  return new TextDecoder().decode(readFileOrFail(path));
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
 * Write several files into `dir` all-or-nothing: everything is produced in memory first by the
 * caller, written to a staging folder, then each file renamed into place.
 */
export function writeFilesAtomic(dir: string, files: Record<string, string | Uint8Array>): void {
  mkdirSync(dir, { recursive: true });
  const staging = join(dir, `.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(dirname(join(staging, name)), { recursive: true });
      writeFileSync(join(staging, name), data);
    }
    for (const name of Object.keys(files)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      renameSync(join(staging, name), join(dir, name));
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
