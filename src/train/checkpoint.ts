/**
 * Training checkpoints in a stage's `checkpointDir`, crash-safe at every instant.
 *
 * Layout:
 *   ckpt-0000000120/            one committed checkpoint (step 120)
 *     tensors.safetensors       every named float32 tensor (weights, optimiser state)
 *     state.json                step, training state, sha256 + size of the tensor file
 *   ckpt-0000000120.1/          a later save of the same step (generation 1) supersedes it
 *   ckpt-0000000130.tmp-4242/   a save in progress (or torn by a crash): never read
 *   latest.json                 pointer to the newest committed checkpoint
 *
 * A save writes and fsyncs both files inside a temp directory, renames it to its final name
 * (atomic) and only then moves `latest.json`. The loader treats `latest.json` as a hint only: it
 * scans the committed directories newest first and returns the first one that verifies, so a crash
 * between the rename and the pointer update loses nothing, and a damaged checkpoint falls back to
 * the previous one.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { JsonValue } from '../util/hash.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { parseSafetensors, serializeSafetensors } from '../models/weights/safetensors.ts';
import { formatShape, numel, type StateDict } from '../models/weights/state-dict.ts';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface CheckpointTensor {
  shape: number[];
  data: Float32Array;
}

/** The training state saved beside the tensors. Must be JSON (NaN and -0 do not survive JSON). */
export interface CheckpointState {
  /** Epoch the next step belongs to. */
  epoch: number;
  /** Index of the next batch within that epoch. */
  batchInEpoch: number;
  /** Generator states by name (e.g. from `Rng.getState()`). */
  rng: Record<string, number[]>;
  /** Number of metrics records logged up to and including this step. */
  metricsCount: number;
  /** The run's stage key (or any id of its params): a checkpoint is resumed only when it matches. */
  fingerprint: string;
  extra?: JsonValue;
}

export interface SaveCheckpointInput {
  step: number;
  tensors: ReadonlyMap<string, CheckpointTensor> | Readonly<Record<string, CheckpointTensor>>;
  state: CheckpointState;
}

export interface Checkpoint {
  step: number;
  /** Tensors in name order. */
  tensors: Map<string, CheckpointTensor>;
  state: CheckpointState;
  /** The checkpoint's directory. */
  path: string;
  savedAt: string;
}

export interface CheckpointInfo {
  step: number;
  /** 0 for the first save of a step, then 1, 2… for re-saves of the same step. */
  generation: number;
  name: string;
  path: string;
}

export interface LoadCheckpointResult {
  checkpoint: Checkpoint | null;
  /** One line per checkpoint skipped (incomplete, corrupt, other fingerprint) or pointer problem. */
  warnings: string[];
}

const FORMAT = 'voco-checkpoint';
const VERSION = 1;
const TENSORS_FILE = 'tensors.safetensors';
const STATE_FILE = 'state.json';
const LATEST_FILE = 'latest.json';
const STEP_DIGITS = 10;
const COMMITTED = /^ckpt-(\d+)(?:\.(\d+))?$/;
const IN_PROGRESS = /^ckpt-(\d+)\.tmp-(\d+)$/;
/** Big files are written in slices: one write call per multi-GB buffer is refused by some platforms. */
const WRITE_SLICE = 64 << 20;

interface StateFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  step: number;
  savedAt: string;
  tensors: { file: string; bytes: number; sha256: string };
  state: CheckpointState;
}

function checkpointName(step: number, generation: number): string {
  const base = `ckpt-${String(step).padStart(STEP_DIGITS, '0')}`;
  return generation === 0 ? base : `${base}.${generation}`;
}

/** Committed checkpoint directories, oldest first (by step, then generation). No verification. */
export async function listCheckpoints(dir: string): Promise<CheckpointInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: CheckpointInfo[] = [];
  for (const name of names) {
    const m = COMMITTED.exec(name);
    if (!m) continue;
    out.push({ step: Number(m[1]), generation: m[2] === undefined ? 0 : Number(m[2]), name, path: join(dir, name) });
  }
  return out.sort((a, b) => a.step - b.step || a.generation - b.generation);
}

