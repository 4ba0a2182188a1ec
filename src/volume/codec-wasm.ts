/**
 * WebAssembly pbp32 decode kernel: the driver of `src/volume/wasm/pbp32.wasm`.
 *
 * The kernel is AssemblyScript (`wasm/pbp32.ts`, SIMD), built by `npm run build:wasm` into
 * `src/volume/wasm/pbp32.wasm`; rebuild it after editing the source. It decodes exactly what the
 * JavaScript decoder in `codec.ts` decodes, bit for bit (test/volume/codec-wasm.test.ts compares
 * both on the real CTs, on edge cases and on corrupt and crafted streams), 4–5× faster. `codec.ts` uses it whenever it loads,
 * unless `VOCO_CODEC_WASM=0` (read at every decode) forces the JavaScript decoder.
 *
 * Memory: one `WebAssembly.Memory` per {@link Pbp32Kernel} (one per thread by default), shared so
 * that growing it never detaches a view. Layout from the module's heap base: unpack tables, an
 * optional output region (decode buffers from {@link createDecodeBuffer}, written in place), then
 * per record the segment table, three plane buffers, the payload copy and a small staging area.
 * Decoding into an ordinary array goes through the staging area a few planes at a time (≈ 256 KiB,
 * cache-resident) and is copied out; a decode buffer skips that copy.
 *
 * Errors: the kernel never traps on a corrupt stream; it returns a code, and the caller re-runs
 * the JavaScript decoder on the record, which throws the precise `CacheRecordError`.
 *
 * Both cores: segments of 32 planes decode independently, so {@link decodeSegmentsShared} lets
 * several threads claim segments from a shared counter and write into one SharedArrayBuffer
 * output; `decodeVolumeParallel` in `codec.ts` runs it on this thread plus worker threads (kept,
 * started on first use through src/util/worker-entry.js, never keeping the process alive). Into a
 * decode buffer the workers attach their own kernel instance to the buffer's memory and decode
 * the record loaded there in place ({@link decodeSegmentsAttached}); otherwise each worker copies
 * the record into its own kernel and its planes out.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { PbpLayout } from './codec.ts';

const WASM_URL = new URL('./wasm/pbp32.wasm', import.meta.url);
const PAGE = 65536;
/** The module declares its imported memory with this maximum (4 GiB). */
const MAX_PAGES = 65536;
/** Bytes of zero padding after the payload: the SIMD unpacker reads up to 16 bytes past a block. */
const PAYLOAD_PAD = 64;
/** Target size of the staging area (a few planes; stays in L2). */
const STAGE_BYTES = 256 * 1024;
/** Planes per segment and voxels per block the kernel is written for (codec.ts checks records against the same). */
const KERNEL_SEGMENT_PLANES = 32;
const KERNEL_BLOCK_SIZE = 32;

interface KernelExports {
  heapBase(): number;
  tableBytes(): number;
  init(tablePtr: number): void;
  useTables(tablePtr: number): void;
  setup(
    hdr: number,
    bmp: number,
    meta: number,
    metaBytes: number,
    words: number,
    wordCount: number,
    exc: number,
    excWordCount: number,
    seg: number,
    segmentPlanes: number,
    planes: number,
    planeVoxels: number,
    stride: number,
    bufs: number,
  ): void;
  seek(segment: number): number;
  restart(): void;
  decode(from: number, to: number, out: number, scale: number, offset: number, mode: number): number;
}

let compiled: WebAssembly.Module | null | undefined;
let loadError = '';

function wasmModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(readFileSync(WASM_URL));
    } catch (e) {
      compiled = null;
      loadError = (e as Error).message;
    }
  }
  return compiled;
}

/** Whether decodes use the WebAssembly kernel now, and if not why. */
export function wasmStatus(): { enabled: boolean; reason?: string } {
  if (process.env.VOCO_CODEC_WASM === '0') return { enabled: false, reason: 'VOCO_CODEC_WASM=0' };
  if (!wasmModule()) return { enabled: false, reason: `pbp32.wasm did not load: ${loadError}` };
  return { enabled: true };
}

