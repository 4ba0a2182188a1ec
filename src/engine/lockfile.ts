import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { parse, stringify } from 'yaml';
import type { KeyComponents, StageRecord } from '../store/store.ts';
import type { JsonValue } from '../util/hash.ts';

/** One stage in the lockfile: its key, what went into it, and what came out. */
export interface LockEntry {
  key: string;
  kind: string;
  kind_version: number | string;
  params: JsonValue;
  inputs: Record<string, string>;
  external: string | null;
  environment: Record<string, JsonValue>;
  source?: string;
  outputs: Record<string, string>;
  items?: number;
}

export interface Lockfile {
  version: 1;
  pipeline: string;
  seed: number;
  stages: Record<string, LockEntry>;
}

const HEADER =
  '# voco lockfile: written by `voco run`, checked by `voco status --check`.\n' +
  '# Commit it with the pipeline. Do not edit by hand; re-run the pipeline instead.\n';

/** `pipelines/demo.yaml` → `pipelines/demo.lock.yaml`. */
export function lockfilePath(pipelineFile: string): string {
  return pipelineFile.replace(/\.ya?ml$/, '') + '.lock.yaml';
}

export function readLockfile(pipelineFile: string): Lockfile | undefined {
  const path = lockfilePath(pipelineFile);
  if (!existsSync(path)) return undefined;
  const data = parse(readFileSync(path, 'utf8')) as Lockfile | null;
  if (!data || data.version !== 1 || typeof data.stages !== 'object') {
    throw new Error(`${path}: not a voco lockfile (expected version: 1 and stages); delete it and re-run to regenerate`);
  }
  return data;
}

export function lockEntryFromRecord(record: StageRecord): LockEntry {
  const c = record.components;
  const entry: LockEntry = {
    key: record.key,
    kind: c.kind,
    kind_version: c.kindVersion,
    params: c.params,
    inputs: c.inputs,
    external: c.external,
    environment: c.environment,
    outputs: Object.fromEntries(Object.entries(record.outputs).map(([port, a]) => [port, a.hash])),
  };
  if (c.sourceHash) entry.source = c.sourceHash;
  if (record.items) entry.items = record.items.keys.length;
  return entry;
}

export function componentsFromLock(entry: LockEntry, stage: string, seed: number, algorithm: number): KeyComponents {
  return {
    algorithm,
    kind: entry.kind,
    kindVersion: entry.kind_version,
    stage,
    seed,
    params: entry.params,
    inputs: entry.inputs ?? {},
    external: entry.external ?? null,
    environment: entry.environment ?? {},
    sourceHash: entry.source ?? null,
  };
}

/** Sorts object keys recursively so the file is stable line for line (fewer merge conflicts). */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

export function renderLockfile(lock: Lockfile): string {
  const stages = Object.fromEntries(Object.keys(lock.stages).sort().map((k) => [k, sortKeys(lock.stages[k])]));
  return HEADER + stringify({ version: 1, pipeline: lock.pipeline, seed: lock.seed, stages }, { lineWidth: 0 });
}

/** Writes the lockfile atomically (temp file + rename), leaving it untouched when nothing changed. */
export async function writeLockfile(pipelineFile: string, lock: Lockfile): Promise<boolean> {
  const path = lockfilePath(pipelineFile);
  const text = renderLockfile(lock);
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return false;
  await writeFileAtomic(path, text);
  return true;
}