function validateInput(dir: string, { step, tensors, state }: SaveCheckpointInput): StateDict {
  const fail = (msg: string): never => {
    throw new CheckpointError(`saving checkpoint at step ${step} in ${dir}: ${msg}`);
  };
  if (!Number.isSafeInteger(step) || step < 0) fail(`step must be a non-negative integer, got ${String(step)}`);
  if (typeof state?.fingerprint !== 'string' || state.fingerprint === '') fail('state.fingerprint must be a non-empty string');
  for (const k of ['epoch', 'batchInEpoch', 'metricsCount'] as const) {
    if (!Number.isSafeInteger(state[k]) || state[k] < 0) fail(`state.${k} must be a non-negative integer, got ${String(state[k])}`);
  }
  if (typeof state.rng !== 'object' || state.rng === null) fail('state.rng must be an object of number arrays');
  for (const [name, s] of Object.entries(state.rng)) {
    if (!Array.isArray(s) || !s.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      fail(`state.rng.${name} must be an array of finite numbers`);
    }
  }
  const dict: StateDict = new Map();
  const entries: Array<[string, CheckpointTensor]> =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, CheckpointTensor>).entries()] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (!(t?.data instanceof Float32Array)) fail(`tensor ${JSON.stringify(name)}: data must be a Float32Array`);
    if (!Array.isArray(t.shape) || !t.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(`tensor ${JSON.stringify(name)}: bad shape ${JSON.stringify(t.shape)}`);
    }
    if (numel(t.shape) !== t.data.length) {
      fail(`tensor ${JSON.stringify(name)}: shape ${formatShape(t.shape)} needs ${numel(t.shape)} values, data has ${t.data.length}`);
    }
    dict.set(name, { dtype: 'float32', shape: [...t.shape], data: t.data });
  }
  return dict;
}

