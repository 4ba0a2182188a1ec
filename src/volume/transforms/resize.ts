/**
 * Resize: resample to a given spatial size, as MONAI `Resize(spatial_size, mode, align_corners)`
 * with mode "trilinear" (MONAI's "bilinear" on 3-D data) or "nearest", anti-aliasing off.
 *
 * - trilinear: torch `interpolate(mode="trilinear")`. Source coordinate per axis:
 *   align_corners → o·(in−1)/(out−1); otherwise max((o+½)·in/out − ½, 0). Weights and sums are
 *   rounded to float32 exactly as torch 1.13's CPU kernel does (bit-identical on the VoCo fixture);
 *   output float32.
 * - nearest: torch `interpolate(mode="nearest")`: src = min(⌊o·(in/out)⌋, in−1) in float32;
 *   keeps the input's array type (labels stay exact).
 * - spatial size −1 on an axis keeps that axis. Same size on every axis: returned unchanged.
 * - affine (MONAI, independent of align_corners): A · S with S = diag(s) and translation (s−1)/2,
 *   s = in/out per axis.
 */
import type { Affine, Volume, VoxelArray } from '../volume.ts';
import { matMul } from './affine.ts';
import { separableGather, separableLinearF32, type LinearAxisTableF32 } from './resample.ts';

export type ResizeMode = 'trilinear' | 'nearest';

export interface ResizeOptions {
  /** 'trilinear' (default; 'bilinear' is accepted as MONAI's name for it) or 'nearest' */
  mode?: ResizeMode | 'bilinear';
  /** trilinear only; default false (torch's default) */
  alignCorners?: boolean;
}

export function normalizeResizeMode(mode: string | undefined): ResizeMode {
  if (mode === undefined || mode === 'trilinear' || mode === 'bilinear') return 'trilinear';
  if (mode === 'nearest') return 'nearest';
  throw new Error(`resize: unknown mode ${JSON.stringify(mode)} (expected "trilinear", "bilinear" or "nearest")`);
}

/** Output spatial size: −1 keeps the input size on that axis. */
export function resolveSpatialSize(spatialSize: readonly number[], inSpatial: readonly number[], what = 'spatial size'): [number, number, number] {
  if (spatialSize.length !== 3) throw new Error(`${what} must have 3 entries, got ${JSON.stringify(spatialSize)}`);
  return spatialSize.map((v, i) => {
    if (v === -1) return inSpatial[i] as number;
    if (!Number.isInteger(v) || v < 1) throw new Error(`${what} entries must be positive integers or -1, got ${JSON.stringify(spatialSize)}`);
    return v;
  }) as [number, number, number];
}

/** MONAI's Resize affine: A · [[s,0,0,(s−1)/2], …], s = in/out. */
export function resizeAffine(affine: Affine, inSpatial: readonly number[], outSpatial: readonly number[]): Affine {
  const s = inSpatial.map((n, i) => n / (outSpatial[i] as number));
  const m: Affine = [
    [s[0]!, 0, 0, (s[0]! - 1) / 2],
    [0, s[1]!, 0, (s[1]! - 1) / 2],
    [0, 0, s[2]!, (s[2]! - 1) / 2],
    [0, 0, 0, 1],
  ];
  return matMul(affine, m);
}

/** torch's linear source indices and float32 weights for one axis (CPU kernel, float32 input). */
export function torchLinearTable(nIn: number, nOut: number, alignCorners: boolean): LinearAxisTableF32 {
  const f = Math.fround;
  const i0 = new Int32Array(nOut);
  const i1 = new Int32Array(nOut);
  const w0 = new Float32Array(nOut);
  const w1 = new Float32Array(nOut);
  const scale = alignCorners ? (nOut > 1 ? f((nIn - 1) / (nOut - 1)) : 0) : f(nIn / nOut);
  for (let o = 0; o < nOut; o++) {
    // torch (CPU, float32 tensors): the scale is a float, the source index is evaluated in double
    // (CPU acc_type of float), its integer part gives i0 and the fraction is stored as a float
    // weight w1; w0 = 1 − w1 in float.
    let real = alignCorners ? scale * o : scale * (o + 0.5) - 0.5;
    if (real < 0) real = 0;
    let idx = Math.floor(real);
    if (idx > nIn - 1) idx = nIn - 1;
    const lambda1 = f(Math.min(Math.max(real - idx, 0), 1));
    i0[o] = idx;
    i1[o] = idx < nIn - 1 ? idx + 1 : idx;
    w1[o] = lambda1;
    w0[o] = f(1 - lambda1);
  }
  return { i0, i1, w0, w1 };
}

/** torch's legacy "nearest" source index for one axis. */
export function torchNearestIndex(nIn: number, nOut: number): Int32Array {
  const f = Math.fround;
  const idx = new Int32Array(nOut);
  if (nOut === nIn) {
    for (let o = 0; o < nOut; o++) idx[o] = o;
  } else if (nOut === 2 * nIn) {
    for (let o = 0; o < nOut; o++) idx[o] = o >> 1;
  } else {
    const scale = f(nIn / nOut);
    for (let o = 0; o < nOut; o++) idx[o] = Math.min(Math.floor(f(o * scale)), nIn - 1);
  }
  return idx;
}

export function resize(vol: Volume, spatialSize: readonly number[], opts?: ResizeOptions & { mode?: 'trilinear' | 'bilinear' }): { volume: Volume<Float32Array> };
export function resize<T extends VoxelArray>(vol: Volume<T>, spatialSize: readonly number[], opts: ResizeOptions & { mode: 'nearest' }): { volume: Volume<T> };
export function resize(vol: Volume, spatialSize: readonly number[], opts?: ResizeOptions): { volume: Volume<VoxelArray> };
export function resize(vol: Volume, spatialSize: readonly number[], opts: ResizeOptions = {}): { volume: Volume<VoxelArray> } {
  const mode = normalizeResizeMode(opts.mode);
  const [C, X, Y, Z] = vol.shape;
  const inSp = [X, Y, Z];
  const out = resolveSpatialSize(spatialSize, inSp, 'resize: spatial size');
  if (X * Y * Z === 0) throw new Error(`resize: input has an empty spatial shape [${inSp.join(', ')}] (was the foreground crop empty?)`);
  if (out.every((n, i) => n === inSp[i])) {
    return { volume: { data: vol.data, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) } };
  }
  const affine = resizeAffine(vol.affine, inSp, out);
  const shape: [number, number, number, number] = [C, out[0], out[1], out[2]];
  if (mode === 'nearest') {
    const data = separableGather(vol.data, vol.shape, [torchNearestIndex(X, out[0]), torchNearestIndex(Y, out[1]), torchNearestIndex(Z, out[2])]);
    return { volume: { data, shape, affine } };
  }
  const ac = opts.alignCorners ?? false;
  const data = separableLinearF32(vol.data, vol.shape, [torchLinearTable(X, out[0], ac), torchLinearTable(Y, out[1], ac), torchLinearTable(Z, out[2], ac)]);
  return { volume: { data, shape, affine } };
}
