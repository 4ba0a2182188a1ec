import { describe, expect, it } from 'vitest';
import { scaleIntensityRange } from '../../../src/volume/transforms/index.ts';
import { diagAffine, makeVolume } from './synthetic.ts';

const hu = [-1000, -175, -47.5, 0, 37.5, 250, 3000];

describe('scaleIntensityRange', () => {
  it('maps [a_min, a_max] → [b_min, b_max] in float32 and clips', () => {
    const v = makeVolume([1, 1, 1, hu.length], (_c, _x, _y, z) => hu[z]!, diagAffine(2, 2, 2, [1, 2, 3]));
    const r = scaleIntensityRange(v, { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true }).volume;
    expect(r.data).toBeInstanceOf(Float32Array);
    expect(r.affine).toEqual(v.affine);
    expect(r.shape).toEqual(v.shape);
    const f = Math.fround;
    expect(Array.from(r.data)).toEqual([0, 0, f(f(127.5) / 425), f(175 / 425), 0.5, 1, 1]);
  });

  it('does not clip unless asked, and applies b_min/b_max', () => {
    const v = makeVolume([1, 1, 1, 3], (_c, _x, _y, z) => [-300, 0, 300][z]!);
    const r = scaleIntensityRange(v, { a_min: -100, a_max: 100, b_min: -1, b_max: 1 }).volume;
    expect(Array.from(r.data)).toEqual([-3, 0, 3]);
    const c = scaleIntensityRange(v, { a_min: -100, a_max: 100, b_min: -1, b_max: 1, clip: true }).volume;
    expect(Array.from(c.data)).toEqual([-1, 0, 1]);
    // without b_min/b_max: (x − a_min)/(a_max − a_min)
    const n = scaleIntensityRange(v, { a_min: -100, a_max: 100 }).volume;
    expect(Array.from(n.data)).toEqual([-1, 0.5, 2]);
  });

  it('a_max = a_min gives x − a_min (+ b_min), as MONAI', () => {
    const v = makeVolume([1, 1, 1, 2], (_c, _x, _y, z) => [5, 7][z]!);
    expect(Array.from(scaleIntensityRange(v, { a_min: 5, a_max: 5 }).volume.data)).toEqual([0, 2]);
    expect(Array.from(scaleIntensityRange(v, { a_min: 5, a_max: 5, b_min: 1, b_max: 2 }).volume.data)).toEqual([1, 3]);
  });

  it('integer input gives the same float32 values as float input', () => {
    const vi = makeVolume([1, 4, 5, 6], (_c, x, y, z) => -1200 + 97 * x + 31 * y + 7 * z, undefined, Int16Array);
    const vf = { ...vi, data: Float32Array.from(vi.data) };
    const p = { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true };
    expect(Array.from(scaleIntensityRange(vi, p).volume.data)).toEqual(Array.from(scaleIntensityRange(vf, p).volume.data));
  });

  it('rejects non-finite parameters', () => {
    const v = makeVolume([1, 1, 1, 1], () => 0);
    expect(() => scaleIntensityRange(v, { a_min: Number.NaN, a_max: 1 })).toThrow(/a_min/);
  });
});