async function writeSynced(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const fh = await open(path, 'wx');
  try {
    for (let at = 0; at < bytes.length; ) {
      const { bytesWritten } = await fh.write(bytes, at, Math.min(WRITE_SLICE, bytes.length - at));
      at += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a directory's entries (a rename, a new file) durable. Not supported everywhere: ignored then. */
async function syncDir(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch {
    // e.g. Windows refuses to open or fsync directories.
  } finally {
    await fh?.close();
  }
}

/**
 * Saves a checkpoint and moves `latest.json` to it. Returns the checkpoint's directory. A re-save of
 * a step already present gets the next generation and replaces the earlier one.
 */
export async function saveCheckpoint(dir: string, input: SaveCheckpointInput): Promise<string> {
  const dict = validateInput(dir, input);
  const { step } = input;
  const bytes = serializeSafetensors(dict);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const stateFile: StateFile = {
    format: FORMAT,
    version: VERSION,
    step,
    savedAt: new Date().toISOString(),
    tensors: { file: TENSORS_FILE, bytes: bytes.length, sha256 },
    state: input.state,
  };
  const stateText = `${JSON.stringify(stateFile, null, 2)}\n`;

  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${checkpointName(step, 0)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true }); // left by an earlier failed save in this process
  let final: string;
  let sameStep: CheckpointInfo[];
  try {
    await mkdir(tmp);
    await writeSynced(join(tmp, TENSORS_FILE), bytes);
    await writeSynced(join(tmp, STATE_FILE), stateText);
    await syncDir(tmp);
    sameStep = (await listCheckpoints(dir)).filter((c) => c.step === step);
    const generation = sameStep.length ? Math.max(...sameStep.map((c) => c.generation)) + 1 : 0;
    final = join(dir, checkpointName(step, generation));
    await rename(tmp, final);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new CheckpointError(`saving checkpoint at step ${step} in ${dir}: ${(e as Error).message}`);
  }
  await syncDir(dir);
  await writeFileAtomic(join(dir, LATEST_FILE), `${JSON.stringify({ step, name: basename(final) })}\n`);
  await syncDir(dir);
  for (const old of sameStep) await rm(old.path, { recursive: true, force: true });
  return final;
}

async function readAll(path: string): Promise<Uint8Array> {
  // readFile refuses files over 2 GiB; optimiser state for a large model can exceed that.
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const out = new Uint8Array(size);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await fh.read(out, at, Math.min(WRITE_SLICE, size - at), at);
      if (bytesRead === 0) throw new Error(`${path} shrank while being read`);
      at += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}

async function readStateFile(path: string, expectedStep?: number): Promise<StateFile> {
  const file = join(path, STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${file} is missing`);
    throw e;
  }
  let s: StateFile;
  try {
    s = JSON.parse(text) as StateFile;
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  if (s?.format !== FORMAT || s.version !== VERSION) {
    throw new CheckpointError(`${file} is not a ${FORMAT} v${VERSION} state file (format ${JSON.stringify(s?.format)}, version ${JSON.stringify(s?.version)})`);
  }
  if (expectedStep !== undefined && s.step !== expectedStep) {
    throw new CheckpointError(`${file} says step ${s.step} but its directory name says step ${expectedStep}`);
  }
  if (typeof s.tensors?.sha256 !== 'string' || !Number.isSafeInteger(s.tensors.bytes) || typeof s.state?.fingerprint !== 'string') {
    throw new CheckpointError(`${file} lacks the tensor checksum, size or fingerprint`);
  }
  return s;
}

function checkFingerprint(path: string, s: StateFile, fingerprint: string | undefined): void {
  if (fingerprint !== undefined && s.state.fingerprint !== fingerprint) {
    throw new CheckpointError(`${join(path, STATE_FILE)} belongs to a run with different params (fingerprint ${s.state.fingerprint}, this run ${fingerprint})`);
  }
}

async function sha256OfFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * Checks one checkpoint directory's state file and the tensor file's size and sha256, streaming
 * (without holding the tensors in memory). Throws a CheckpointError naming the file and the problem.
 */
export async function verifyCheckpoint(path: string, opts: { fingerprint?: string; step?: number } = {}): Promise<void> {
  const s = await readStateFile(path, opts.step);
  checkFingerprint(path, s, opts.fingerprint);
  const file = join(path, s.tensors.file);
  let got: { sha256: string; bytes: number };
  try {
    got = await sha256OfFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${file} is missing`);
    throw e;
  }
  if (got.bytes !== s.tensors.bytes) throw new CheckpointError(`${file} has ${got.bytes} bytes, the state file recorded ${s.tensors.bytes}: truncated?`);
  if (got.sha256 !== s.tensors.sha256) throw new CheckpointError(`${file} fails its checksum (sha256 ${got.sha256}, recorded ${s.tensors.sha256})`);
}

/**
 * Reads and fully verifies one checkpoint directory (fingerprint, tensor file size and sha256,
 * safetensors structure, float32 dtypes). Throws a CheckpointError naming the file and the problem.
 */
export async function readCheckpoint(path: string, opts: { fingerprint?: string; step?: number } = {}): Promise<Checkpoint> {
  const s = await readStateFile(path, opts.step);
  checkFingerprint(path, s, opts.fingerprint);
  const file = join(path, s.tensors.file);
  let bytes: Uint8Array;
  try {
    bytes = await readAll(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${file} is missing`);
    throw e;
  }
  if (bytes.length !== s.tensors.bytes) {
    throw new CheckpointError(`${file} has ${bytes.length} bytes, the state file recorded ${s.tensors.bytes}: truncated?`);
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== s.tensors.sha256) throw new CheckpointError(`${file} fails its checksum (sha256 ${sha}, recorded ${s.tensors.sha256})`);
  let dict: StateDict;
  try {
    dict = parseSafetensors(bytes, file).dict;
  } catch (e) {
    throw new CheckpointError((e as Error).message);
  }
  const tensors = new Map<string, CheckpointTensor>();
  for (const [name, t] of dict) {
    if (t.dtype !== 'float32' || !(t.data instanceof Float32Array)) throw new CheckpointError(`${file}: tensor ${JSON.stringify(name)} is ${t.dtype}, expected float32`);
    tensors.set(name, { shape: t.shape, data: t.data });
  }
  return { step: s.step, tensors, state: s.state, path, savedAt: s.savedAt };
}

/** Problems with `latest.json` worth reporting. A missing pointer, or one naming an older checkpoint than
 * the newest valid one, is the normal result of a crash just before the pointer update. */
async function pointerWarnings(dir: string, committed: CheckpointInfo[]): Promise<string[]> {
  const file = join(dir, LATEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  let name: unknown;
  try {
    name = (JSON.parse(text) as { name?: unknown } | null)?.name;
  } catch {
    return [`${file} is not valid JSON; found checkpoints by scanning ${dir}`];
  }
  if (typeof name !== 'string' || !COMMITTED.test(name)) return [`${file} does not name a checkpoint directory; found checkpoints by scanning ${dir}`];
  if (!committed.some((c) => c.name === name)) return [`${file} points to ${name}, which does not exist; found checkpoints by scanning ${dir}`];
  return [];
}

/**
 * The newest checkpoint in `dir` that verifies and matches `fingerprint`, or null. Checkpoints
 * skipped on the way (torn, corrupt, other params) are reported in `warnings`.
 */
export async function loadLatestCheckpoint(dir: string, opts: { fingerprint: string }): Promise<LoadCheckpointResult> {
  const warnings: string[] = [];
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const name of names) {
    const m = IN_PROGRESS.exec(name);
    if (m && Number(m[2]) !== process.pid) warnings.push(`${join(dir, name)} is an incomplete save (interrupted?); ignored`);
  }
  const committed = await listCheckpoints(dir);
  warnings.push(...(await pointerWarnings(dir, committed)));
  let checkpoint: Checkpoint | null = null;
  for (const info of [...committed].reverse()) {
    try {
      checkpoint = await readCheckpoint(info.path, { fingerprint: opts.fingerprint, step: info.step });
      break;
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      warnings.push(`skipped checkpoint ${info.name}: ${e.message}`);
    }
  }
  return { checkpoint, warnings };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes all but the `keepLast` newest committed checkpoints, and saves left behind by dead
 * processes. The newest checkpoint that verifies (and matches `fingerprint`, when given) is always
 * kept, even when newer, damaged ones exist. Returns the deleted paths.
 */
export async function pruneCheckpoints(dir: string, keepLast: number, opts: { fingerprint?: string } = {}): Promise<string[]> {
  if (!Number.isSafeInteger(keepLast) || keepLast < 0) {
    throw new CheckpointError(`pruning checkpoints in ${dir}: keepLast must be a non-negative integer, got ${String(keepLast)}`);
  }
  const committed = (await listCheckpoints(dir)).reverse();
  const keep = new Set(committed.slice(0, keepLast).map((c) => c.name));
  for (const info of committed) {
    try {
      await verifyCheckpoint(info.path, { step: info.step, fingerprint: opts.fingerprint });
      keep.add(info.name);
      break;
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
    }
  }
  const deleted: string[] = [];
  for (const info of committed) {
    if (keep.has(info.name)) continue;
    await rm(info.path, { recursive: true, force: true });
    deleted.push(info.path);
  }
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = IN_PROGRESS.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || pidAlive(pid)) continue;
    const path = join(dir, name);
    if ((await stat(path).catch(() => null))?.isDirectory()) {
      await rm(path, { recursive: true, force: true });
      deleted.push(path);
    }
  }
  return deleted;
}