export function wasmEnabled(): boolean {
  return process.env.VOCO_CODEC_WASM !== '0' && wasmModule() !== null;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** A record's pbp32 streams as the kernel needs them. */
export interface PbpRecord {
  payload: Uint8Array;
  layout: PbpLayout;
  /** Bytes before the packed words (block headers, exception bitmap and metadata, padding). */
  headerBytes: number;
}

/** Output of a decode: float32 values (mode 0) or the low 16 bits of the levels (mode 1). */
export type KernelOutput = Float32Array | Uint16Array;

/**
 * One instance of the kernel with its own memory. Not thread-safe (one per thread); records are
 * decoded with {@link load} then {@link run} over segment ranges.
 */
export class Pbp32Kernel {
  readonly memory: WebAssembly.Memory;
  private readonly x: KernelExports;
  /** Start of the optional output region. */
  readonly outputPtr: number;
  readonly outputBytes: number;
  private readonly scratch: number;
  private readonly tab: number;
  private loaded: { record: PbpRecord; setup: SetupArgs; stage: number; stageBytes: number; helperBufs: number[] } | undefined;

  constructor(opts: { outputBytes?: number } = {}) {
    const mod = wasmModule();
    if (!mod) throw new Error(`voco codec: pbp32.wasm did not load: ${loadError}`);
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    const instance = new WebAssembly.Instance(mod, { env: { memory: this.memory } });
    this.x = instance.exports as unknown as KernelExports;
    this.outputBytes = opts.outputBytes ?? 0;
    this.outputPtr = align(this.x.heapBase(), 64);
    this.tab = align(this.outputPtr + this.outputBytes, 64);
    this.scratch = align(this.tab + this.x.tableBytes(), 64);
    this.ensure(this.scratch);
    this.x.init(this.tab);
  }

  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) throw new RangeError(`voco codec: a record needs ${bytes} bytes of wasm memory, more than 4 GiB`);
    this.memory.grow(pages);
  }

  /**
   * Copies a record's streams into the kernel's memory and resets it to plane 0. Returns false
   * when the layout has values the kernel cannot take (the JavaScript decoder then decides).
   * `helpers`: also reserve plane buffers for that many other threads decoding the record from
   * this memory ({@link attachment}).
   */
  load(record: PbpRecord, mode: 0 | 1, helpers = 0): boolean {
    const { payload, layout: L, headerBytes } = record;
    const segments = Math.ceil(L.planes / KERNEL_SEGMENT_PLANES);
    const tables = [L.segmentWords, L.segmentExceptionBlocks, L.segmentExceptionBits];
    const int31 = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 31;
    if (L.blockSize !== KERNEL_BLOCK_SIZE || L.segmentPlanes !== KERNEL_SEGMENT_PLANES) return false;
    if (!tables.every((t) => Array.isArray(t) && t.length === segments && t.every(int31))) return false;
    if (!(L.exceptionWords < 2 ** 26 && L.words < 2 ** 29 && L.planeVoxels * 4 < 2 ** 31)) return false;
    const YZ = L.planeVoxels;
    const esize = mode === 0 ? 4 : 2;
    const seg = this.scratch;
    const bufs = align(seg + 12 * segments, 64);
    const pay = align(bufs + 3 * (YZ + 32) * 4, 64);
    const stage = align(pay + payload.length + PAYLOAD_PAD, 64);
    const stagePlanes = Math.max(1, Math.floor(STAGE_BYTES / (YZ * esize)));
    const stageBytes = stagePlanes * YZ * esize;
    const helperBufs = Array.from({ length: helpers }, (_, i) => align(stage + stageBytes, 64) + i * align(3 * (YZ + 32) * 4, 64));
    this.ensure(align(stage + stageBytes, 64) + helpers * align(3 * (YZ + 32) * 4, 64));
    const buf = this.memory.buffer;
    const t = new Int32Array(buf, seg, 3 * segments);
    for (let s = 0; s < segments; s++) {
      t[3 * s] = L.segmentWords[s]!;
      t[3 * s + 1] = L.segmentExceptionBlocks[s]!;
      t[3 * s + 2] = L.segmentExceptionBits[s]!;
    }
    const u8 = new Uint8Array(buf);
    u8.set(payload, pay);
    u8.fill(0, pay + payload.length, pay + payload.length + PAYLOAD_PAD);
    const bitmapBytes = (L.blocks + 7) >>> 3;
    const setup: SetupArgs = [
      pay,
      pay + L.blocks,
      pay + L.blocks + bitmapBytes,
      2 * L.exceptionBlocks,
      pay + headerBytes,
      L.words,
      pay + headerBytes + 4 * L.words,
      L.exceptionWords,
      seg,
      KERNEL_SEGMENT_PLANES,
      L.planes,
      YZ,
      L.stride,
      bufs,
    ];
    this.x.setup(...setup);
    this.loaded = { record, setup, stage, stageBytes, helperBufs };
    return true;
  }

  /**
   * What another thread needs to decode segments of the loaded record from this (shared) memory
   * straight into this kernel's output region, with the `helper`-th reserved plane buffers.
   */
  attachment(helper: number, scale: number, offset: number, mode: 0 | 1): KernelAttachment {
    const ld = this.loaded;
    if (!ld || helper >= ld.helperBufs.length) throw new Error('Pbp32Kernel.attachment: no record loaded with that many helpers');
    const setup = ld.setup.slice() as SetupArgs;
    setup[13] = ld.helperBufs[helper]!;
    return { memory: this.memory, tab: this.tab, setup, out: this.outputPtr, scale, offset, mode };
  }

  /**
   * Decodes segments [s0, s1) of the loaded record into `out` (the whole volume; only those
   * segments' planes are written). `out` is written in place when it lies in this kernel's output
   * region, else through the staging area. Returns 0 or a kernel error code.
   */
  run(s0: number, s1: number, out: KernelOutput, scale: number, offset: number): number {
    const ld = this.loaded;
    if (!ld) throw new Error('Pbp32Kernel.run: no record loaded');
    const L = ld.record.layout;
    const YZ = L.planeVoxels;
    const mode = out instanceof Float32Array ? 0 : 1;
    const first = s0 * KERNEL_SEGMENT_PLANES;
    const last = Math.min(s1 * KERNEL_SEGMENT_PLANES, L.planes);
    if (first >= last) return 0;
    if (s0 > 0) {
      const rc = this.x.seek(s0);
      if (rc !== 0) return rc;
    } else {
      this.x.restart();
    }
    if (this.owns(out)) {
      return this.x.decode(first, last, out.byteOffset + first * YZ * out.BYTES_PER_ELEMENT, scale, offset, mode);
    }
    const stagePlanes = Math.floor(ld.stageBytes / (YZ * out.BYTES_PER_ELEMENT));
    const staged =
      mode === 0 ? new Float32Array(this.memory.buffer, ld.stage, stagePlanes * YZ) : new Uint16Array(this.memory.buffer, ld.stage, stagePlanes * YZ);
    for (let p = first; p < last; p += stagePlanes) {
      const q = Math.min(p + stagePlanes, last);
      const rc = this.x.decode(p, q, ld.stage, scale, offset, mode);
      if (rc !== 0) return rc;
      out.set(q - p === stagePlanes ? staged : staged.subarray(0, (q - p) * YZ), p * YZ);
    }
    return 0;
  }

  /** Is `a` a view of this kernel's output region? */
  owns(a: ArrayBufferView): boolean {
    return (
      this.outputBytes > 0 &&
      a.buffer instanceof SharedArrayBuffer &&
      DECODE_BUFFERS.get(a.buffer) === this &&
      a.byteOffset >= this.outputPtr &&
      a.byteOffset + a.byteLength <= this.outputPtr + this.outputBytes
    );
  }
}

