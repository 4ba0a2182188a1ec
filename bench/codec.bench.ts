/**
 * Cache codec benchmark on the real CTs in data/ct/.
 *
 *   node bin/run-ts.js bench/codec.bench.ts [--reps N]
 *
 * Each CT goes through the VoCo v1 cached chain with voco's own transforms (REFERENCE §1.2):
 * Orientation RAS → ScaleIntensityRange(−175, 250 → 0, 1, clip) → CropForeground(> 0.3) →
 * Resize(384, 384, 96, trilinear, align_corners=True), then encodeVolume / decodeVolume.
 *
 * The three CTs are 1.5–3 mm scans, so the resize upsamples them about 3× in-plane and the result
 * is smoother (more compressible) than a typical 0.7 mm CT would be. The "in-plane native" rows
 * resize only Z to 96 and keep X and Y: a proxy for the noise of a full-resolution scan.
 *
 * Columns: raw = float32 bytes of the volume; ratio = encoded / raw (for 384×384×96 that is also
 * the ratio to MONAI's 56,627,659-byte PersistentDataset file up to its 0.2 % pickle overhead).
 * Every decode time includes the checksum (CRC-32) check unless said otherwise. JS = the JavaScript decoder
 * (VOCO_CODEC_WASM=0) into a reused Float32Array; the other columns use the WebAssembly kernel
 * (the default): fresh = decodeVolume into a fresh array (page faults included); reuse = into a
 * reused Float32Array (decoded in WebAssembly memory, copied out a few planes at a time); buffer =
 * into a reused decode buffer (createDecodeBuffer: written in place, what a data loader should
 * use); read = readFileSync of the record + decode into the buffer, the counterpart of torch.load
 * (35 ms in BASELINES.md); read ×2 = the same with decodeVolumeParallel on 2 threads (this one and
 * a worker; the checksum overlaps the worker's decoding); GB/s = decoded float32 bytes per second
 * of `buffer`; quantized = decodeQuantized into a reused Uint16Array without the checksum (integer
 * levels, no float conversion); checksum = readEncodedInfo (the CRC-32 check alone); err = max
 * |decoded − input| (also checked against the recorded value, and the WebAssembly output against
 * the JavaScript decoder's, bit for bit).
 *
 * The throughput table is what a data loader with N worker threads gets: each thread reads,
 * checks and decodes the three 384×384×96 records round-robin into its own reused output for
 * 1.5 s, the threads starting together (bench/codec-worker.ts); volumes/s and GB/s (decoded
 * float32) count every thread's volumes over that time.
 *
 * Times are the best of --reps runs (default 7) after three warm-ups: the machine is shared, and
 * the minimum estimates the uncontended time.
 */
import { withJs } from './decoder-mode.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { WorkerPool } from '../src/util/worker-pool.ts';
import { createDecodeBuffer, decodeQuantized, decodeVolume, decodeVolumeParallel, encodeVolume, readEncodedInfo, wasmStatus, type EncodedInfo } from '../src/volume/codec.ts';
import { startDecodeWorkers, stopDecodeWorkers } from '../src/volume/codec-wasm.ts';
import { readNifti } from '../src/volume/nifti-read.ts';
import { cropForeground, orientation, resize, scaleIntensityRange } from '../src/volume/transforms/index.ts';
import type { Volume } from '../src/volume/volume.ts';
import type { DecodePath, LoopResult } from './codec-worker.ts';

const MONAI_FILE_BYTES = 56_627_659;
const TORCH_LOAD_MS = 35;
const repsArg = process.argv.indexOf('--reps');
const REPS = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 7;
const DATA = resolve('data', 'ct');
const CTS = ['totalseg_example_ct', 'totalseg_example_ct_sm', 'totalseg_aorta_ct_cropped'];

function time(fn: () => void, reps = REPS): number {
  for (let i = 0; i < 3; i++) fn(); // warm-up (JIT)
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  return Math.min(...ts);
}

