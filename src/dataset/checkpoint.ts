/**
 * Checkpoints of a dataset report (with an out dir): OUT/.netmoments-checkpoint/state.json (the
 * fingerprint of every option that changes a number) and one chunk-NNNNNN.ndjson per finished
 * chunk, each written to a temporary file and renamed. The outputs are written only at the end,
 * and the checkpoint is removed after that; a run killed at any point therefore leaves the
 * previous complete outputs, or a checkpoint that `--resume` continues.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NetmomentsError } from '../errors.js';
import { REPORT_SCHEMA, type ReportSummary, type SampleRecord } from '../report/summary.js';
import { sha256Hex, writeFileAtomic } from '../util/files.js';

export const CHECKPOINT_DIR = '.netmoments-checkpoint';
const CHECKPOINT_SCHEMA = 'netmoments.checkpoint/1';

interface CheckpointState {
  schema: typeof CHECKPOINT_SCHEMA;
  fingerprint: string;
  shard: { index: number; count: number } | null;
  chunk: number;
  chunks: number;
}

function chunkFile(ci: number): string {
  return `chunk-${String(ci).padStart(6, '0')}.ndjson`;
}

function parseChunk(text: string, ci: number, chunk: number, count: number): SampleRecord[] | undefined {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const i0 = ci * chunk;
  const want = Math.min(count, i0 + chunk) - i0;
  if (lines.length !== want) return undefined;
  try {
    const recs = lines.map((l) => JSON.parse(l) as SampleRecord);
    if (recs.some((r, t) => r.i !== i0 + t)) return undefined;
    return recs;
  } catch {
    return undefined;
  }
}

/** Read a finished report's summary.json when it matches `fingerprint` and its samples.csv. */
function completeOutputs(outDir: string, fingerprint: string, shard?: { index: number; count: number }): Record<string, string> | undefined {
  const sp = join(outDir, 'summary.json');
  const cp = join(outDir, 'samples.csv');
  if (!existsSync(sp) || !existsSync(cp)) return undefined;
  try {
    const s = JSON.parse(readFileSync(sp, 'utf8')) as ReportSummary;
    if (s.schema !== REPORT_SCHEMA || s.run?.fingerprint !== fingerprint) return undefined;
    if ((s.shard?.index ?? null) !== (shard?.index ?? null) || (s.shard?.count ?? null) !== (shard?.count ?? null)) return undefined;
    const csv = readFileSync(cp, 'utf8');
    if (sha256Hex(csv) !== s.files['samples.csv'].sha256) return undefined;
    const files: Record<string, string> = { 'samples.csv': csv, 'summary.json': readFileSync(sp, 'utf8') };
    for (const f of ['summary.md', 'records.ndjson']) if (existsSync(join(outDir, f))) files[f] = readFileSync(join(outDir, f), 'utf8');
    return files;
  } catch {
    return undefined;
  }
}

/** The run a checkpoint belongs to. */
export interface CheckpointRun {
  outDir: string;
  fingerprint: string;
  shard?: { index: number; count: number };
  /** Inputs per chunk, chunks in all, and the inputs of the data. */
  chunk: number;
  chunks: number;
  count: number;
  /** The chunks this run (shard) computes. */
  mine: number[];
  /** Continue a checkpoint of the same run (else an old one is discarded). */
  resume: boolean;
}

/** An out dir's checkpoint, opened for a run. */
export class Checkpoint {
  /** Records of the chunks an earlier run of the same options finished (empty unless resumed). */
  readonly done = new Map<number, SampleRecord[]>();

  private constructor(
    private readonly outDir: string,
    readonly dir: string,
    /** This run started the checkpoint (it was not resumed). */
    private readonly fresh: boolean,
    /** This run made the out dir. */
    private readonly madeOutDir: boolean,
  ) {}

  /**
   * Open the checkpoint of `run.outDir`: with `resume`, continue the one there (it must be of the
   * same run), or return the outputs when the run has already finished; without, discard any
   * and start a new one.
   */
  static open(run: CheckpointRun, warn: (m: string) => void): { checkpoint: Checkpoint } | { complete: Record<string, string> } {
    const { outDir, chunk, chunks, count } = run;
    const madeOutDir = !existsSync(outDir);
    if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new NetmomentsError('exists and is not a folder', { file: outDir, code: 'BAD_USAGE' });
    const ckDir = join(outDir, CHECKPOINT_DIR);
    const statePath = join(ckDir, 'state.json');
    const state: CheckpointState = { schema: CHECKPOINT_SCHEMA, fingerprint: run.fingerprint, shard: run.shard ?? null, chunk, chunks };
    let reuse = false;
    if (existsSync(statePath)) {
      let old: CheckpointState | undefined;
      try {
        old = JSON.parse(readFileSync(statePath, 'utf8')) as CheckpointState;
      } catch {
        old = undefined;
      }
      const same =
        old && old.schema === CHECKPOINT_SCHEMA && old.fingerprint === state.fingerprint && JSON.stringify(old.shard) === JSON.stringify(state.shard);
      if (run.resume) {
        if (!same) {
          throw new NetmomentsError(
            `the checkpoint here belongs to a run with other options or data (${old?.shard ? `shard ${old.shard.index}/${old.shard.count}, ` : ''}fingerprint ${old?.fingerprint?.slice(0, 12) ?? 'unreadable'}..., this run ${state.fingerprint.slice(0, 12)}...); run without --resume to start over`,
            { file: outDir, code: 'BAD_USAGE' },
          );
        }
        reuse = true;
      } else {
        warn(`discarding the checkpoint of an earlier interrupted run in ${outDir} (pass --resume to continue it instead)`);
      }
    } else if (run.resume) {
      const complete = completeOutputs(outDir, run.fingerprint, run.shard);
      if (complete) return { complete };
      warn(`no checkpoint in ${outDir}: starting from the beginning`);
    }
    const checkpoint = new Checkpoint(outDir, ckDir, !reuse, madeOutDir);
    if (reuse) {
      for (const ci of run.mine) {
        const f = join(ckDir, chunkFile(ci));
        if (!existsSync(f)) continue;
        const recs = parseChunk(readFileSync(f, 'utf8'), ci, chunk, count);
        if (recs) checkpoint.done.set(ci, recs);
      }
      for (const e of readdirSync(ckDir)) if (e.endsWith('.tmp')) rmSync(join(ckDir, e), { force: true });
    } else {
      rmSync(ckDir, { recursive: true, force: true });
      mkdirSync(ckDir, { recursive: true });
      writeFileAtomic(statePath, `${JSON.stringify(state, null, 2)}\n`);
    }
    return { checkpoint };
  }

  /** Keep a finished chunk's records. */
  save(ci: number, records: SampleRecord[]): void {
    writeFileAtomic(join(this.dir, chunkFile(ci)), records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }

  /** Remove the checkpoint once the outputs are written: state.json first, since a checkpoint without it is never resumed. */
  remove(): void {
    rmSync(join(this.dir, 'state.json'), { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * After a bad input met mid-run (an input that overflows the model): the same run fails the
   * same way under --resume, since the data are part of its fingerprint, so a checkpoint this run
   * started would only be litter. It goes, with an out dir this run made and left empty.
   */
  discardIfFresh(): void {
    if (!this.fresh) return;
    rmSync(this.dir, { recursive: true, force: true });
    if (this.madeOutDir && readdirSync(this.outDir).length === 0) rmSync(this.outDir, { recursive: true, force: true });
  }
}