/** The arguments of the kernel's setup(). */
type SetupArgs = [number, number, number, number, number, number, number, number, number, number, number, number, number, number];

/** A loaded record shared with another thread (see {@link Pbp32Kernel.attachment}). */
export interface KernelAttachment {
  memory: WebAssembly.Memory;
  tab: number;
  setup: SetupArgs;
  /** Address of plane 0 of the output. */
  out: number;
  scale: number;
  offset: number;
  mode: 0 | 1;
}

/** SharedArrayBuffers of decode buffers → the kernel whose memory they view. */
const DECODE_BUFFERS = new WeakMap<SharedArrayBuffer, Pbp32Kernel>();

/**
 * A reusable output array for `decodeVolume` / `decodeQuantized` that lives in a kernel's own
 * memory, so decoding into it skips copying the volume out of WebAssembly memory (≈ 2–3 ms for
 * 1×384×384×96). It is an ordinary Float32Array (Uint16Array for levels) over a
 * SharedArrayBuffer, so it can also be handed to worker threads without copying. Throws when the
 * WebAssembly kernel is unavailable or disabled; use `new Float32Array(voxels)` then.
 */
export function createDecodeBuffer(voxels: number, type: 'float32'): Float32Array;
export function createDecodeBuffer(voxels: number, type: 'uint16'): Uint16Array;
export function createDecodeBuffer(voxels: number, type: 'float32' | 'uint16' = 'float32'): KernelOutput {
  if (!Number.isInteger(voxels) || voxels < 1) throw new RangeError(`createDecodeBuffer: voxels must be a positive integer, got ${voxels}`);
  const status = wasmStatus();
  if (!status.enabled) throw new Error(`createDecodeBuffer: the WebAssembly codec is unavailable (${status.reason})`);
  const esize = type === 'float32' ? 4 : 2;
  const kernel = new Pbp32Kernel({ outputBytes: align(voxels * esize, 64) });
  const buf = kernel.memory.buffer as unknown as SharedArrayBuffer;
  DECODE_BUFFERS.set(buf, kernel);
  return type === 'float32' ? new Float32Array(buf, kernel.outputPtr, voxels) : new Uint16Array(buf, kernel.outputPtr, voxels);
}

