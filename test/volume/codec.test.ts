import { createRng } from '../../src/util/rng.ts';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BLOCK_SIZE,
  CODEC_MAGIC,
  CacheRecordError,
  PREFIX_BYTES,
  decodeQuantized,
  decodeVolume,
  encodeVolume,
  readEncodedInfo,
} from '../../src/volume/codec.ts';
import { readNifti } from '../../src/volume/nifti-read.ts';
import type { Affine, Shape4, Volume, VoxelArray } from '../../src/volume/volume.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CT = (name: string): string => join(REPO, 'data', 'ct', name);

const AFFINE: Affine = [
  [-1.5, 0, 0, 90.25],
  [0, 1.5, 0, -126.125],
  [0, 0, 3, -72.0000001],
  [0, 0, 0, 1],
];

/** Seeded uniform draws in [0, 1) from the project's generator, so failures reproduce. */
function rng(seed: number): () => number {
  const r = createRng(seed, 'codec-test');
  return () => r.float();
}

function vol<T extends VoxelArray>(shape: Shape4, fill: (i: number, c: number, x: number, y: number, z: number) => number, ctor: { new (n: number): T }): Volume<T> {
  const [C, X, Y, Z] = shape;
  const data = new ctor(C * X * Y * Z);
  let i = 0;
  for (let c = 0; c < C; c++) for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++, i++) data[i] = fill(i, c, x, y, z);
  return { data, shape, affine: AFFINE };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Encodes, decodes, and checks shape/affine/error bookkeeping; returns the decoded volume. */
function roundTrip(v: Volume, maxAbsError = 1e-4) {
  const { bytes, info } = encodeVolume(v, { kind: 'image', maxAbsError });
  const d = decodeVolume(bytes);
  expect(d.data).toBeInstanceOf(Float32Array);
  expect(d.shape).toEqual(v.shape);
  expect(d.affine).toEqual(v.affine);
  const err = maxAbsDiff(d.data, v.data);
  expect(err).toBeLessThanOrEqual(maxAbsError);
  expect(err).toBe(info.maxAbsError);
  expect(info.encodedBytes).toBe(bytes.length);
  expect(readEncodedInfo(bytes)).toEqual(info);
  return { bytes, info, decoded: d };
}

function clipScale(data: ArrayLike<number>): Float32Array {
  // ScaleIntensityRange(a_min −175, a_max 250, b_min 0, b_max 1, clip=True) as VoCo v1 uses it.
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Math.min(1, Math.max(0, (data[i]! + 175) / 425));
  return out;
}

