/**
 * Helpers for the MONAI parity tests: reading the stored fixture pieces (`_sub`, planes, label
 * NIfTIs) from test/fixtures/transforms and cutting the same pieces out of our full volumes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readNifti } from '../../../src/volume/nifti-read.ts';
import type { Volume, VoxelArray } from '../../../src/volume/volume.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/transforms/', import.meta.url));
export const CT_DIR = fileURLToPath(new URL('../../../data/ct/', import.meta.url));

export function readJson<T = any>(rel: string): T {
  return JSON.parse(readFileSync(FIXTURES + rel, 'utf8')) as T;
}

export function readF32(rel: string): Float32Array {
  const b = readFileSync(FIXTURES + rel);
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

export function asF32(a: VoxelArray): Float32Array {
  return a instanceof Float32Array ? a : Float32Array.from(a as ArrayLike<number>);
}

export function sha256Bytes(a: ArrayBufferView): string {
  return createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

/** sha256 of the float32 C-order bytes, as chain.json's `full_sha256`. */
export function sha256F32(a: VoxelArray): string {
  return sha256Bytes(asF32(a));
}

/** a[:, o::s, o::s, o::s] (offset/stride per tensor axis, channel first). */
export function subsample(vol: Volume, offset: number[], stride: number[]): Float32Array {
  const [C, X, Y, Z] = vol.shape;
  const out: number[] = [];
  for (let c = offset[0]!; c < C; c += stride[0]!)
    for (let x = offset[1]!; x < X; x += stride[1]!)
      for (let y = offset[2]!; y < Y; y += stride[2]!)
        for (let z = offset[3]!; z < Z; z += stride[3]!) out.push(vol.data[((c * X + x) * Y + y) * Z + z] as number);
  return Float32Array.from(out);
}

/** np.take(a, index, axis) for tensor axis 1..3, C order over the remaining axes. */
export function plane(vol: Volume, axis: number, index: number): Float32Array {
  const [C, X, Y, Z] = vol.shape;
  const out: number[] = [];
  for (let c = 0; c < C; c++)
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) {
          if ((axis === 1 && x !== index) || (axis === 2 && y !== index) || (axis === 3 && z !== index)) continue;
          out.push(vol.data[((c * X + x) * Y + y) * Z + z] as number);
        }
  return Float32Array.from(out);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d > m || Number.isNaN(d)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function affineMaxDiff(a: number[][], b: number[][]): number {
  let m = 0;
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) m = Math.max(m, Math.abs(a[i]![j]! - b[i]![j]!));
  return m;
}

export interface StoredPieces {
  /** max abs error per stored piece, keyed by file name */
  errors: Record<string, number>;
  max: number;
}

/** Compare every stored piece of a step (`_sub` and planes) with our full volume. */
export function compareStored(vol: Volume, dir: string, data: any): StoredPieces {
  const errors: Record<string, number> = {};
  const files = data.files ?? {};
  if (files.sub) {
    const ref = readF32(`${dir}/${files.sub}`);
    errors[files.sub] = maxAbsDiff(subsample(vol, data.subsample.offset, data.subsample.stride), ref);
  }
  for (const p of files.planes ?? []) errors[p.file] = maxAbsDiff(plane(vol, p.axis, p.index), readF32(`${dir}/${p.file}`));
  if (files.full) errors[files.full] = maxAbsDiff(vol.data, readF32(`${dir}/${files.full}`));
  const vals = Object.values(errors);
  if (vals.length === 0) throw new Error(`no stored pieces for ${dir}`);
  return { errors, max: Math.max(...vals) };
}

export function ctPath(file: string): string {
  const p = CT_DIR + file;
  if (!existsSync(p)) throw new Error(`test input ${p} is missing (the CTs live in data/ct/ of this repository)`);
  return p;
}

/** A CT as LoadImaged(image_only=True) gives it (float32, scaling applied), channel first. */
export async function loadCtFloat32(file: string): Promise<Volume<Float32Array>> {
  return (await readNifti(ctPath(file))).toVolume({ dtype: 'float32' });
}

export async function loadCtRaw(file: string): Promise<Volume<VoxelArray>> {
  return (await readNifti(ctPath(file))).toVolume({ dtype: 'raw' });
}

/** A stored uint8 label NIfTI of the fixtures, as a [1, X, Y, Z] Uint8Array volume. */
export async function loadFixtureLabel(rel: string): Promise<Volume<Uint8Array>> {
  const v = (await readNifti(FIXTURES + rel)).toVolume({ dtype: 'raw' });
  if (!(v.data instanceof Uint8Array)) throw new Error(`${rel}: expected uint8 label data`);
  return v as Volume<Uint8Array>;
}

export function fmt(x: number): string {
  return x === 0 ? '0' : x.toExponential(2);
}