let threadKernel: Pbp32Kernel | undefined;

/** The kernel for `out`: the one owning it (a decode buffer) or this thread's shared one. */
export function kernelFor(out: ArrayBufferView): Pbp32Kernel {
  if (out.buffer instanceof SharedArrayBuffer) {
    const k = DECODE_BUFFERS.get(out.buffer);
    if (k?.owns(out)) return k;
  }
  return (threadKernel ??= new Pbp32Kernel());
}

/**
 * Decodes a whole pbp32 record into `out` on this thread. Returns 0, or non-zero when the
 * record is inconsistent or the kernel cannot take it (the caller then uses the JavaScript decoder).
 */
export function decodePbpWasm(record: PbpRecord, out: KernelOutput, scale: number, offset: number): number {
  const k = kernelFor(out);
  if (!k.load(record, out instanceof Float32Array ? 0 : 1)) return -1;
  return k.run(0, Math.ceil(record.layout.planes / KERNEL_SEGMENT_PLANES), out, scale, offset);
}

// ---------------------------------------------------------------------------------------------
// Several threads on one record

/**
 * Claims segments from `ctrl[0]` (Atomics) until none are left and decodes each into `out` (a
 * view of a SharedArrayBuffer); the first error code goes to `ctrl[1]`, and `ctrl[2]` counts the
 * segments written (notified). Runs on any thread, worker or not. Returns the number of segments
 * this thread decoded.
 */
export function decodeSegmentsShared(
  record: PbpRecord,
  out: KernelOutput,
  scale: number,
  offset: number,
  ctrl: Int32Array,
  kernel: Pbp32Kernel = kernelFor(out),
  loaded = false,
): number {
  const segments = Math.ceil(record.layout.planes / KERNEL_SEGMENT_PLANES);
  return claimSegments(segments, ctrl, () => loaded || kernel.load(record, out instanceof Float32Array ? 0 : 1), (s) => kernel.run(s, s + 1, out, scale, offset));
}

/**
 * The claim loop: `prepare` runs before the first segment this thread gets (false: the kernel
 * cannot take the record), `decode(s)` decodes segment s and returns 0 or an error code.
 */
function claimSegments(segments: number, ctrl: Int32Array, prepare: () => boolean, decode: (s: number) => number): number {
  let s = Atomics.add(ctrl, 0, 1);
  if (s >= segments) return 0;
  if (!prepare()) {
    Atomics.compareExchange(ctrl, 1, 0, -1);
    Atomics.store(ctrl, 0, segments);
    return 0;
  }
  let done = 0;
  for (; s < segments; s = Atomics.add(ctrl, 0, 1)) {
    if (Atomics.load(ctrl, 1) !== 0) break;
    const rc = decode(s);
    done++;
    if (rc !== 0) {
      Atomics.compareExchange(ctrl, 1, 0, rc);
      Atomics.store(ctrl, 0, segments);
      break;
    }
    Atomics.add(ctrl, 2, 1);
    Atomics.notify(ctrl, 2);
  }
  return done;
}