describe('encodeVolume / decodeVolume: images', () => {
  it('round-trips uniform noise in [0, 1] with 13 bits at 1e-4 (odd shape, partial blocks, several segments)', () => {
    const r = rng(1);
    const v = vol([1, 70, 13, 29], () => r(), Float32Array);
    const { info } = roundTrip(v);
    expect(info.storage).toBe('quantized');
    expect(info.bits).toBe(13);
    expect(info.levels).toBeLessThanOrEqual(8192);
    expect(info.offset).toBe(info.valueRange[0]);
    expect(info.maxAbsError).toBeGreaterThan(0.9e-4); // noise hits the worst case
    expect(info.pbp!.segmentWords).toHaveLength(Math.ceil(70 / 32));
    expect(info.pbp!.blocks).toBe(70 * Math.ceil((13 * 29) / BLOCK_SIZE));
  });

  it('decodes a constant volume exactly, zeros included', () => {
    for (const value of [0, 0.5, -1024, 3.25e7]) {
      const v = vol([1, 5, 6, 7], () => value, Float32Array);
      const { info, decoded, bytes } = roundTrip(v);
      expect(info.maxAbsError).toBe(0);
      expect(info.bits).toBe(0);
      expect(Array.from(new Set(decoded.data))).toEqual([value]);
      expect(bytes.length).toBeLessThan(1000);
    }
  });

  it('round-trips ramps along each axis and keeps them tiny', () => {
    const shape: Shape4 = [1, 40, 48, 64];
    for (const axis of [1, 2, 3] as const) {
      const v = vol(shape, (_i, _c, x, y, z) => [0, x / 39, y / 47, z / 63][axis]!, Float32Array);
      const { info } = roundTrip(v);
      expect(info.valueRange).toEqual([0, 1]);
      // A linear ramp is predicted exactly up to the rounding of each level: ≤ 2 bits per voxel.
      expect(info.payloadBytes).toBeLessThan((40 * 48 * 64 * 2) / 8);
    }
  });

  it('round-trips a sparse volume (mostly zero, a few spikes) and keeps zeros exactly zero', () => {
    const r = rng(7);
    const v = vol([1, 64, 64, 32], () => (r() < 0.002 ? r() : 0), Float32Array);
    const { decoded, info } = roundTrip(v);
    for (let i = 0; i < v.data.length; i++) if (v.data[i] === 0) expect(decoded.data[i]).toBe(0);
    expect(info.payloadBytes).toBeLessThan(v.data.length * 0.05);
    // Isolated spikes in zero blocks are patched exceptions over a zero base width.
    expect(info.pbp!.exceptionBlocks).toBeGreaterThan(0);
  });

  it('handles several channels, Z = 1, a single voxel, negative ranges and integer inputs', () => {
    const r = rng(3);
    roundTrip(vol([3, 9, 10, 11], (_i, c) => c * 10 + r(), Float32Array), 1e-3);
    roundTrip(vol([1, 50, 40, 1], () => r() * 2 - 1, Float32Array));
    roundTrip(vol([1, 1, 1, 1], () => 0.123, Float32Array));
    const hu = vol([1, 20, 21, 22], () => Math.round(r() * 4095) - 1024, Int16Array);
    const { info, decoded } = roundTrip(hu, 0.5);
    expect(info.originDtype).toBe('int16');
    expect(info.bits).toBe(12);
    // Integer HU at error 0.5: every level is an integer, so the decode is exact.
    expect(maxAbsDiff(decoded.data, hu.data)).toBe(0);
    roundTrip(vol([1, 8, 8, 8], (i) => Math.sin(i) * 1e-3, Float64Array), 1e-7);
  });

  it('uses the fewest bits for the requested error', () => {
    const r = rng(5);
    const v = vol([1, 16, 16, 16], () => r(), Float32Array);
    expect(encodeVolume(v, { kind: 'image', maxAbsError: 1e-2 }).info.bits).toBe(6); // 51 levels
    expect(encodeVolume(v, { kind: 'image', maxAbsError: 1e-3 }).info.bits).toBe(9); // 501 levels
    expect(encodeVolume(v, { kind: 'image', maxAbsError: 1e-4 }).info.bits).toBe(13); // 5001 levels
    expect(encodeVolume(v, { kind: 'image', maxAbsError: 8e-6 }).info.bits).toBe(16); // 62501 levels
  });

  it('falls back to lossless float32 when 16 bits cannot meet the error', () => {
    const r = rng(11);
    const v = vol([1, 12, 13, 14], () => (r() - 0.5) * 2e6, Float32Array);
    const { info, decoded } = roundTrip(v);
    expect(info.storage).toBe('float32');
    expect(info.codec).toBe('shuffle-deflate');
    expect(info.maxAbsError).toBe(0);
    expect(decoded.data).toEqual(v.data);
    expect(() => decodeQuantized(encodeVolume(v, { kind: 'image' }).bytes)).toThrow(/not integer levels/);
  });

  it('is deterministic', () => {
    const r = rng(9);
    const v = vol([1, 10, 11, 12], () => r(), Float32Array);
    expect(encodeVolume(v, { kind: 'image' }).bytes).toEqual(encodeVolume(v, { kind: 'image' }).bytes);
  });

  it('rejects NaN and ±Infinity with the voxel position', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const v = vol([1, 4, 5, 6], (i) => (i === 77 ? bad : 0.5), Float32Array);
      expect(() => encodeVolume(v, { kind: 'image' })).toThrow(new RegExp(`voxel 77 \\(c=0, x=2, y=2, z=5\\) is ${String(bad).replace('+', '')}`));
    }
    // NaN first: min/max comparisons skip NaN, the explicit scan must not.
    const v = vol([1, 2, 2, 2], (i) => (i === 0 ? NaN : i), Float32Array);
    expect(() => encodeVolume(v, { kind: 'image' })).toThrow(/NaN/);
  });

  it('rejects bad options and shapes', () => {
    const v = vol([1, 2, 2, 2], () => 0.5, Float32Array);
    expect(() => encodeVolume(v, { kind: 'image', maxAbsError: 0 })).toThrow(/maxAbsError/);
    expect(() => encodeVolume(v, { kind: 'picture' as 'image' })).toThrow(/kind/);
    expect(() => encodeVolume({ ...v, shape: [1, 2, 2, 3] }, { kind: 'image' })).toThrow(/needs 12/);
  });

  it('decodes into a caller-provided array and checks its type and size', () => {
    const r = rng(4);
    const v = vol([1, 6, 7, 8], () => r(), Float32Array);
    const { bytes } = encodeVolume(v, { kind: 'image' });
    const out = new Float32Array(v.data.length).fill(42);
    const d = decodeVolume(bytes, { out });
    expect(d.data).toBe(out);
    expect(maxAbsDiff(out, v.data)).toBeLessThanOrEqual(1e-4);
    expect(() => decodeVolume(bytes, { out: new Float32Array(3) })).toThrow(RangeError);
    expect(() => decodeVolume(bytes, { out: new Uint16Array(v.data.length) })).toThrow(/Float32Array/);
  });

  it('decodeQuantized returns the integer levels: q · scale + offset is the decoded image', () => {
    const r = rng(8);
    const v = vol([1, 9, 8, 7], () => r() * 3 - 1, Float32Array);
    const { bytes } = encodeVolume(v, { kind: 'image' });
    const f = decodeVolume(bytes).data;
    const { volume, scale, offset } = decodeQuantized(bytes);
    expect(volume.data).toBeInstanceOf(Uint16Array);
    for (let i = 0; i < f.length; i++) expect(Math.fround(volume.data[i]! * scale + offset)).toBe(f[i]);
  });

  it('reads a record at any byte offset (unaligned buffers from a store)', () => {
    const r = rng(12);
    const v = vol([1, 33, 9, 10], () => r(), Float32Array);
    const { bytes } = encodeVolume(v, { kind: 'image' });
    for (const shift of [1, 2, 3]) {
      const backing = new Uint8Array(bytes.length + shift);
      backing.set(bytes, shift);
      const d = decodeVolume(backing.subarray(shift));
      expect(maxAbsDiff(d.data, v.data)).toBeLessThanOrEqual(1e-4);
    }
  });
});

