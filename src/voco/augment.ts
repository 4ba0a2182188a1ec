/**
 * Per-crop VoCo augmentations (REFERENCE §1.3, §2.1), applied in place to one single-channel crop
 * stored as a Float32Array in C order over [X, Y, Z] (Z fastest):
 *
 * 1. flip axis 0, then axis 1, then axis 2, each independently with probability `flipProb`
 *    (MONAI RandFlipd ×3);
 * 2. rotate by k quarter turns in the (0, 1) plane with probability `rotate90Prob`, k uniform in
 *    {1, 2, 3} (RandRotate90d max_k 3), in numpy.rot90(arr, k, axes=(0, 1)) direction:
 *    k = 1 gives out[i, j, :] = in[j, X − 1 − i, :]; needs X = Y;
 * 3. with probability `shiftProb` add one offset drawn uniform in [−shiftOffset, shiftOffset)
 *    to every voxel (RandShiftIntensityd); the offset is rounded to float32 first, as torch
 *    does when adding a Python float to a float32 tensor.
 *
 * Draw order (fixed, so a seed reproduces the same crops): every crop consumes exactly 7 draws
 * from its Rng, whatever the outcome — chance(flipProb) for axis 0, 1, 2; chance(rotate90Prob);
 * int(1, 4) for k; chance(shiftProb); float() for the offset. Draws that end up unused are still
 * taken, so a crop's draws never depend on an earlier crop's outcome.
 */
import type { Rng } from '../util/rng.ts';

export interface CropAugmentation {
  /** Probability of flipping each axis (independently). */
  readonly flipProb: number;
  /** Probability of a rot90 in the (0, 1) plane, k ∈ {1, 2, 3}. */
  readonly rotate90Prob: number;
  /** Probability of an intensity shift. */
  readonly shiftProb: number;
  /** The shift is uniform in [−shiftOffset, shiftOffset). */
  readonly shiftOffset: number;
}

export const VOCO_V1_AUGMENTATION: CropAugmentation = Object.freeze({ flipProb: 0.2, rotate90Prob: 0.2, shiftProb: 0.1, shiftOffset: 0.1 });
export const VOCO_V2_AUGMENTATION: CropAugmentation = Object.freeze({ flipProb: 0.2, rotate90Prob: 0.2, shiftProb: 0.5, shiftOffset: 0.1 });
export const NO_AUGMENTATION: CropAugmentation = Object.freeze({ flipProb: 0, rotate90Prob: 0, shiftProb: 0, shiftOffset: 0 });

/** What one crop gets: the outcome of its 7 draws. */
export interface CropAugmentationDraw {
  flip: [boolean, boolean, boolean];
  /** Quarter turns in the (0, 1) plane, 0 = none. */
  rotate90: 0 | 1 | 2 | 3;
  /** Added to every voxel (a float32 value); 0 = no shift. */
  shift: number;
}

export const DRAWS_PER_CROP = 7;

export function validateAugmentation(a: CropAugmentation): void {
  const problems: string[] = [];
  for (const key of ['flipProb', 'rotate90Prob', 'shiftProb'] as const) {
    const p = a[key];
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) problems.push(`${key} must be a probability in [0, 1], got ${JSON.stringify(p)}`);
  }
  if (typeof a.shiftOffset !== 'number' || !(a.shiftOffset >= 0) || !Number.isFinite(a.shiftOffset)) {
    problems.push(`shiftOffset must be a finite number ≥ 0, got ${JSON.stringify(a.shiftOffset)}`);
  }
  if (problems.length > 0) throw new Error(`invalid crop augmentation:\n  - ${problems.join('\n  - ')}`);
}

/** Takes the crop's 7 draws (see the module comment for the order). */
export function drawCropAugmentation(a: CropAugmentation, rng: Rng): CropAugmentationDraw {
  const flip: [boolean, boolean, boolean] = [rng.chance(a.flipProb), rng.chance(a.flipProb), rng.chance(a.flipProb)];
  const rotate = rng.chance(a.rotate90Prob);
  const k = rng.int(1, 4) as 1 | 2 | 3;
  const doShift = rng.chance(a.shiftProb);
  const u = rng.float();
  return { flip, rotate90: rotate ? k : 0, shift: doShift ? Math.fround(-a.shiftOffset + 2 * a.shiftOffset * u) : 0 };
}

function checkCrop(crop: Float32Array, shape: readonly [number, number, number], fn: string): void {
  const n = shape[0] * shape[1] * shape[2];
  if (crop.length !== n) throw new Error(`${fn}: crop has ${crop.length} voxels but shape [${shape.join(', ')}] needs ${n}`);
}

