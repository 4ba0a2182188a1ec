/**
 * CropForeground: crop to the bounding box of the voxels selected by `select` (default `x > 0`;
 * `threshold: t` means `x > t`), as MONAI `CropForeground(select_fn, margin, allow_smaller=True,
 * k_divisible=1)`. A voxel counts when it is selected in any (chosen) channel.
 *
 * Box rules: on each axis [first − margin, last + margin + 1), clamped to the image when
 * `allowSmaller` (default); then, with `kDivisible` k, the size is rounded up to a multiple of k
 * and the start moves back by ⌊(new − old)/2⌋. Parts of a box outside the image are filled with
 * `value` (0). With no foreground the box is empty ([0,0,0]–[0,0,0]) and so is the output, as in
 * MONAI.
 *
 * The box is reported as chain.json gives it: `start` inclusive, `end` exclusive, spatial axes.
 * `cropToBox` applies a box computed from the image to another volume on the same grid (a label).
 */
import type { Volume, VoxelArray } from '../volume.ts';
import { shiftOrigin } from './affine.ts';
import { allocLike } from './resample.ts';

export type Triple = [number, number, number];

export interface CropBox {
  start: Triple;
  end: Triple;
}

export interface CropForegroundOptions {
  /** foreground = x > threshold (default 0); ignored when `select` is given */
  threshold?: number;
  /** custom foreground test (not serialisable; programmatic use only) */
  select?: (value: number) => boolean;
  /** margin in voxels, one number or per axis (default 0) */
  margin?: number | readonly number[];
  /** clamp the box to the image (default true) */
  allowSmaller?: boolean;
  /** make the box size divisible by k, one number or per axis (default 1) */
  kDivisible?: number | readonly number[];
  /** channels that decide the foreground (default all) */
  channelIndices?: readonly number[];
  /** fill for parts of the box outside the image (default 0) */
  value?: number;
}

function triple(v: number | readonly number[] | undefined, dflt: number, name: string, min: number): Triple {
  const t = v === undefined ? [dflt, dflt, dflt] : typeof v === 'number' ? [v, v, v] : [...v];
  if (t.length !== 3 || t.some((x) => !Number.isInteger(x) || x < min)) {
    throw new Error(`cropForeground: ${name} must be an integer ≥ ${min} or 3 of them, got ${JSON.stringify(v)}`);
  }
  return t as Triple;
}

/** The foreground bounding box of `vol` (see the module comment for the rules). */
export function foregroundBox(vol: Volume, opts: CropForegroundOptions = {}): CropBox {
  const [C, X, Y, Z] = vol.shape;
  const margin = triple(opts.margin, 0, 'margin', 0);
  const kDiv = triple(opts.kDivisible, 1, 'kDivisible', 1);
  const allowSmaller = opts.allowSmaller ?? true;
  const channels = opts.channelIndices ?? Array.from({ length: C }, (_, i) => i);
  for (const c of channels) if (!Number.isInteger(c) || c < 0 || c >= C) throw new Error(`cropForeground: channel index ${c} out of range [0, ${C})`);
  const anyX = new Uint8Array(X);
  const anyY = new Uint8Array(Y);
  const anyZ = new Uint8Array(Z);
  const data = vol.data;
  const select = opts.select;
  const t = opts.threshold ?? 0;
  if (!select && (typeof t !== 'number' || Number.isNaN(t))) throw new Error('cropForeground: threshold must be a number');
  for (const c of channels) {
    for (let x = 0; x < X; x++) {
      for (let y = 0; y < Y; y++) {
        const base = ((c * X + x) * Y + y) * Z;
        let rowAny = false;
        if (select) {
          for (let z = 0; z < Z; z++) {
            if (select(data[base + z] as number)) {
              anyZ[z] = 1;
              rowAny = true;
            }
          }
        } else {
          for (let z = 0; z < Z; z++) {
            if ((data[base + z] as number) > t) {
              anyZ[z] = 1;
              rowAny = true;
            }
          }
        }
        if (rowAny) {
          anyX[x] = 1;
          anyY[y] = 1;
        }
      }
    }
  }
  const size: Triple = [X, Y, Z];
  const start: Triple = [0, 0, 0];
  const end: Triple = [0, 0, 0];
  const marks = [anyX, anyY, anyZ];
  for (let a = 0; a < 3; a++) {
    const m = marks[a]!;
    const first = m.indexOf(1);
    if (first < 0) return { start: [0, 0, 0], end: [0, 0, 0] };
    const last = m.lastIndexOf(1);
    let s = first - margin[a]!;
    let e = last + margin[a]! + 1;
    if (allowSmaller) {
      s = Math.max(s, 0);
      e = Math.min(e, size[a]!);
    }
    start[a] = s;
    end[a] = e;
  }
  for (let a = 0; a < 3; a++) {
    const orig = end[a]! - start[a]!;
    const k = kDiv[a]!;
    const want = Math.ceil(orig / k) * k;
    start[a] = start[a]! - Math.floor((want - orig) / 2);
    end[a] = start[a]! + want;
  }
  return { start, end };
}

/**
 * Crop `vol` to `box` (start inclusive, end exclusive, may extend past the image: filled with
 * `value`). The affine's origin moves to the box start.
 */
export function cropToBox<T extends VoxelArray>(vol: Volume<T>, box: CropBox, value = 0): { volume: Volume<T> } {
  const [C, X, Y, Z] = vol.shape;
  const { start, end } = box;
  const out = [0, 1, 2].map((a) => Math.max(0, end[a]! - start[a]!)) as Triple;
  const [ox, oy, oz] = out;
  const data = allocLike(vol.data, C * ox * oy * oz);
  if (value !== 0) data.fill(value);
  // intersection with the image, in input coordinates
  const lo = [0, 1, 2].map((a) => Math.max(start[a]!, 0));
  const hi = [0, 1, 2].map((a) => Math.min(end[a]!, [X, Y, Z][a]!));
  if (hi.every((h, a) => h > lo[a]!)) {
    const zLen = hi[2]! - lo[2]!;
    for (let c = 0; c < C; c++) {
      for (let x = lo[0]!; x < hi[0]!; x++) {
        for (let y = lo[1]!; y < hi[1]!; y++) {
          const src = ((c * X + x) * Y + y) * Z + lo[2]!;
          const dst = ((c * ox + (x - start[0])) * oy + (y - start[1])) * oz + (lo[2]! - start[2]);
          data.set(vol.data.subarray(src, src + zLen) as ArrayLike<number>, dst);
        }
      }
    }
  }
  return { volume: { data, shape: [C, ox, oy, oz], affine: shiftOrigin(vol.affine, start) } };
}

export interface CropForegroundResult<T extends VoxelArray> {
  volume: Volume<T>;
  box: CropBox;
  /** no voxel was selected: the box and the output are empty */
  empty: boolean;
}

export function cropForeground<T extends VoxelArray>(vol: Volume<T>, opts: CropForegroundOptions = {}): CropForegroundResult<T> {
  const box = foregroundBox(vol, opts);
  const empty = box.end.some((e, a) => e - box.start[a]! <= 0);
  return { volume: cropToBox(vol, box, opts.value ?? 0).volume, box, empty };
}
