/**
 * ScaleIntensityRange: linear map [a_min, a_max] → [b_min, b_max], optional clip to [b_min, b_max],
 * as MONAI `ScaleIntensityRange` with its default float32 output. Every arithmetic step is rounded
 * to float32 the way torch evaluates `(x − a_min) / (a_max − a_min) · (b_max − b_min) + b_min` on a
 * float32 tensor with Python scalars, so results are bit-identical to MONAI on float32 or integer
 * input (integer input whose `x − a_min` overflows its type is not emulated: it is computed exactly).
 *
 * If a_max = a_min, MONAI returns `x − a_min` (+ b_min when given) and so does this.
 */
import type { Volume, VoxelArray } from '../volume.ts';

export interface ScaleIntensityRangeParams {
  a_min: number;
  a_max: number;
  /** null/undefined: no output scaling (the result is (x − a_min)/(a_max − a_min)) */
  b_min?: number | null;
  b_max?: number | null;
  /** clip to [b_min, b_max] (each bound only when given); default false */
  clip?: boolean;
}

export function scaleIntensityRange(vol: Volume<VoxelArray>, params: ScaleIntensityRangeParams): { volume: Volume<Float32Array> } {
  const { a_min, a_max } = params;
  const bMin = params.b_min ?? null;
  const bMax = params.b_max ?? null;
  for (const [k, v] of [
    ['a_min', a_min],
    ['a_max', a_max],
    ['b_min', bMin ?? 0],
    ['b_max', bMax ?? 0],
  ] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`scaleIntensityRange: ${k} must be a finite number`);
  }
  const f = Math.fround;
  const src = vol.data;
  const n = src.length;
  const out = new Float32Array(n);
  const aMin = f(a_min);
  if (a_max - a_min === 0) {
    const add = bMin === null ? 0 : f(bMin);
    for (let i = 0; i < n; i++) out[i] = f((src[i] as number) - aMin) + add;
    return { volume: { data: out, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) } };
  }
  const den = f(a_max - a_min);
  const scaleB = bMin !== null && bMax !== null;
  const mul = scaleB ? f(bMax - bMin) : 1;
  const add = scaleB ? f(bMin) : 0;
  const clip = params.clip === true;
  const lo = clip && bMin !== null ? f(bMin) : -Infinity;
  const hi = clip && bMax !== null ? f(bMax) : Infinity;
  for (let i = 0; i < n; i++) {
    let v = f(f((src[i] as number) - aMin) / den);
    if (scaleB) v = f(f(v * mul) + add);
    if (v < lo) v = lo;
    else if (v > hi) v = hi;
    out[i] = v;
  }
  return { volume: { data: out, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) } };
}