/** Reverses `crop` along `axis` (0, 1 or 2) in place. */
export function flipAxis(crop: Float32Array, shape: readonly [number, number, number], axis: 0 | 1 | 2): void {
  checkCrop(crop, shape, 'flipAxis');
  const [X, Y, Z] = shape;
  if (axis === 2) {
    for (let row = 0; row < X * Y; row++) crop.subarray(row * Z, (row + 1) * Z).reverse();
  } else if (axis === 1) {
    const plane = Y * Z;
    for (let x = 0; x < X; x++) {
      for (let y = 0; y < Y >> 1; y++) swapRuns(crop, x * plane + y * Z, x * plane + (Y - 1 - y) * Z, Z);
    }
  } else {
    const plane = Y * Z;
    for (let x = 0; x < X >> 1; x++) swapRuns(crop, x * plane, (X - 1 - x) * plane, plane);
  }
}

function swapRuns(a: Float32Array, p: number, q: number, n: number): void {
  for (let t = 0; t < n; t++) {
    const v = a[p + t]!;
    a[p + t] = a[q + t]!;
    a[q + t] = v;
  }
}

/**
 * Rotates `crop` by k quarter turns in the (0, 1) plane in place, as numpy.rot90(crop, k,
 * axes=(0, 1)): k = 1 gives out[i, j, :] = in[j, N − 1 − i, :]. Needs X = Y.
 */
export function rotate90XY(crop: Float32Array, shape: readonly [number, number, number], k: number): void {
  checkCrop(crop, shape, 'rotate90XY');
  const [X, Y, Z] = shape;
  const turns = ((k % 4) + 4) % 4;
  if (turns === 0) return;
  if (X !== Y) throw new Error(`rotate90XY: a quarter turn in the (0, 1) plane needs a square crop, got [${shape.join(', ')}]`);
  if (turns === 2) {
    flipAxis(crop, shape, 0);
    flipAxis(crop, shape, 1);
    return;
  }
  const N = X;
  const row = (i: number, j: number) => (i * N + j) * Z;
  // Four z-rows at a time: p0 = (i, j), p1 = (j, N−1−i), p2 = (N−1−i, N−1−j), p3 = (N−1−j, i).
  // k = 1 moves p1→p0, p2→p1, p3→p2, p0→p3; k = 3 the other way round.
  for (let i = 0; i < N >> 1; i++) {
    for (let j = 0; j < (N + 1) >> 1; j++) {
      const p0 = row(i, j);
      const p1 = row(j, N - 1 - i);
      const p2 = row(N - 1 - i, N - 1 - j);
      const p3 = row(N - 1 - j, i);
      if (turns === 1) {
        for (let z = 0; z < Z; z++) {
          const t = crop[p0 + z]!;
          crop[p0 + z] = crop[p1 + z]!;
          crop[p1 + z] = crop[p2 + z]!;
          crop[p2 + z] = crop[p3 + z]!;
          crop[p3 + z] = t;
        }
      } else {
        for (let z = 0; z < Z; z++) {
          const t = crop[p0 + z]!;
          crop[p0 + z] = crop[p3 + z]!;
          crop[p3 + z] = crop[p2 + z]!;
          crop[p2 + z] = crop[p1 + z]!;
          crop[p1 + z] = t;
        }
      }
    }
  }
}

/** Adds `offset` to every voxel (float32 arithmetic). */
export function shiftIntensity(crop: Float32Array, offset: number): void {
  const o = Math.fround(offset);
  for (let i = 0; i < crop.length; i++) crop[i] = crop[i]! + o;
}

/** Applies a drawn augmentation in place: flips (axis 0, 1, 2), rot90, shift. */
export function applyCropAugmentation(crop: Float32Array, shape: readonly [number, number, number], draw: CropAugmentationDraw): void {
  checkCrop(crop, shape, 'applyCropAugmentation');
  for (const axis of [0, 1, 2] as const) if (draw.flip[axis]) flipAxis(crop, shape, axis);
  if (draw.rotate90 !== 0) rotate90XY(crop, shape, draw.rotate90);
  if (draw.shift !== 0) shiftIntensity(crop, draw.shift);
}

/** Draws (7 draws) and applies the augmentation to one crop in place; returns what was drawn. */
export function augmentCrop(crop: Float32Array, shape: readonly [number, number, number], a: CropAugmentation, rng: Rng): CropAugmentationDraw {
  const draw = drawCropAugmentation(a, rng);
  applyCropAugmentation(crop, shape, draw);
  return draw;
}
