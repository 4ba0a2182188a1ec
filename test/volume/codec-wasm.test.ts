import { createRng } from '../../src/util/rng.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CacheRecordError,
  PREFIX_BYTES,
  createDecodeBuffer,
  decodeQuantized,
  decodeVolume,
  decodeVolumeParallel,
  encodeVolume,
  readEncodedInfo,
  wasmStatus,
  type RecordHeader,
} from '../../src/volume/codec.ts';
import { stopDecodeWorkers } from '../../src/volume/codec-wasm.ts';
import { readNifti } from '../../src/volume/nifti-read.ts';
import { cropForeground, orientation, resize, scaleIntensityRange } from '../../src/volume/transforms/index.ts';
import type { Affine, Shape4, Volume, VoxelArray } from '../../src/volume/volume.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CT = (name: string): string => join(REPO, 'data', 'ct', name);
const AFFINE: Affine = [
  [1, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 1],
];

afterAll(() => stopDecodeWorkers());

/** Seeded uniform draws in [0, 1) from the project's generator, so failures reproduce. */
function rng(seed: number): () => number {
  const r = createRng(seed, 'codec-test');
  return () => r.float();
}

function vol(shape: Shape4, fill: (c: number, x: number, y: number, z: number) => number, ctor: { new (n: number): VoxelArray } = Float32Array): Volume {
  const [C, X, Y, Z] = shape;
  const data = new ctor(C * X * Y * Z);
  let i = 0;
  for (let c = 0; c < C; c++) for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++, i++) data[i] = fill(c, x, y, z);
  return { data, shape, affine: AFFINE };
}

/** Runs fn with the WebAssembly kernel forced on ('1') or off ('0'). */
function withWasm<T>(on: boolean, fn: () => T): T {
  const before = process.env.VOCO_CODEC_WASM;
  process.env.VOCO_CODEC_WASM = on ? '1' : '0';
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.VOCO_CODEC_WASM;
    else process.env.VOCO_CODEC_WASM = before;
  }
}

const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Bit-exact comparison that names the first differing element. */
function expectSameBits(actual: VoxelArray, expected: VoxelArray, what: string): void {
  expect(actual.constructor).toBe(expected.constructor);
  expect(actual.length).toBe(expected.length);
  if (bytesOf(actual).equals(bytesOf(expected))) return;
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  let i = 0;
  while (a[i] === b[i]) i++;
  const e = Math.floor(i / actual.BYTES_PER_ELEMENT);
  expect.fail(`${what}: element ${e} differs: ${actual[e]} (wasm) vs ${expected[e]} (JS)`);
}

type Outcome = { ok: true; data: VoxelArray } | { ok: false; error: string };