async function timeAsync(fn: () => Promise<unknown>, reps = REPS): Promise<number> {
  for (let i = 0; i < 3; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  return Math.min(...ts);
}


function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function cachedChain(name: string): Promise<Volume> {
  const img = (await readNifti(join(DATA, `${name}.nii.gz`))).toVolume({ dtype: 'float32' });
  const ras = orientation(img, 'RAS').volume;
  const scaled = scaleIntensityRange(ras, { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true }).volume;
  return cropForeground(scaled, { threshold: 0.3 }).volume;
}

interface Row {
  name: string;
  shape: string;
  raw: number;
  enc: number;
  encMs: number;
  jsMs: number;
  decMs: number;
  reuseMs: number;
  bufferMs: number;
  readMs: number;
  read2Ms: number;
  quantMs: number;
  shaMs: number;
  err: number;
  info: EncodedInfo;
  file: string;
}

const tmp = mkdtempSync(join(tmpdir(), 'voco-codec-bench-'));

async function measure(name: string, vol: Volume, kind: 'image' | 'label', maxAbsError?: number): Promise<Row> {
  let enc = encodeVolume(vol, { kind, maxAbsError });
  const encMs = time(() => {
    enc = encodeVolume(vol, { kind, maxAbsError });
  }, Math.min(REPS, 3));
  const { bytes, info } = enc;
  const decoded = decodeVolume(bytes);
  let err = 0;
  for (let i = 0; i < vol.data.length; i++) err = Math.max(err, Math.abs(decoded.data[i]! - vol.data[i]!));
  if (err !== info.maxAbsError) throw new Error(`${name}: measured error ${err} differs from the recorded ${info.maxAbsError}`);
  const file = join(tmp, `${name}.vvol`.replace(/[^\w.-]+/g, '_'));
  writeFileSync(file, bytes);
  const out = decoded.data;
  const jsMs = withJs(() => time(() => decodeVolume(bytes, { out }), Math.min(REPS, 5)));
  const jsOut = out.slice();
  const decMs = time(() => decodeVolume(bytes));
  const reuseMs = time(() => decodeVolume(bytes, { out }));
  let bufferMs = reuseMs;
  let readMs: number;
  let read2Ms = NaN;
  let quantMs = NaN;
  if (info.codec === 'pbp32' && wasm.enabled) {
    const buffer = createDecodeBuffer(info.voxels, 'float32');
    bufferMs = time(() => decodeVolume(bytes, { out: buffer }));
    readMs = time(() => decodeVolume(readFileSync(file), { out: buffer }));
    if (!sameBits(buffer, jsOut as Float32Array)) throw new Error(`${name}: the WebAssembly decode differs from the JavaScript decoder's`);
    read2Ms = await timeAsync(() => decodeVolumeParallel(readFileSync(file), { out: buffer, workers: 2 }));
    if (!sameBits(buffer, jsOut as Float32Array)) throw new Error(`${name}: the 2-thread decode differs from the JavaScript decoder's`);
  } else {
    readMs = time(() => decodeVolume(readFileSync(file), { out }));
  }
  if (info.storage !== 'float32') {
    const qout = decodeQuantized(bytes).volume.data;
    quantMs = time(() => decodeQuantized(bytes, { out: qout, verify: false }));
  }
  const shaMs = time(() => readEncodedInfo(bytes));
  const raw = vol.data.length * 4;
  return { name, shape: vol.shape.slice(1).join('×'), raw, enc: bytes.length, encMs, jsMs, decMs, reuseMs, bufferMs, readMs, read2Ms, quantMs, shaMs, err, info, file };
}

/** Data-loader throughput: `threads` worker threads each reading and decoding `files` round-robin. */
async function throughput(pool: WorkerPool, files: string[], threads: number, path: DecodePath): Promise<{ volS: number; gbS: number; msPerVolume: number }> {
  const url = new URL('./codec-worker.ts', import.meta.url);
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const rs = await Promise.all(Array.from({ length: threads }, () => pool.run<LoopResult>(url, 'decodeLoop', [files, 1500, 2, path, barrier, threads])));
  // Each thread counts the volumes it finished in its own timed window; the windows start together.
  const wall = Math.max(...rs.map((r) => r.end - r.start));
  const volumes = rs.reduce((a, r) => a + r.times.length, 0);
  const perThread = rs.flatMap((r) => r.times).sort((a, b) => a - b);
  return { volS: volumes / (wall / 1e3), gbS: (volumes * rs[0]!.bytes) / 1e9 / (wall / 1e3), msPerVolume: perThread[perThread.length >> 1]! };
}

function fmtBytes(n: number): string {
  return n.toLocaleString('en-US');
}

const wasm = wasmStatus();
if (wasm.enabled) await startDecodeWorkers(1);
const rows: Row[] = [];
const notes: string[] = [];
for (const name of CTS) {
  const crop = await cachedChain(name);
  const vol384 = resize(crop, [384, 384, 96], { mode: 'trilinear', alignCorners: true }).volume;
  rows.push(await measure(`${name}`, vol384, 'image'));
  const native = resize(crop, [crop.shape[1], crop.shape[2], 96], { mode: 'trilinear', alignCorners: true }).volume;
  rows.push(await measure(`${name} (in-plane native)`, native, 'image'));
  if (name === 'totalseg_aorta_ct_cropped') {
    rows.push(await measure(`${name} (in-plane native, maxAbsError 1e-3)`, native, 'image', 1e-3));
  }
  if (name === 'totalseg_example_ct') {
    // For comparison: deflate (level 6) of the same 13-bit levels, byte-shuffled (hi/lo planes).
    const { info } = encodeVolume(vol384, { kind: 'image' });
    const n = vol384.data.length;
    const planes = new Uint8Array(2 * n);
    for (let i = 0; i < n; i++) {
      const q = Math.round((vol384.data[i]! - info.offset) / info.scale);
      planes[i] = q >> 8;
      planes[n + i] = q & 255;
    }
    const deflated = deflateRawSync(planes, { level: 6 });
    const inflateMs = time(() => inflateRawSync(deflated));
    notes.push(
      `baseline for ${name} 384×384×96: deflate-6 of the byte-shuffled 13-bit levels = ${fmtBytes(deflated.length)} bytes ` +
        `(${((100 * deflated.length) / (n * 4)).toFixed(1)} %), inflate alone ${inflateMs.toFixed(1)} ms (before unshuffling and scaling)`,
    );
  }
}
const seg = (await readNifti(join(DATA, 'totalseg_example_ct_sm_seg.nii.gz'))).toVolume({ dtype: 'raw' });
const seg384 = resize(seg, [384, 384, 96], { mode: 'nearest' }).volume;
rows.push(await measure('totalseg_example_ct_sm_seg (label, nearest)', seg384, 'label'));
const main = rows.filter((r) => r.shape === '384×384×96' && r.info.kind === 'image');
const tput: Array<{ path: DecodePath; threads: number; volS: number; gbS: number; msPerVolume: number }> = [];
const pool = new WorkerPool(2);
try {
  for (const path of (wasm.enabled ? ['js', 'wasm', 'wasm-buffer'] : ['js']) as DecodePath[]) {
    for (const threads of [1, 2]) tput.push({ path, threads, ...(await throughput(pool, main.map((r) => r.file), threads, path)) });
  }
} finally {
  await pool.close();
  await stopDecodeWorkers();
}
rmSync(tmp, { recursive: true, force: true });

const cpu = cpus();
const f1 = (v: number): string => (Number.isNaN(v) ? '–' : v.toFixed(1));
console.log(`# voco cache codec benchmark`);
console.log(`date ${new Date().toISOString()}; ${cpu.length}× ${cpu[0]?.model ?? 'unknown CPU'}; ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; best of ${REPS}`);
console.log(`chain: voco transforms (orientation RAS, scaleIntensityRange, cropForeground > 0.3, resize trilinear align_corners=True)`);
console.log(`decoder: ${wasm.enabled ? 'WebAssembly kernel (src/volume/wasm/pbp32.wasm)' : `JavaScript only (${wasm.reason})`}`);
console.log(`MONAI PersistentDataset file for 1×384×384×96: ${fmtBytes(MONAI_FILE_BYTES)} bytes, torch.load ≈ ${TORCH_LOAD_MS} ms (≈ 1.6 GB/s)\n`);
console.log('| volume | shape | raw float32 B | encoded B | ratio | bits | exc. blocks | encode ms | JS ms | fresh ms | reuse ms | buffer ms | read ms | read ×2 ms | GB/s | quantized ms | checksum ms | max abs err |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ratio = `${((100 * r.enc) / r.raw).toFixed(1)} %`;
  const exc = r.info.pbp ? `${((100 * r.info.pbp.exceptionBlocks) / r.info.pbp.blocks).toFixed(0)} %` : '–';
  const gbs = (r.raw / 1e9 / (r.bufferMs / 1e3)).toFixed(2);
  console.log(
    `| ${r.name} | ${r.shape} | ${fmtBytes(r.raw)} | ${fmtBytes(r.enc)} | ${ratio} | ${r.info.bits} | ${exc} | ${r.encMs.toFixed(0)} | ${f1(r.jsMs)} | ${f1(r.decMs)} | ${f1(r.reuseMs)} | ${f1(r.bufferMs)} | ${f1(r.readMs)} | ${f1(r.read2Ms)} | ${gbs} | ${f1(r.quantMs)} | ${f1(r.shaMs)} | ${r.err.toExponential(3)} |`,
  );
}
console.log('');
for (const n of notes) console.log(n);
const worst = Math.max(...main.map((r) => r.enc));
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
console.log(
  `384×384×96 images: largest record ${fmtBytes(worst)} B = ${((100 * worst) / MONAI_FILE_BYTES).toFixed(1)} % of the MONAI file; ` +
    `read+decode ${range(main.map((r) => r.readMs))} ms on 1 thread, ${range(main.map((r) => r.read2Ms))} ms on 2 threads ` +
    `(JavaScript decoder ${range(main.map((r) => r.jsMs))} ms) vs torch.load ${TORCH_LOAD_MS} ms; goal ${(TORCH_LOAD_MS / 5).toFixed(0)} ms (5×)`,
);
console.log('');
console.log(`## Data-loader throughput: N threads each reading, checking and decoding the ${main.length} 384×384×96 records round-robin\n`);
console.log('| decoder | output | threads | volumes/s | GB/s (float32) | ms per volume (per thread, median) | ms per volume (all threads) | vs torch.load |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const t of tput) {
  const decoder = t.path === 'js' ? 'JavaScript' : 'WebAssembly';
  const output = t.path === 'wasm-buffer' ? 'decode buffer' : 'Float32Array';
  console.log(
    `| ${decoder} | ${output} | ${t.threads} | ${t.volS.toFixed(1)} | ${t.gbS.toFixed(2)} | ${t.msPerVolume.toFixed(1)} | ${(1e3 / t.volS).toFixed(1)} | ${((TORCH_LOAD_MS * t.volS) / 1e3).toFixed(1)}× |`,
  );
}