/**
 * Worker-thread entry (called through src/util/worker-entry.js): one share of a parallel decode,
 * with this thread's own kernel, copying the record in and the planes out.
 */
export function decodeSegmentsWorker(record: PbpRecord, out: KernelOutput, scale: number, offset: number, ctrl: Int32Array): number {
  return decodeSegmentsShared(record, out, scale, offset, ctrl, (threadKernel ??= new Pbp32Kernel()));
}

/**
 * Worker-thread entry: one share of a parallel decode into a decode buffer, by an instance of the
 * kernel on the buffer's own (shared) memory: the record is read where the owning thread loaded
 * it and the planes are written in place — no copies.
 */
export function decodeSegmentsAttached(a: KernelAttachment, ctrl: Int32Array): number {
  const mod = wasmModule();
  if (!mod) throw new Error(`voco codec: pbp32.wasm did not load: ${loadError}`);
  const planes = a.setup[10];
  const YZ = a.setup[11];
  const segments = Math.ceil(planes / KERNEL_SEGMENT_PLANES);
  const esize = a.mode === 0 ? 4 : 2;
  let x: KernelExports | undefined;
  return claimSegments(
    segments,
    ctrl,
    () => {
      x = new WebAssembly.Instance(mod, { env: { memory: a.memory } }).exports as unknown as KernelExports;
      x.useTables(a.tab);
      x.setup(...a.setup);
      return true;
    },
    (s) => {
      const first = s * KERNEL_SEGMENT_PLANES;
      const last = Math.min(first + KERNEL_SEGMENT_PLANES, planes);
      const rc = x!.seek(s);
      return rc !== 0 ? rc : x!.decode(first, last, a.out + first * YZ * esize, a.scale, a.offset, a.mode);
    },
  );
}

interface WorkerReply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { message: string };
}

/** A worker thread kept for parallel decodes; referenced only while it has work, so it never keeps the process alive. */
class DecodeWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed: Error | undefined;
  private terminating = false;
  private started = false;

  constructor() {
    // No inherited execArgv: worker-entry.js registers tsx itself, and flags such as
    // --input-type (valid only for -e/stdin input) would stop the worker from starting.
    this.worker = new Worker(new URL('../util/worker-entry.js', import.meta.url), { execArgv: [] });
    this.worker.unref();
    this.worker.on('message', (msg: WorkerReply) => {
      this.started = true;
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (this.pending.size === 0 && !this.terminating) this.worker.unref();
      if (!p) return;
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`voco codec worker: ${msg.error?.message ?? 'failed'}`));
    });
    this.worker.on('error', (e: Error) => {
      // A worker that fails before its first reply cannot start here: decode on this thread from now on.
      if (!this.started) workerStartFailure ??= e.message;
      this.fail(e);
    });
    this.worker.on('exit', (code) => this.fail(new Error(`voco codec worker exited with code ${code}`)));
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    const i = WORKERS.indexOf(this);
    if (i >= 0) WORKERS.splice(i, 1);
  }

  call<T>(fn: string, args: unknown[]): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.ref();
      this.worker.postMessage({ id, module: import.meta.url, fn, args });
    });
  }

  terminate(): Promise<number> {
    // Referenced until it has exited: an unreferenced worker would not keep the process waiting.
    this.terminating = true;
    this.worker.ref();
    return this.worker.terminate();
  }
}

const WORKERS: DecodeWorker[] = [];
/** Why decode workers could not start (then parallel decodes run on the calling thread alone). */
let workerStartFailure: string | undefined;

/** Starts (once) `n` decode worker threads and resolves when they have loaded the kernel. */
export async function startDecodeWorkers(n: number): Promise<void> {
  while (WORKERS.length < n) WORKERS.push(new DecodeWorker());
  await Promise.all(WORKERS.slice(0, n).map((w) => w.call('wasmEnabled', [])));
}

/** Stops the decode worker threads (they are restarted on demand). */
export async function stopDecodeWorkers(): Promise<void> {
  await Promise.all(WORKERS.splice(0).map((w) => w.terminate()));
}

/**
 * Decodes a record on this thread plus `workers − 1` worker threads, each claiming segments.
 * `out` must view a SharedArrayBuffer. `beforeDecode` runs on this thread after the workers
 * have started (e.g. the checksum check) and may throw, which stops the workers. Returns 0, or
 * non-zero when the stream is inconsistent or a worker failed (the caller then decodes the record
 * with the JavaScript decoder, which throws the precise error or produces the same result).
 */
