/**
 * `netmoments merge`: the unsharded report from shard folders. Each shard's outputs are checked
 * (finished, undamaged, one run, disjoint, complete) and the records rebuilt into the outputs in
 * index order, byte for byte those of an unsharded run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NetmomentsError } from '../errors.js';
import { REPORT_SCHEMA, reportFiles, type ReportHeader, type ReportSummary, type SampleRecord } from '../report/summary.js';
import { sha256Hex } from '../util/files.js';
import { CHECKPOINT_DIR } from './checkpoint.js';

/** Read one shard's outputs for `merge`. */
function readShard(dir: string): { summary: ReportSummary; records: SampleRecord[] } {
  const sp = join(dir, 'summary.json');
  if (!existsSync(dir)) throw new NetmomentsError('no such folder', { file: dir });
  if (existsSync(join(dir, CHECKPOINT_DIR)) && !existsSync(sp)) {
    throw new NetmomentsError('this shard has not finished (it holds a checkpoint); finish it with --resume before merging', { file: dir });
  }
  if (!existsSync(sp)) throw new NetmomentsError('no summary.json: not a report folder', { file: dir });
  let summary: ReportSummary;
  try {
    summary = JSON.parse(readFileSync(sp, 'utf8')) as ReportSummary;
  } catch (e) {
    throw new NetmomentsError(`is not valid JSON (${(e as Error).message})`, { file: sp });
  }
  if (summary.schema !== REPORT_SCHEMA) throw new NetmomentsError(`has schema ${JSON.stringify(summary.schema)}, expected "${REPORT_SCHEMA}"`, { file: sp });
  if (!summary.shard) throw new NetmomentsError('is the report of a whole run, not of a shard (run report with --shard I/N to make shards)', { file: sp });
  if (existsSync(join(dir, CHECKPOINT_DIR))) {
    throw new NetmomentsError('this shard has a checkpoint newer than its outputs (a later run was interrupted); finish it with --resume before merging', {
      file: dir,
    });
  }
  const rp = join(dir, 'records.ndjson');
  if (!existsSync(rp)) throw new NetmomentsError('no records.ndjson: the shard is incomplete', { file: dir });
  const text = readFileSync(rp, 'utf8');
  const csv = existsSync(join(dir, 'samples.csv')) ? readFileSync(join(dir, 'samples.csv'), 'utf8') : '';
  if (sha256Hex(csv) !== summary.files?.['samples.csv']?.sha256)
    throw new NetmomentsError('samples.csv does not match summary.json: the shard is damaged or half-written; run it again', { file: dir });
  const records: SampleRecord[] = [];
  text.split('\n').forEach((line, k) => {
    if (line.length === 0) return;
    try {
      records.push(JSON.parse(line) as SampleRecord);
    } catch {
      throw new NetmomentsError(`line ${k + 1} is not valid JSON`, { file: rp });
    }
  });
  if (records.length !== summary.inputs) throw new NetmomentsError(`holds ${records.length} records, summary.json says ${summary.inputs}`, { file: rp });
  return { summary, records };
}

/** `netmoments merge`: the unsharded report from shard folders (checked to be one run, complete, disjoint). */
export function mergeReports(dirs: string[]): { files: Record<string, string>; summary: ReportSummary; records: SampleRecord[] } {
  if (dirs.length === 0) throw new NetmomentsError('name the shard folders to merge', { code: 'BAD_USAGE' });
  const shards = dirs.map((d) => ({ dir: d, ...readShard(d) }));
  const first = shards[0];
  const N = first.summary.shard!.count;
  const seen = new Map<number, string>();
  for (const s of shards) {
    if (s.summary.run.fingerprint !== first.summary.run.fingerprint) {
      throw new NetmomentsError(
        `is a shard of another run than ${first.dir} (fingerprint ${s.summary.run.fingerprint.slice(0, 12)}... vs ${first.summary.run.fingerprint.slice(0, 12)}...): model, data or options differ`,
        { file: s.dir },
      );
    }
    if (s.summary.shard!.count !== N)
      throw new NetmomentsError(`is shard ${s.summary.shard!.index}/${s.summary.shard!.count}, ${first.dir} is one of ${N}`, { file: s.dir });
    const prev = seen.get(s.summary.shard!.index);
    if (prev !== undefined) throw new NetmomentsError(`is shard ${s.summary.shard!.index}/${N}, and so is ${prev}`, { file: s.dir });
    seen.set(s.summary.shard!.index, s.dir);
  }
  const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0)
    throw new NetmomentsError(`shard(s) ${missing.map((i) => `${i}/${N}`).join(', ')} missing: give all ${N} shard folders`, { code: 'BAD_USAGE' });
  const records = shards.flatMap((s) => s.records).sort((a, b) => a.i - b.i);
  const count = first.summary.data.count;
  if (records.length !== count || records.some((r, k) => r.i !== k)) {
    throw new NetmomentsError(`the shards hold ${records.length} records for ${count} inputs, or some inputs twice`, { file: first.dir });
  }
  const s = first.summary;
  const header: ReportHeader = {
    model: s.model,
    data: s.data,
    ...(s.method ? { method: s.method, methodReason: s.methodReason } : {}),
    ...(s.rank !== undefined ? { rank: s.rank } : {}),
    split: s.split,
    output: s.output,
    noise: s.noise,
    linearization: s.linearization,
    run: s.run,
  };
  return { ...reportFiles(header, records), records };
}
