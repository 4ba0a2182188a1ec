/**
 * Spacing: resample to new voxel sizes (`pixdim`, mm), as MONAI `Spacing(pixdim, mode,
 * padding_mode="border", align_corners=False, dtype=float64, diagonal=False, scale_extent=False)`.
 *
 * Geometry (see the fixtures README):
 * - new linear part R·diag(pixdim), where R = rzs·inv(chol(rzsᵀ·rzs)ᵀ) keeps the direction cosines;
 * - output shape round_half_even(ptp(corners_out) + 1) over the 8 input corner voxel centres mapped
 *   into the new voxel grid (`solve(A_new, A_in)·corner`);
 * - origin: the world position of the input corner that is smallest on every output axis
 *   (input voxel 0 when no corner is);
 * - sampling: output voxel j reads input coordinate `inv(A_in)·A_new·j`, trilinear in float64 with
 *   border clamping (float32 out) or nearest (round half to even; keeps the array type);
 * - if A_new ≈ A_in (atol 1e-3) and the shape is unchanged, nothing is resampled.
 *
 * Orthogonal-column affines (every scanner affine without shear, rotated or not) give a diagonal
 * voxel map, which runs through separable per-axis tables; other affines use the per-voxel path.
 */
import type { Affine, Volume, VoxelArray } from '../volume.ts';
import { allClose, applyAffine, checkAffine, cholesky, composeAffine, invert, linearPart, matMul, roundHalfEven, solve, transpose } from './affine.ts';
import { generalLinear, generalNearest, linearAxisTable, nearestAxisIndex, separableGather, separableLinear } from './resample.ts';

export type SpacingMode = 'bilinear' | 'nearest';

/** Tolerance for "same grid" (MONAI's AFFINE_TOL). */
export const SPACING_SKIP_ATOL = 1e-3;
/** Off-diagonal magnitude (voxels per voxel) below which the voxel map is treated as diagonal. */
const DIAGONAL_TOL = 1e-9;

export interface SpacingGeometry {
  affine: Affine;
  spatialShape: [number, number, number];
  /** true when MONAI would skip resampling (same affine within 1e-3 and same shape) */
  skip: boolean;
  /** voxel map output index → input coordinate (3×4 rows), `inv(A_in)·A_new` */
  voxelMap: number[][];
  /** whether voxelMap is diagonal (separable path) */
  diagonal: boolean;
}

export function normalizePixdim(pixdim: number | readonly number[]): [number, number, number] {
  const p = typeof pixdim === 'number' ? [pixdim, pixdim, pixdim] : [...pixdim];
  if (p.length !== 3 || p.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) {
    throw new Error(`pixdim must be a positive number or 3 positive numbers, got ${JSON.stringify(pixdim)}`);
  }
  return p as [number, number, number];
}

