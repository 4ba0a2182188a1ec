/**
 * SpatialPad: pad each spatial axis up to `spatialSize` (never crops), as MONAI
 * `SpatialPad(spatial_size, method="symmetric", mode="constant", value=0)`.
 * Symmetric: before = ⌊(target − n)/2⌋, after = the rest; "end": everything after.
 * −1 keeps an axis. The affine's origin moves by −before voxels.
 */
import type { Volume, VoxelArray } from '../volume.ts';
import { shiftOrigin } from './affine.ts';
import { allocLike } from './resample.ts';

export type PadMethod = 'symmetric' | 'end';

export interface SpatialPadOptions {
  method?: PadMethod;
  /** constant fill (default 0) */
  value?: number;
}

/** [before, after] per tensor axis, channel first (chain.json's `pad_width`). */
export type PadWidth = [[number, number], [number, number], [number, number], [number, number]];

export function padWidths(spatial: readonly number[], spatialSize: readonly number[], method: PadMethod = 'symmetric'): PadWidth {
  if (spatialSize.length !== 3) throw new Error(`spatialPad: spatial size must have 3 entries, got ${JSON.stringify(spatialSize)}`);
  if (method !== 'symmetric' && method !== 'end') throw new Error(`spatialPad: unknown method ${JSON.stringify(method)} (expected "symmetric" or "end")`);
  const pw: PadWidth = [
    [0, 0],
    [0, 0],
    [0, 0],
    [0, 0],
  ];
  for (let a = 0; a < 3; a++) {
    const target = spatialSize[a] as number;
    if (target !== -1 && (!Number.isInteger(target) || target < 1)) throw new Error(`spatialPad: spatial size entries must be positive integers or -1, got ${JSON.stringify(spatialSize)}`);
    const width = target === -1 ? 0 : Math.max(target - (spatial[a] as number), 0);
    const before = method === 'symmetric' ? Math.floor(width / 2) : 0;
    pw[a + 1] = [before, width - before];
  }
  return pw;
}

export function spatialPad<T extends VoxelArray>(vol: Volume<T>, spatialSize: readonly number[], opts: SpatialPadOptions = {}): { volume: Volume<T>; padWidth: PadWidth } {
  const [C, X, Y, Z] = vol.shape;
  const padWidth = padWidths([X, Y, Z], spatialSize, opts.method ?? 'symmetric');
  const value = opts.value ?? 0;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new Error('spatialPad: value must be a number');
  if (padWidth.every(([b, a]) => b === 0 && a === 0)) {
    return { volume: { data: vol.data, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) }, padWidth };
  }
  const [bx, by, bz] = [padWidth[1][0], padWidth[2][0], padWidth[3][0]];
  const ox = X + bx + padWidth[1][1];
  const oy = Y + by + padWidth[2][1];
  const oz = Z + bz + padWidth[3][1];
  const data = allocLike(vol.data, C * ox * oy * oz);
  if (value !== 0) data.fill(value);
  const src = vol.data as VoxelArray;
  for (let c = 0; c < C; c++) {
    for (let x = 0; x < X; x++) {
      for (let y = 0; y < Y; y++) {
        const s = ((c * X + x) * Y + y) * Z;
        const d = ((c * ox + x + bx) * oy + y + by) * oz + bz;
        (data as VoxelArray).set(src.subarray(s, s + Z) as unknown as ArrayLike<number>, d);
      }
    }
  }
  return { volume: { data, shape: [C, ox, oy, oz], affine: shiftOrigin(vol.affine, [-bx, -by, -bz]) }, padWidth };
}
