import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, existsSync, readFileSync, statSync, readdirSync, rmSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import type { Artifact, BlobRef, StageStore } from '../engine/stage.ts';
import type { JsonValue } from '../util/hash.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';

/** Everything that went into a stage key, kept so `status` can say what changed. */
export interface KeyComponents {
  algorithm: number;
  kind: string;
  kindVersion: number | string;
  stage: string;
  seed: number;
  params: JsonValue;
  inputs: Record<string, string>;
  external: string | null;
  environment: Record<string, JsonValue>;
  sourceHash: string | null;
}

export interface StageRecord {
  key: string;
  pipeline: string;
  pipelineName: string;
  stage: string;
  components: KeyComponents;
  outputs: Record<string, Artifact>;
  /** Item keys this stage's result is made of (for gc), and per-item fingerprints (for `status` reasons). */
  items?: { keys: string[]; fingerprints: Record<string, string>; skipped: Array<{ id: string; error: string }> };
  runId: string;
  createdAt: string;
  durationMs: number;
}

export interface ItemRecord {
  key: string;
  stage: string;
  pipeline: string;
  id: string;
  output: JsonValue;
  createdAt: string;
  durationMs: number;
}

export interface RunRecord {
  id: string;
  pipeline: string;
  pipelineName: string;
  command: string;
  startedAt: string;
  finishedAt?: string;
  status: 'running' | 'succeeded' | 'failed' | 'interrupted';
  host: string;
  pid: number;
  stages: Record<
    string,
    {
      status: string;
      key?: string;
      durationMs?: number;
      items?: number;
      skipped?: Array<{ id: string; error: string }>;
      error?: string;
      /** What the stage declared about its environment (e.g. the compute backend and device) beyond voco's version. */
      environment?: Record<string, JsonValue>;
    }
  >;
  config?: JsonValue;
  eventLog: string;
}

export interface LockOwner {
  pid: number;
  host: string;
  procStart: string | null;
  token: string;
  since: string;
  command: string;
}

interface StatEntry {
  size: number;
  mtimeNs: string;
  ino: number;
  hash: string;
}

/** Thrown when stored data fails its checksum: never returned as valid. */
export class CorruptRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptRecordError';
  }
}

/**
 * The cache directory: one LMDB environment (stage, item and run records, stat cache, run lock)
 * plus content-addressed blob files beside it. Every write is atomic: an LMDB transaction, or a
 * temp file fsynced and renamed into place before any record refers to it.
 */
export class Store implements StageStore {
  readonly root: string;
  private readonly env: RootDatabase;
  readonly stages: Database<StageRecord, string>;
  readonly items: Database<ItemRecord, string>;
  readonly runs: Database<RunRecord, string>;
  /** `${pipeline}\u0000${stage}` → key of the latest record, for "what changed" reasons. */
  private readonly latest: Database<string, string>;
  private readonly stat: Database<StatEntry, string>;
  private readonly meta: Database<unknown, string>;
  /** Pipelines that have used this cache: gc reads their lockfiles. */
  readonly pipelines: Database<{ file: string; lastRun: string }, string>;

  private constructor(root: string) {
    this.root = resolve(root);
    mkdirSync(join(this.root, 'blobs'), { recursive: true });
    mkdirSync(join(this.root, 'tmp'), { recursive: true });
    mkdirSync(join(this.root, 'runs'), { recursive: true });
    this.env = openLmdb({ path: join(this.root, 'voco.lmdb'), maxDbs: 12, mapSize: 2 ** 34, encoding: 'msgpack' });
    this.stages = this.env.openDB({ name: 'stages' });
    this.items = this.env.openDB({ name: 'items' });
    this.runs = this.env.openDB({ name: 'runs' });
    this.latest = this.env.openDB({ name: 'latest' });
    this.stat = this.env.openDB({ name: 'stat' });
    this.meta = this.env.openDB({ name: 'meta' });
    this.pipelines = this.env.openDB({ name: 'pipelines' });
  }

  static open(root: string): Store {
    return new Store(root);
  }

  async close(): Promise<void> {
    await this.env.close();
  }

  // ---- stage and item records -------------------------------------------------------------

  getStage(key: string): StageRecord | undefined {
    return this.stages.get(key);
  }

  async putStage(record: StageRecord): Promise<void> {
    await this.env.transaction(() => {
      this.stages.put(record.key, record);
      this.latest.put(`${record.pipeline}\u0000${record.stage}`, record.key);
      this.pipelines.put(record.pipeline, { file: record.pipeline, lastRun: record.createdAt });
    });
  }

  latestStageRecord(pipeline: string, stage: string): StageRecord | undefined {
    const key = this.latest.get(`${pipeline}\u0000${stage}`);
    return key ? this.stages.get(key) : undefined;
  }

  getItem(key: string): ItemRecord | undefined {
    return this.items.get(key);
  }

  /** Resolves once the item is durably committed. */
  async putItem(record: ItemRecord): Promise<void> {
    await this.items.put(record.key, record);
  }

  // ---- run records -----------------------------------------------------------------------------

  async putRun(run: RunRecord): Promise<void> {
    await this.runs.put(run.id, run);
  }