/** The output grid of Spacing for an input grid (affine + spatial shape). */
export function spacingGeometry(affineIn: Affine, spatialShape: readonly number[], pixdim: number | readonly number[]): SpacingGeometry {
  checkAffine(affineIn, 'input affine');
  const p = normalizePixdim(pixdim);
  const rzs = linearPart(affineIn);
  let zs: number[][];
  try {
    zs = transpose(cholesky(matMul(transpose(rzs), rzs)));
  } catch {
    throw new Error('spacing: input affine is singular');
  }
  const rotation = matMul(rzs, invert(zs));
  const s = p.map((v, i) => Math.sign(zs[i]![i]!) * Math.abs(v));
  const lin = matMul(rotation, [
    [s[0]!, 0, 0],
    [0, s[1]!, 0],
    [0, 0, s[2]!],
  ]);
  const a0 = composeAffine(lin, [0, 0, 0]);

  // corners of the input (voxel centres), meshgrid 'ij' order, mapped into the new voxel grid
  const n = [...spatialShape];
  const corners: number[][] = [];
  for (const a of [0, n[0]! - 1]) for (const b of [0, n[1]! - 1]) for (const c of [0, n[2]! - 1]) corners.push([a, b, c, 1]);
  const toOut = solve(a0, affineIn);
  const cornersOut = matMul(toOut, transpose(corners)); // 4×8
  const shape = [0, 1, 2].map((i) => {
    const row = cornersOut[i]!.map((v, k) => v / cornersOut[3]![k]!);
    return roundHalfEven(Math.max(...row) - Math.min(...row) + 1);
  }) as [number, number, number];

  // origin: the input corner that is the minimum on every output axis (else corner 0)
  const m = linearPart(toOut);
  let originCorner = corners[0]!;
  for (const ci of corners) {
    let isMin = true;
    for (let ax = 0; ax < 3 && isMin; ax++) {
      let minDiff = Infinity;
      for (const cj of corners) {
        const d = m[ax]![0]! * (cj[0]! - ci[0]!) + m[ax]![1]! * (cj[1]! - ci[1]!) + m[ax]![2]! * (cj[2]! - ci[2]!);
        if (d < minDiff) minDiff = d;
      }
      if (!(Math.abs(minDiff) <= 1e-8)) isMin = false;
    }
    if (isMin) {
      originCorner = ci;
      break;
    }
  }
  const offset = applyAffine(affineIn, originCorner);
  const affine = composeAffine(lin, offset);
  const skip = allClose(affine, affineIn, SPACING_SKIP_ATOL) && shape.every((v, i) => v === n[i]);
  const voxelMap = solve(affineIn, affine).slice(0, 3);
  let diagonal = true;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) if (i !== j && Math.abs(voxelMap[i]![j]!) > DIAGONAL_TOL) diagonal = false;
  return { affine, spatialShape: shape, skip, voxelMap, diagonal };
}

export interface SpacingResult<T extends VoxelArray> {
  volume: Volume<T>;
  /** true when MONAI's "same grid" rule skipped resampling */
  skipped: boolean;
}

export interface SpacingInternals {
  /** force the per-voxel path even for diagonal maps (tests) */
  forceGeneral?: boolean;
}

export function spacing(vol: Volume, pixdim: number | readonly number[], mode?: 'bilinear', internals?: SpacingInternals): SpacingResult<Float32Array>;
export function spacing<T extends VoxelArray>(vol: Volume<T>, pixdim: number | readonly number[], mode: 'nearest', internals?: SpacingInternals): SpacingResult<T>;
export function spacing(vol: Volume, pixdim: number | readonly number[], mode: SpacingMode, internals?: SpacingInternals): SpacingResult<VoxelArray>;
export function spacing(vol: Volume, pixdim: number | readonly number[], mode: SpacingMode = 'bilinear', internals: SpacingInternals = {}): SpacingResult<VoxelArray> {
  if (mode !== 'bilinear' && mode !== 'nearest') throw new Error(`spacing: unknown mode ${JSON.stringify(mode)} (expected "bilinear" or "nearest")`);
  const [C, X, Y, Z] = vol.shape;
  const geo = spacingGeometry(vol.affine, [X, Y, Z], pixdim);
  if (geo.skip) {
    const data = mode === 'bilinear' && !(vol.data instanceof Float32Array) ? Float32Array.from(vol.data as ArrayLike<number>) : vol.data;
    return { volume: { data, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) }, skipped: true };
  }
  const [nx, ny, nz] = geo.spatialShape;
  const m = geo.voxelMap;
  const shape: [number, number, number, number] = [C, nx, ny, nz];
  let data: VoxelArray;
  if (geo.diagonal && !internals.forceGeneral) {
    const coord = (a: number) => (o: number) => m[a]![a]! * o + m[a]![3]!;
    if (mode === 'bilinear') {
      data = separableLinear(vol.data, vol.shape, [
        linearAxisTable(nx, X, coord(0)),
        linearAxisTable(ny, Y, coord(1)),
        linearAxisTable(nz, Z, coord(2)),
      ]);
    } else {
      data = separableGather(vol.data, vol.shape, [nearestAxisIndex(nx, X, coord(0)), nearestAxisIndex(ny, Y, coord(1)), nearestAxisIndex(nz, Z, coord(2))]);
    }
  } else {
    data = mode === 'bilinear' ? generalLinear(vol.data, vol.shape, m, geo.spatialShape) : generalNearest(vol.data, vol.shape, m, geo.spatialShape);
  }
  return { volume: { data, shape, affine: geo.affine }, skipped: false };
}