function outcome(fn: () => VoxelArray): Outcome {
  try {
    return { ok: true, data: fn() };
  } catch (e) {
    return { ok: false, error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

/**
 * Decodes `bytes` with the JavaScript decoder and the WebAssembly kernel (fresh output, a reused
 * ordinary array, a decode buffer, integer levels) and expects identical bits or the same error.
 */
function expectBothPathsAgree(bytes: Uint8Array, what: string, verify = true): VoxelArray | undefined {
  const js = withWasm(false, () => outcome(() => decodeVolume(bytes, { verify }).data));
  const wasm = withWasm(true, () => outcome(() => decodeVolume(bytes, { verify }).data));
  if (!js.ok || !wasm.ok) {
    expect(wasm.ok ? 'decoded' : wasm.error, `${what}: wasm path`).toBe(js.ok ? 'decoded' : js.error);
    return undefined;
  }
  expectSameBits(wasm.data, js.data, what);
  const info = readEncodedInfo(bytes, { verify: false });
  if (info.codec === 'pbp32') {
    const reused = new Float32Array(info.voxels).fill(NaN);
    withWasm(true, () => decodeVolume(bytes, { verify, out: reused }));
    expectSameBits(reused, js.data, `${what} (reused output)`);
    const buffer = createDecodeBuffer(info.voxels, 'float32');
    withWasm(true, () => decodeVolume(bytes, { verify, out: buffer }));
    expectSameBits(buffer, js.data, `${what} (decode buffer)`);
    const qjs = withWasm(false, () => decodeQuantized(bytes, { verify }).volume.data);
    const qwasm = withWasm(true, () => decodeQuantized(bytes, { verify }).volume.data);
    expectSameBits(qwasm, qjs, `${what} (levels)`);
  }
  return js.data;
}

describe('WebAssembly pbp32 kernel', () => {
  it('is the committed build of wasm/pbp32.ts (npm run build:wasm)', async () => {
    const script = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['build:wasm']!;
    const argv = script.split(/\s+/).slice(1); // drop "asc"
    const o = argv.indexOf('-o');
    expect(argv[o + 1]).toBe('src/volume/wasm/pbp32.wasm');
    argv.splice(o, 2, '--outFile', 'pbp32.wasm', '--baseDir', REPO);
    const { default: asc } = await import('assemblyscript/asc');
    let built: Uint8Array | undefined;
    const { error, stderr } = await asc.main(argv, {
      readFile: (name: string, baseDir: string) => {
        try {
          return readFileSync(join(baseDir, name), 'utf8');
        } catch {
          return null;
        }
      },
      writeFile: (name: string, contents: Uint8Array | string) => {
        if (name.endsWith('.wasm')) built = contents as Uint8Array;
      },
      listFiles: () => [],
    });
    expect(error?.message ?? '', stderr.toString()).toBe('');
    expect(built, 'asc wrote no .wasm').toBeDefined();
    const committed = readFileSync(join(REPO, 'src', 'volume', 'wasm', 'pbp32.wasm'));
    expect(Buffer.from(built!).equals(committed), 'src/volume/wasm/pbp32.wasm is stale: run npm run build:wasm').toBe(true);
  });

  it('is loaded and used unless VOCO_CODEC_WASM=0', () => {
    expect(wasmStatus()).toEqual({ enabled: true });
    expect(withWasm(false, () => wasmStatus())).toEqual({ enabled: false, reason: 'VOCO_CODEC_WASM=0' });
  });

  it('decodes synthetic edge cases bit-identically to the JavaScript decoder', () => {
    const r = rng(11);
    const cases: Array<[string, Volume, number?]> = [
      ['all zero', vol([1, 40, 33, 35], () => 0)],
      ['constant', vol([1, 33, 32, 32], () => 0.3712)],
      ['constant negative, odd shape', vol([2, 3, 5, 7], () => -1024.5)],
      ['uniform noise (13 bits, every width)', vol([1, 70, 40, 36], () => r())],
      ['noise with a large offset', vol([1, 34, 16, 16], () => 100 + r()), 1e-3],
      ['smooth plus rare spikes (exception-heavy)', vol([1, 66, 48, 40], (_c, x, y, z) => (r() < 0.03 ? r() : 0.5 + 0.2 * Math.sin(x / 7 + y / 5 + z / 9)))],
      ['spikes over zero (exceptions on width 0)', vol([1, 40, 32, 32], () => (r() < 0.004 ? r() : 0))],
      ['several channels', vol([3, 20, 17, 19], (c, x, y, z) => c + Math.cos(x * y * 0.01 + z * 0.1) + 0.05 * r()), 1e-3],
      ['one plane', vol([1, 1, 64, 96], (_c, _x, y, z) => Math.sin(y / 9) * Math.cos(z / 7) + 0.01 * r())],
      ['one plane, one row, partial block', vol([1, 1, 1, 45], () => r())],
      ['single voxel', vol([1, 1, 1, 1], () => 0.123)],
      ['Z = 1 (scalar prediction)', vol([1, 50, 40, 1], (_c, x, y) => Math.sin(x / 5 + y / 7) + 0.01 * r())],
      ['Z = 2', vol([1, 35, 64, 2], (_c, x, y, z) => (x + y / 3 + z + r()) / 100)],
      ['Z = 3', vol([1, 35, 33, 3], (_c, x, y, z) => Math.sin(x + y + z) + 0.1 * r())],
      ['Z = 4 (smallest SIMD stride)', vol([1, 35, 40, 4], (_c, x, y, z) => Math.sin(x / 3 + y / 4 + z / 2) + 0.02 * r())],
      ['Z = 5, Y·Z not a multiple of 32', vol([1, 65, 41, 5], (_c, x, y, z) => Math.cos(x / 3 + y / 4 + z / 2) + 0.02 * r())],
      ['ramps (prefix predictors)', vol([1, 40, 48, 64], (_c, x, y, z) => x / 39 + y / 47 + z / 63)],
      ['integer HU, lossless 12 bits', vol([1, 33, 21, 22], () => Math.round(r() * 4095) - 1024, Int16Array), 0.5],
      ['16-bit integers (widest residuals)', vol([1, 33, 32, 32], () => Math.floor(r() * 65536), Uint16Array), 0.5],
      ['16 bits at a tight error', vol([1, 34, 24, 24], (_c, x, y, z) => Math.sin(x * y + z) * 1e-3 + r() * 1e-4, Float64Array), 3e-8],
    ];
    for (const [name, v, maxAbsError] of cases) {
      const { bytes, info } = encodeVolume(v, { kind: 'image', maxAbsError });
      expect(info.codec, name).toBe('pbp32');
      expectBothPathsAgree(bytes, name);
    }
  });

  it('leaves labels and float32-stored records to the existing decoders', () => {
    const r = rng(2);
    const label = encodeVolume(vol([1, 10, 11, 12], () => Math.floor(r() * 300)), { kind: 'label' });
    expect(expectBothPathsAgree(label.bytes, 'uint16 labels')).toBeInstanceOf(Uint16Array);
    const wide = encodeVolume(vol([1, 8, 8, 8], () => r() * 1e6), { kind: 'image', maxAbsError: 1e-6 });
    expect(wide.info.storage).toBe('float32');
    expectBothPathsAgree(wide.bytes, 'float32 storage');
  });

  it('agrees with the JavaScript decoder on corrupt payloads (same error or same bits)', () => {
    const r = rng(5);
    const sources = [
      vol([1, 70, 24, 20], (_c, x, y, z) => (r() < 0.02 ? r() : 0.5 + 0.3 * Math.sin(x / 6 + y / 4 + z / 5))),
      vol([2, 20, 9, 7], () => r()),
      vol([1, 40, 30, 3], (_c, x, y, z) => Math.sin(x + y / 2 + z) + 0.1 * r()),
    ];
    let errors = 0;
    let decoded = 0;
    for (const [n, v] of sources.entries()) {
      const { bytes } = encodeVolume(v, { kind: 'image' });
      const payloadStart = bytes.length - readEncodedInfo(bytes).payloadBytes;
      for (let t = 0; t < 60; t++) {
        const bad = bytes.slice();
        const flips = 1 + Math.floor(r() * 4);
        for (let f = 0; f < flips; f++) {
          const at = payloadStart + Math.floor(r() * (bytes.length - payloadStart));
          bad[at]! ^= 1 << Math.floor(r() * 8);
        }
        if (expectBothPathsAgree(bad, `volume ${n}, trial ${t}`, false)) decoded++;
        else errors++;
      }
    }
    // Both outcomes occur, so both the error path and the decode of garbage are compared.
    expect(errors).toBeGreaterThan(10);
    expect(decoded).toBeGreaterThan(10);
  });

  it('decodes crafted streams with every predictor, width 0–31 and wide exceptions (wrapping arithmetic)', () => {
    const r = rng(12);
    const shapes: Shape4[] = [
      [1, 70, 4, 32], // Y·Z = 128: 4 blocks a plane, the last two interior; three segments
      [2, 20, 3, 45], // partial last block, Z not a multiple of 32
      [1, 40, 30, 3], // Z < 4: scalar prediction everywhere
      [1, 33, 2, 96], // the plane is two rows: in-plane predictors on the fused path only from Z or Z + 1
      [1, 34, 40, 4], // Z = 4: a group's neighbour one row up is in the group just before
      [1, 34, 23, 5], // Z = 5, partial last block
      [1, 34, 9, 33], // Z + 1 = 34: k = 6 starts one block later than k = 2
    ];
    for (const [n, shape] of shapes.entries()) {
      for (let t = 0; t < 3; t++) {
        const rec = craftRecord(shape, r, t === 0 ? 0.9 : 0.3);
        const info = readEncodedInfo(rec);
        expect(info.pbp!.exceptionBlocks).toBeGreaterThan(0);
        const js = withWasm(false, () => decodeVolume(rec).data);
        // The streams are consistent, so both must decode them.
        expectBothPathsAgree(rec, `crafted ${n}.${t} [${shape.join(', ')}]`);
        expect(js.some((x) => Math.abs(x) > 1e8)).toBe(true); // wide levels reach the float conversion
      }
    }
  });

  it('agrees on records whose segment table or stream sizes lie', () => {
    const r = rng(8);
    const { bytes } = encodeVolume(vol([1, 100, 16, 16], () => r()), { kind: 'image' });
    const info = readEncodedInfo(bytes);
    const payload = bytes.subarray(bytes.length - info.payloadBytes);
    const lie = (edit: (h: RecordHeader) => void, what: string): void => {
      const h = JSON.parse(JSON.stringify(info)) as RecordHeader & { formatVersion?: number; encodedBytes?: number; checksum?: string };
      delete h.formatVersion;
      delete h.encodedBytes;
      delete h.checksum;
      edit(h);
      const rec = reassemble(h, payload);
      expectBothPathsAgree(rec, what);
      const js = withWasm(false, () => outcome(() => decodeVolume(rec).data));
      expect(js.ok, what).toBe(false);
    };
    lie((h) => (h.pbp!.segmentWords[1]! += 1), 'segment 1 word offset');
    lie((h) => (h.pbp!.segmentWords[3]! = -5), 'negative word offset');
    lie((h) => (h.pbp!.segmentExceptionBits[2]! += 3), 'segment 2 exception bit');
    lie((h) => (h.pbp!.segmentExceptionBlocks[1]! = 2 ** 40), 'huge exception block index');
    lie((h) => (h.pbp!.segmentWords[2]! = 0.5), 'fractional word offset');
  });

  it('decodes into a decode buffer that stays valid while its memory grows', () => {
    const r = rng(9);
    const small = encodeVolume(vol([1, 20, 16, 16], () => 0.25), { kind: 'image' }).bytes;
    const large = encodeVolume(vol([1, 20, 16, 16], () => r()), { kind: 'image' }).bytes;
    const buffer = createDecodeBuffer(20 * 16 * 16, 'float32');
    expect(buffer.buffer).toBeInstanceOf(SharedArrayBuffer);
    decodeVolume(small, { out: buffer });
    expect(buffer.every((x) => x === Math.fround(0.25))).toBe(true);
    decodeVolume(large, { out: buffer }); // a larger payload: the kernel's memory grows
    expectSameBits(buffer, withWasm(false, () => decodeVolume(large).data), 'after growth');
    const levels = createDecodeBuffer(20 * 16 * 16, 'uint16');
    decodeQuantized(large, { out: levels });
    expectSameBits(levels, withWasm(false, () => decodeQuantized(large).volume.data), 'levels buffer');
    expect(() => createDecodeBuffer(0, 'float32')).toThrow(RangeError);
  });
});

describe('decodeVolumeParallel', () => {
  const r = rng(4);
  const v = vol([1, 200, 24, 40], (_c, x, y, z) => (r() < 0.01 ? r() : 0.5 + 0.3 * Math.sin(x / 6 + y / 4 + z / 5)));
  const { bytes } = encodeVolume(v, { kind: 'image' });
  const reference = withWasm(false, () => decodeVolume(bytes).data);

  it('is bit-identical to decodeVolume, into fresh, reused and decode-buffer outputs', async () => {
    const fresh = await decodeVolumeParallel(bytes, { workers: 2 });
    expect(fresh.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(fresh.shape).toEqual(v.shape);
    expectSameBits(fresh.data, reference, 'fresh');
    for (let i = 0; i < 5; i++) {
      (fresh.data as Float32Array).fill(NaN);
      await decodeVolumeParallel(bytes, { workers: 2, out: fresh.data });
      expectSameBits(fresh.data, reference, `reused ${i}`);
    }
    const buffer = createDecodeBuffer(v.data.length, 'float32');
    await decodeVolumeParallel(bytes, { workers: 3, out: buffer, verify: false });
    expectSameBits(buffer, reference, 'decode buffer, 3 threads');
    const plain = new Float32Array(v.data.length);
    await decodeVolumeParallel(bytes, { out: plain }); // not shared: decodes on this thread
    expectSameBits(plain, reference, 'ordinary array');
    expectSameBits((await decodeVolumeParallel(bytes, { workers: 1 })).data, reference, 'one thread');
  });

  it('never keeps the process alive, and its workers stop cleanly right after a decode', () => {
    const codec = pathToFileURL(join(REPO, 'src', 'volume', 'codec.ts')).href;
    const driver = pathToFileURL(join(REPO, 'src', 'volume', 'codec-wasm.ts')).href;
    // Stopping the workers while a worker's last reply is still on its way must not let the
    // process exit early (exit code 13: a top-level await left pending); it is a race, so repeat.
    const script = `
      import { decodeVolumeParallel, encodeVolume } from '${codec}';
      import { startDecodeWorkers, stopDecodeWorkers } from '${driver}';
      const data = Float32Array.from({ length: 384 * 64 * 64 }, (_, i) => ((i * 7919) % 1009) / 1009);
      const I = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
      const { bytes } = encodeVolume({ data, shape: [1, 384, 64, 64], affine: I }, { kind: 'image' });
      const out = (await decodeVolumeParallel(bytes)).data;
      for (let round = 0; round < (process.argv[1] === 'stop' ? 6 : 1); round++) {
        await startDecodeWorkers(1);
        for (let i = 0; i < 3; i++) await decodeVolumeParallel(bytes, { out });
        if (process.argv[1] === 'stop') await stopDecodeWorkers();
      }
      console.log('done');
    `;
    for (const how of ['stop', 'leave']) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, how], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
      expect({ how, status: r.status, stdout: r.stdout.trim(), stderr: r.stderr }).toEqual({ how, status: 0, stdout: 'done', stderr: '' });
    }
  });

  it('checks the checksum and the stream like decodeVolume', async () => {
    const info = readEncodedInfo(bytes);
    const flipped = bytes.slice();
    flipped[bytes.length - info.payloadBytes + 1000]! ^= 4;
    await expect(decodeVolumeParallel(flipped)).rejects.toThrow(/checksum mismatch/);
    await expect(decodeVolumeParallel(flipped.subarray(0, 100))).rejects.toThrow(CacheRecordError);
    const js = withWasm(false, () => outcome(() => decodeVolume(flipped, { verify: false }).data));
    let parallel: Outcome;
    try {
      parallel = { ok: true, data: (await decodeVolumeParallel(flipped, { verify: false })).data };
    } catch (e) {
      parallel = { ok: false, error: `${(e as Error).name}: ${(e as Error).message}` };
    }
    if (js.ok && parallel.ok) expectSameBits(parallel.data, js.data, 'corrupt, unverified');
    else expect(parallel.ok ? 'decoded' : parallel.error).toBe(js.ok ? 'decoded' : js.error);
  });
});

describe('real CTs resized to 384×384×96 as the benchmark does', () => {
  for (const name of ['totalseg_example_ct', 'totalseg_example_ct_sm', 'totalseg_aorta_ct_cropped']) {
    it(`${name}: the WebAssembly decode is bit-identical to the JavaScript decoder`, async () => {
      const img = (await readNifti(CT(`${name}.nii.gz`))).toVolume({ dtype: 'float32' });
      const ras = orientation(img, 'RAS').volume;
      const scaled = scaleIntensityRange(ras, { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true }).volume;
      const crop = cropForeground(scaled, { threshold: 0.3 }).volume;
      for (const size of [
        [384, 384, 96],
        [crop.shape[1], crop.shape[2], 96],
      ] as const) {
        const v = resize(crop, [size[0], size[1], size[2]], { mode: 'trilinear', alignCorners: true }).volume;
        const { bytes, info } = encodeVolume(v, { kind: 'image' });
        const js = expectBothPathsAgree(bytes, `${name} ${size.join('×')}`)!;
        let err = 0;
        for (let i = 0; i < js.length; i++) err = Math.max(err, Math.abs(js[i]! - v.data[i]!));
        expect(err).toBe(info.maxAbsError);
        expectSameBits((await decodeVolumeParallel(bytes, { workers: 2 })).data, js, `${name} ${size.join('×')} (2 threads)`);
      }
    });
  }
});

/**
 * A pbp32 record with random but consistent streams: random predictor and width (0–31) per block,
 * random low bits, and in a `excShare` of the blocks random exceptions of up to 26 high bits.
 * The levels are arbitrary 32-bit integers, far outside what the encoder makes, so the decode
 * exercises every unpack path and the wrapping 32-bit arithmetic of the predictions.
 */
function craftRecord(shape: Shape4, r: () => number, excShare: number): Uint8Array {
  const [C, X, Y, Z] = shape;
  const planes = C * X;
  const YZ = Y * Z;
  const bpp = Math.ceil(YZ / 32);
  const blocks = planes * bpp;
  const hdr = new Uint8Array(blocks);
  const bitmap = new Uint8Array((blocks + 7) >>> 3);
  const meta: number[] = [];
  const words: number[] = [];
  const excBits: number[] = []; // one entry per bit
  const seg = { words: [] as number[], blocks: [] as number[], bits: [] as number[] };
  const pushBits = (bits: number[], v: number, width: number): void => {
    for (let b = 0; b < width; b++) bits.push(Math.floor(v / 2 ** b) % 2);
  };
  const packWords = (bits: number[]): number[] => {
    const out: number[] = [];
    for (let i = 0; i < bits.length; i += 32) {
      let w = 0;
      for (let b = 0; b < 32 && i + b < bits.length; b++) w += bits[i + b]! * 2 ** b;
      out.push(w | 0);
    }
    return out;
  };
  let blk = 0;
  for (let p = 0; p < planes; p++) {
    if (p % 32 === 0) {
      seg.words.push(words.length);
      seg.blocks.push(meta.length / 2);
      seg.bits.push(excBits.length);
    }
    for (let b = 0; b < bpp; b++, blk++) {
      const len = Math.min(32, YZ - b * 32);
      const k = Math.floor(r() * 8);
      const w = r() < 0.3 ? Math.floor(r() * 3) : Math.floor(r() * 32);
      hdr[blk] = (k << 5) | w;
      const bits: number[] = [];
      for (let i = 0; i < len; i++) pushBits(bits, Math.floor(r() * 2 ** w), w);
      words.push(...packWords(bits));
      if (r() < excShare) {
        bitmap[blk >>> 3]! |= 1 << (blk & 7);
        const hw = 1 + Math.floor(r() * 26);
        const e = 1 + Math.floor(r() * len);
        meta.push(e - 1, hw);
        // positions past a partial block's end are legal in the format: the JavaScript decoder drops them
        for (let i = 0; i < e; i++) pushBits(excBits, Math.floor(r() * 32) + 32 * Math.floor(r() * 2 ** hw), 5 + hw);
      }
    }
  }
  const exc = [...packWords(excBits), 0];
  const headerBytes = (blocks + bitmap.length + meta.length + 3) & ~3;
  const payload = new Uint8Array(headerBytes + 4 * (words.length + exc.length));
  payload.set(hdr, 0);
  payload.set(bitmap, blocks);
  payload.set(meta, blocks + bitmap.length);
  const dv = new DataView(payload.buffer);
  [...words, ...exc].forEach((w, i) => dv.setInt32(headerBytes + 4 * i, w, true));
  const base = readEncodedInfo(encodeVolume(vol(shape, (_c, x, y, z) => (x + y + z) % 3), { kind: 'image' }).bytes);
  const header: RecordHeader = {
    kind: 'image',
    shape,
    affine: AFFINE,
    voxels: C * X * Y * Z,
    originDtype: 'float32',
    storage: 'quantized',
    bits: 16,
    scale: 0.3700000000000001,
    offset: -3.25,
    levels: 65536,
    requestedMaxAbsError: 1e-4,
    maxAbsError: 0,
    valueRange: [-3.25, 1],
    codec: 'pbp32',
    payloadBytes: payload.length,
    pbp: {
      ...base.pbp!,
      words: words.length,
      exceptionBlocks: meta.length / 2,
      exceptionWords: exc.length,
      segmentWords: seg.words,
      segmentExceptionBlocks: seg.blocks,
      segmentExceptionBits: seg.bits,
    },
  };
  return reassemble(header, payload);
}

/** Builds a record around an edited header (a valid checksum, so only the decoder's own checks see the lie), in format version 1 (sha256), which this build still reads. */
function reassemble(header: RecordHeader, payload: Uint8Array): Uint8Array {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((PREFIX_BYTES + Buffer.byteLength(json)) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(PREFIX_BYTES + jsonBytes.length + payload.length);
  out.set([0x89, 0x56, 0x4f, 0x43, 0x4f, 0x0d, 0x0a, 0x1a], 0);
  const dv = new DataView(out.buffer);
  dv.setUint16(8, 1, true);
  dv.setUint32(12, jsonBytes.length, true);
  dv.setBigUint64(16, BigInt(payload.length), true);
  out.set(jsonBytes, PREFIX_BYTES);
  out.set(payload, PREFIX_BYTES + jsonBytes.length);
  out.set(createHash('sha256').update(out.subarray(PREFIX_BYTES)).digest(), 24);
  return out;
}