export async function decodePbpParallel(
  record: PbpRecord,
  out: KernelOutput,
  scale: number,
  offset: number,
  workers: number,
  beforeDecode?: () => void,
): Promise<number> {
  if (!(out.buffer instanceof SharedArrayBuffer)) throw new TypeError('decodePbpParallel: out must view a SharedArrayBuffer');
  const segments = Math.ceil(record.layout.planes / KERNEL_SEGMENT_PLANES);
  const helpers = workerStartFailure === undefined ? Math.max(0, Math.min(workers - 1, segments - 1)) : 0;
  while (WORKERS.length < helpers) WORKERS.push(new DecodeWorker());
  const ctrl = new Int32Array(new SharedArrayBuffer(12));
  const owner = kernelFor(out);
  const mode = out instanceof Float32Array ? 0 : 1;
  // Into a decode buffer, the workers decode from and into its kernel's memory (no copies).
  const attached = helpers > 0 && owner.owns(out);
  if (attached && !owner.load(record, mode, helpers)) return -1;
  // Otherwise the payload goes to the workers in shared memory (a plain Uint8Array would be
  // copied per worker), in a buffer kept for the next call (a fresh one costs its page faults).
  let shared = record.payload;
  let staging: SharedArrayBuffer | undefined;
  if (helpers > 0 && !attached && !(shared.buffer instanceof SharedArrayBuffer)) {
    const i = PAYLOAD_BUFFERS.findIndex((b) => b.byteLength >= record.payload.length);
    staging = i >= 0 ? PAYLOAD_BUFFERS.splice(i, 1)[0]! : new SharedArrayBuffer(align(record.payload.length, PAGE));
    shared = new Uint8Array(staging, 0, record.payload.length);
    shared.set(record.payload);
  }
  const rec: PbpRecord = { payload: shared, layout: record.layout, headerBytes: record.headerBytes };
  const jobs = WORKERS.slice(0, helpers).map((w, i) =>
    attached
      ? w.call<number>('decodeSegmentsAttached', [owner.attachment(i, scale, offset, mode), ctrl])
      : w.call<number>('decodeSegmentsWorker', [rec, out, scale, offset, ctrl]),
  );
  try {
    try {
      beforeDecode?.();
    } catch (e) {
      Atomics.store(ctrl, 1, -2);
      Atomics.store(ctrl, 0, 1 << 30);
      await Promise.allSettled(jobs);
      throw e;
    }
    decodeSegmentsShared(rec, out, scale, offset, ctrl, owner, attached);
    // A worker that failed (it died, or could not load the kernel) may have left its claimed
    // segments undecoded: report an error code so the caller decodes the record on this thread.
    const settled = Promise.allSettled(jobs).then((rs) => {
      if (rs.some((r) => r.status === 'rejected')) Atomics.compareExchange(ctrl, 1, 0, -3);
    });
    // Done when every segment is written: no thread touches the record or `out` after that (a
    // worker that starts late finds nothing to claim), so a cold worker is not waited for.
    for (;;) {
      const done = Atomics.load(ctrl, 2);
      if (done >= segments) break;
      if (Atomics.load(ctrl, 1) !== 0 || !waitAsync) {
        await settled; // an error: wait until no worker can still write
        break;
      }
      const w = waitAsync(ctrl, 2, done, 100);
      if (w.async) await Promise.race([w.value, settled]);
    }
  } finally {
    if (staging) {
      PAYLOAD_BUFFERS.push(staging);
      if (PAYLOAD_BUFFERS.length > 2) PAYLOAD_BUFFERS.sort((a, b) => b.byteLength - a.byteLength).pop();
    }
  }
  return Atomics.load(ctrl, 1);
}

/** `Atomics.waitAsync` (ES2024; in Node ≥ 16), typed here because the project targets ES2022. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync?: (a: Int32Array, index: number, value: number, timeout: number) => { async: boolean; value: Promise<string> | string };
  }
).waitAsync?.bind(Atomics);

/** Shared payload buffers free for the next parallel decode (at most two kept). */
const PAYLOAD_BUFFERS: SharedArrayBuffer[] = [];