describe('encodeVolume / decodeVolume: labels', () => {
  it('stores labels ≤ 255 as uint8 and restores them exactly, from float32 or int arrays', () => {
    const r = rng(2);
    const blobs = (_i: number, _c: number, x: number, y: number, z: number) => ((x >> 2) + (y >> 3) + (z >> 2)) % 5 === 0 ? Math.floor(r() * 118) : 0;
    for (const ctor of [Float32Array, Int32Array, Uint8Array, Int16Array] as const) {
      const v = vol([1, 20, 24, 28], blobs, ctor as unknown as { new (n: number): VoxelArray });
      const { bytes, info } = encodeVolume(v, { kind: 'label' });
      expect(info.storage).toBe('uint8');
      expect(info.bits).toBe(8);
      expect(info.maxAbsError).toBe(0);
      const d = decodeVolume(bytes);
      expect(d.data).toBeInstanceOf(Uint8Array);
      expect(Array.from(d.data)).toEqual(Array.from(v.data));
    }
  });

  it('uses uint16 above 255 and rejects what no unsigned 16-bit label can hold', () => {
    const v = vol([1, 7, 8, 9], (i) => (i * 37) % 1000, Float32Array);
    const { bytes, info } = encodeVolume(v, { kind: 'label' });
    expect(info.storage).toBe('uint16');
    const d = decodeVolume(bytes);
    expect(d.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(d.data)).toEqual(Array.from(v.data));
    expect(() => encodeVolume(vol([1, 2, 2, 2], (i) => (i === 3 ? 1.5 : 1), Float32Array), { kind: 'label' })).toThrow(/voxel 3 .* is 1.5, not an integer/);
    expect(() => encodeVolume(vol([1, 2, 2, 2], (i) => (i === 3 ? -1 : 1), Float32Array), { kind: 'label' })).toThrow(/\[0, 65535\]/);
    expect(() => encodeVolume(vol([1, 2, 2, 2], () => 70000, Int32Array), { kind: 'label' })).toThrow(/\[0, 65535\]/);
  });
});