  listRuns(): RunRecord[] {
    return [...this.runs.getRange()].map(({ value }) => value).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  async registerPipeline(file: string): Promise<void> {
    await this.pipelines.put(file, { file, lastRun: new Date().toISOString() });
  }

  // ---- blobs ------------------------------------------------------------------------------------

  blobPath(ref: BlobRef | string): string {
    const hash = typeof ref === 'string' ? ref : ref.$blob;
    const hex = hash.replace(/^sha256:/, '');
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a blob hash: ${hash}`);
    return join(this.root, 'blobs', hex.slice(0, 2), hex);
  }

  async putBlob(bytes: Uint8Array, meta: Record<string, JsonValue> = {}): Promise<BlobRef> {
    const hash = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const ref: BlobRef = { ...meta, $blob: hash, size: bytes.byteLength };
    const dest = this.blobPath(hash);
    if (existsSync(dest) && statSync(dest).size === bytes.byteLength) return ref;
    mkdirSync(join(dest, '..'), { recursive: true });
    await writeFileAtomic(dest, bytes, { tmpDir: join(this.root, 'tmp') });
    return ref;
  }

  async getBlob(ref: BlobRef | string, opts: { verify?: boolean } = {}): Promise<Uint8Array> {
    const hash = typeof ref === 'string' ? ref : ref.$blob;
    const path = this.blobPath(hash);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new CorruptRecordError(`blob ${hash} is missing from the cache (${path}): ${(e as Error).message}`);
    }
    if (opts.verify !== false) {
      const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (actual !== hash) throw new CorruptRecordError(`blob ${path} is corrupt: its content hash is ${actual}`);
    }
    return bytes;
  }

  /** Every blob file on disk: hash → size. */
  listBlobs(): Map<string, number> {
    const out = new Map<string, number>();
    const dir = join(this.root, 'blobs');
    for (const shard of existsSync(dir) ? readdirSync(dir) : []) {
      for (const name of readdirSync(join(dir, shard))) out.set(`sha256:${name}`, statSync(join(dir, shard, name)).size);
    }
    return out;
  }

  async deleteBlob(hash: string): Promise<void> {
    await rm(this.blobPath(hash), { force: true });
  }

  /** Removes temp files left by crashed writers. */
  cleanTmp(): void {
    const dir = join(this.root, 'tmp');
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      // Temp names carry their writer's pid as a dot-separated, all-digit segment.
      const pid = Number(name.split('.').find((part) => /^\d+$/.test(part)));
      if (!Number.isFinite(pid) || !processAlive(pid)) rmSync(join(dir, name), { recursive: true, force: true });
    }
  }

  // ---- file hashing with a stat cache ---------------------------------------------------------

  async hashFile(path: string): Promise<string> {
    const abs = resolve(path);
    const st = await stat(abs, { bigint: true });
    const cached = this.stat.get(abs);
    if (cached && cached.size === Number(st.size) && cached.mtimeNs === String(st.mtimeNs) && cached.ino === Number(st.ino)) {
      return cached.hash;
    }
    const hash = await new Promise<string>((ok, fail) => {
      const h = createHash('sha256');
      createReadStream(abs)
        .on('data', (chunk) => h.update(chunk))
        .on('error', fail)
        .on('end', () => ok(`sha256:${h.digest('hex')}`));
    });
    await this.stat.put(abs, { size: Number(st.size), mtimeNs: String(st.mtimeNs), ino: Number(st.ino), hash });
    return hash;
  }

  // ---- run lock ---------------------------------------------------------------------------------

  /**
   * Takes the cache's run lock. LMDB serialises write transactions across processes, so the
   * check-and-set below is atomic: two processes can never both take it, and a lock whose owner
   * died (pid gone, or pid reused by another process) is taken over safely.
   */
  tryAcquireRunLock(command: string): { acquired: true; owner: LockOwner } | { acquired: false; holder: LockOwner } {
    const me: LockOwner = {
      pid: process.pid,
      host: hostname(),
      procStart: procStartTime(process.pid),
      token: randomUUID(),
      since: new Date().toISOString(),
      command,
    };
    return this.meta.transactionSync(() => {
      const current = this.meta.get('run-lock') as LockOwner | undefined;
      if (current && ownerAlive(current)) return { acquired: false as const, holder: current };
      this.meta.putSync('run-lock', me);
      return { acquired: true as const, owner: me };
    });
  }

  releaseRunLock(owner: LockOwner): void {
    this.meta.transactionSync(() => {
      const current = this.meta.get('run-lock') as LockOwner | undefined;
      if (current?.token === owner.token) this.meta.removeSync('run-lock');
    });
  }

  runLockHolder(): LockOwner | undefined {
    const current = this.meta.get('run-lock') as LockOwner | undefined;
    return current && ownerAlive(current) ? current : undefined;
  }

  // ---- maintenance -------------------------------------------------------------------------------

  async removeStage(key: string): Promise<void> {
    await this.stages.remove(key);
  }

  async removeItem(key: string): Promise<void> {
    await this.items.remove(key);
  }

  /** Bytes used by the LMDB environment on disk. */
  lmdbBytes(): number {
    const dir = join(this.root, 'voco.lmdb');
    if (!existsSync(dir)) return 0;
    const st = statSync(dir);
    if (st.isFile()) return st.size;
    return readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Linux process start time (clock ticks since boot), to tell a live owner from a reused pid. */
export function procStartTime(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function ownerAlive(owner: LockOwner): boolean {
  // On another host (a shared filesystem) we cannot see the process: treat it as alive.
  if (owner.host !== hostname()) return true;
  if (!processAlive(owner.pid)) return false;
  if (owner.procStart !== null) {
    const now = procStartTime(owner.pid);
    if (now !== null && now !== owner.procStart) return false;
  }
  return true;
}
