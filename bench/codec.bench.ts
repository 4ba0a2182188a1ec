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
 * the ratio to MONAI's 56,627,659-byte PersistentDataset file up to its 0.2 % pickle overhead);
 * decode = decodeVolume into a fresh array (includes sha256 verification); reuse = decode into a
 * reused output array (what a data loader should do); read = readFileSync of the record + decode
 * into a reused array, the counterpart of torch.load (35 ms in BASELINES.md); GB/s = decoded
 * float32 bytes per second of `reuse`; quantized = decodeQuantized into a reused Uint16Array
 * without the checksum (integer levels, no float conversion); sha256 = readEncodedInfo (the
 * checksum check alone); err = max |decoded − input| (also checked against the recorded value).
 * Times are the best of --reps runs (default 7) after three warm-ups: the machine is shared, and
 * the minimum estimates the uncontended time.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decodeQuantized, decodeVolume, encodeVolume, readEncodedInfo, type EncodedInfo } from '../src/volume/codec.ts';
import { readNifti } from '../src/volume/nifti-read.ts';
import { cropForeground, orientation, resize, scaleIntensityRange } from '../src/volume/transforms/index.ts';
import type { Volume } from '../src/volume/volume.ts';

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
  decMs: number;
  reuseMs: number;
  readMs: number;
  quantMs: number;
  shaMs: number;
  err: number;
  info: EncodedInfo;
}

const tmp = mkdtempSync(join(tmpdir(), 'voco-codec-bench-'));

function measure(name: string, vol: Volume, kind: 'image' | 'label', maxAbsError?: number): Row {
  let enc = encodeVolume(vol, { kind, maxAbsError });
  const encMs = time(() => {
    enc = encodeVolume(vol, { kind, maxAbsError });
  }, Math.min(REPS, 3));
  const { bytes, info } = enc;
  const decoded = decodeVolume(bytes);
  let err = 0;
  for (let i = 0; i < vol.data.length; i++) err = Math.max(err, Math.abs(decoded.data[i]! - vol.data[i]!));
  if (err !== info.maxAbsError) throw new Error(`${name}: measured error ${err} differs from the recorded ${info.maxAbsError}`);
  const decMs = time(() => decodeVolume(bytes));
  const out = decoded.data;
  const reuseMs = time(() => decodeVolume(bytes, { out }));
  const file = join(tmp, `${name}.vvol`);
  writeFileSync(file, bytes);
  const readMs = time(() => decodeVolume(readFileSync(file), { out }));
  let quantMs = NaN;
  if (info.storage !== 'float32') {
    const qout = decodeQuantized(bytes).volume.data;
    quantMs = time(() => decodeQuantized(bytes, { out: qout, verify: false }));
  }
  const shaMs = time(() => readEncodedInfo(bytes));
  const raw = vol.data.length * 4;
  return { name, shape: vol.shape.slice(1).join('×'), raw, enc: bytes.length, encMs, decMs, reuseMs, readMs, quantMs, shaMs, err, info };
}

function fmtBytes(n: number): string {
  return n.toLocaleString('en-US');
}

const rows: Row[] = [];
const notes: string[] = [];
for (const name of CTS) {
  const crop = await cachedChain(name);
  const vol384 = resize(crop, [384, 384, 96], { mode: 'trilinear', alignCorners: true }).volume;
  rows.push(measure(`${name}`, vol384, 'image'));
  const native = resize(crop, [crop.shape[1], crop.shape[2], 96], { mode: 'trilinear', alignCorners: true }).volume;
  rows.push(measure(`${name} (in-plane native)`, native, 'image'));
  if (name === 'totalseg_aorta_ct_cropped') {
    rows.push(measure(`${name} (in-plane native, maxAbsError 1e-3)`, native, 'image', 1e-3));
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
rows.push(measure('totalseg_example_ct_sm_seg (label, nearest)', seg384, 'label'));
rmSync(tmp, { recursive: true, force: true });

const cpu = cpus();
console.log(`# voco cache codec benchmark`);
console.log(`date ${new Date().toISOString()}; ${cpu.length}× ${cpu[0]?.model ?? 'unknown CPU'}; ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; best of ${REPS}`);
console.log(`chain: voco transforms (orientation RAS, scaleIntensityRange, cropForeground > 0.3, resize trilinear align_corners=True)`);
console.log(`MONAI PersistentDataset file for 1×384×384×96: ${fmtBytes(MONAI_FILE_BYTES)} bytes, torch.load ≈ ${TORCH_LOAD_MS} ms (≈ 1.6 GB/s)\n`);
console.log('| volume | shape | raw float32 B | encoded B | ratio | bits | exc. blocks | encode ms | decode ms | reuse ms | read ms | GB/s | quantized ms | sha256 ms | max abs err |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ratio = `${((100 * r.enc) / r.raw).toFixed(1)} %`;
  const exc = r.info.pbp ? `${((100 * r.info.pbp.exceptionBlocks) / r.info.pbp.blocks).toFixed(0)} %` : '–';
  const gbs = (r.raw / 1e9 / (r.reuseMs / 1e3)).toFixed(2);
  console.log(
    `| ${r.name} | ${r.shape} | ${fmtBytes(r.raw)} | ${fmtBytes(r.enc)} | ${ratio} | ${r.info.bits} | ${exc} | ${r.encMs.toFixed(0)} | ${r.decMs.toFixed(1)} | ${r.reuseMs.toFixed(1)} | ${r.readMs.toFixed(1)} | ${gbs} | ${r.quantMs.toFixed(1)} | ${r.shaMs.toFixed(1)} | ${r.err.toExponential(3)} |`,
  );
}
console.log('');
for (const n of notes) console.log(n);
const main = rows.filter((r) => r.shape === '384×384×96' && r.info.kind === 'image');
const worst = Math.max(...main.map((r) => r.enc));
console.log(
  `384×384×96 images: largest record ${fmtBytes(worst)} B = ${((100 * worst) / MONAI_FILE_BYTES).toFixed(1)} % of the MONAI file; ` +
    `read+decode ${Math.min(...main.map((r) => r.readMs)).toFixed(0)}–${Math.max(...main.map((r) => r.readMs)).toFixed(0)} ms vs torch.load ${TORCH_LOAD_MS} ms`,
);