describe('decodeVolume: corrupt and foreign records', () => {
  const r = rng(6);
  const v = vol([1, 40, 12, 13], () => r(), Float32Array);
  const { bytes } = encodeVolume(v, { kind: 'image' });
  const H = new DataView(bytes.buffer).getUint32(12, true);

  it('detects a flipped byte in the payload, the JSON header and the stored checksum', () => {
    for (const at of [PREFIX_BYTES + H + 5, bytes.length - 1, PREFIX_BYTES + 3, 25]) {
      const bad = bytes.slice();
      bad[at]! ^= 0x10;
      expect(() => decodeVolume(bad)).toThrow(CacheRecordError);
      expect(() => decodeVolume(bad)).toThrow(/checksum mismatch: CRC-32 of the header and payload is [0-9a-f]{8}, the record says [0-9a-f]{8}; the record is corrupt/);
    }
    const reserved = bytes.slice();
    reserved[30]! ^= 0x10;
    expect(() => decodeVolume(reserved)).toThrow(/bytes 28–55 after the CRC-32 are not zero/);
  });

  it('detects truncation at any point and trailing garbage', () => {
    for (const len of [0, 5, PREFIX_BYTES - 1, PREFIX_BYTES, PREFIX_BYTES + H, bytes.length - 1]) {
      expect(() => decodeVolume(bytes.subarray(0, len))).toThrow(CacheRecordError);
      expect(() => decodeVolume(bytes.subarray(0, len))).toThrow(/truncated/);
    }
    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expect(() => decodeVolume(longer)).toThrow(/4 trailing bytes/);
  });

  it('names a bad magic, an unknown version and a bad reserved field', () => {
    const foreign = bytes.slice();
    foreign.set(new TextEncoder().encode('PK\x03\x04zipf'), 0);
    expect(() => decodeVolume(foreign)).toThrow(/not a voco volume record: bad magic bytes 504b0304/);
    const newer = bytes.slice();
    new DataView(newer.buffer).setUint16(8, 3, true);
    expect(() => decodeVolume(newer)).toThrow(/unsupported record format version 3 \(this build reads versions 1 and 2\)/);
    const reserved = bytes.slice();
    reserved[10] = 1;
    expect(() => decodeVolume(reserved)).toThrow(/reserved/);
    expect(Array.from(bytes.subarray(0, 8))).toEqual(Array.from(CODEC_MAGIC));
  });

  it('still reads format version 1 records (sha256 checksum) and checks them', () => {
    const v1 = bytes.slice();
    new DataView(v1.buffer).setUint16(8, 1, true);
    v1.set(createHash('sha256').update(v1.subarray(PREFIX_BYTES)).digest(), 24);
    expect(readEncodedInfo(v1).checksum).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(readEncodedInfo(bytes).checksum).toMatch(/^crc32:[0-9a-f]{8}$/);
    expect(Array.from(decodeVolume(v1).data)).toEqual(Array.from(decodeVolume(bytes).data));
    v1[v1.length - 1]! ^= 1;
    expect(() => decodeVolume(v1)).toThrow(/checksum mismatch: sha256 .* the record is corrupt/);
  });

  it('a length field that lies reads as truncation', () => {
    const bad = bytes.slice();
    const dv = new DataView(bad.buffer);
    dv.setUint32(12, H + 8, true);
    expect(() => decodeVolume(bad)).toThrow(/truncated record: the prefix declares/);
  });
});

describe('real CT (TotalSegmentator example, clip-scaled as VoCo v1 does)', () => {
  it('decodes within 1e-4, the recorded error is the true error, and stays under 25% of float32 at native resolution', async () => {
    const img = (await readNifti(CT('totalseg_example_ct.nii.gz'))).toVolume({ dtype: 'float32' });
    const v: Volume<Float32Array> = { data: clipScale(img.data), shape: img.shape, affine: img.affine };
    const { bytes, info, decoded } = roundTrip(v);
    expect(info.shape).toEqual([1, 122, 101, 112]);
    expect(info.bits).toBe(13);
    expect(info.valueRange).toEqual([0, 1]);
    expect(info.maxAbsError).toBeGreaterThan(0);
    expect(bytes.length).toBeLessThan(0.25 * v.data.length * 4);
    // Clipped air and bone are exact.
    for (let i = 0; i < v.data.length; i++) if (v.data[i] === 0) expect(decoded.data[i]).toBe(0);
    expect(decoded.affine).toEqual(img.affine);
  });

  it('restores the 41-class segmentation exactly', async () => {
    const seg = (await readNifti(CT('totalseg_example_ct_sm_seg.nii.gz'))).toVolume({ dtype: 'float32' });
    const { bytes, info } = encodeVolume(seg, { kind: 'label' });
    expect(info.storage).toBe('uint8');
    expect(info.valueRange).toEqual([0, 117]);
    const d = decodeVolume(bytes);
    expect(d.data).toBeInstanceOf(Uint8Array);
    expect(d.data).toEqual(Uint8Array.from(seg.data));
    expect(new Set(d.data).size).toBe(42); // background + 41 classes
    expect(bytes.length).toBeLessThan(seg.data.length / 10);
  });
});
