import { describe, expect, it } from 'vitest';
import { spacing, spacingGeometry } from '../../../src/volume/transforms/index.ts';
import type { Affine } from '../../../src/volume/volume.ts';
import { at, diagAffine, makeVolume, rotZAffine, world } from './synthetic.ts';

describe('spacing geometry', () => {
  it('3 mm → 1.5 mm: shape from corner voxel centres, origin kept', () => {
    const a = diagAffine(3, 3, 3, [-177.95632934570312, 11.319000244140625, 94.3017578125]);
    const g = spacingGeometry(a, [122, 101, 112], [1.5, 1.5, 1.5]);
    expect(g.spatialShape).toEqual([243, 201, 223]);
    expect(g.affine).toEqual(diagAffine(1.5, 1.5, 1.5, [-177.95632934570312, 11.319000244140625, 94.3017578125]));
    expect(g.diagonal).toBe(true);
    expect(g.skip).toBe(false);
  });

  it('rounds the extent half to even like numpy (121·1.5 + 1 = 182.5 → 182, 3·1.5 + 1 = 5.5 → 6)', () => {
    expect(spacingGeometry(diagAffine(3, 3, 3), [122, 5, 4], [2, 2, 2]).spatialShape).toEqual([182, 7, 6]);
    // 2 mm → 4 mm on 5 voxels: 4·2/4 + 1 = 3
    expect(spacingGeometry(diagAffine(2, 2, 2), [5, 5, 5], 4).spatialShape).toEqual([3, 3, 3]);
  });

  it('flipped axes keep their direction; the origin is the smallest corner', () => {
    const a = diagAffine(-2, -2, 2, [10, 20, 30]);
    const g = spacingGeometry(a, [4, 4, 4], [1, 1, 1]);
    expect(g.affine).toEqual(diagAffine(-1, -1, 1, [10, 20, 30]));
    expect(g.spatialShape).toEqual([7, 7, 7]);
  });

  it('oblique (rotated) affines keep their direction cosines and still resample separably', () => {
    const a = rotZAffine(25, [2, 2, 2], [1, 2, 3]);
    const g = spacingGeometry(a, [6, 5, 4], [1, 1, 1]);
    const b = rotZAffine(25, [1, 1, 1], [1, 2, 3]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) expect(g.affine[i]![j]!).toBeCloseTo(b[i]![j]!, 12);
    expect(g.spatialShape).toEqual([11, 9, 7]);
    expect(g.diagonal).toBe(true);
  });

  it('skips when the grid is unchanged within 1e-3', () => {
    const a = diagAffine(1.5, 1.5, 1.5, [1, 2, 3]);
    expect(spacingGeometry(a, [5, 6, 7], [1.5, 1.5, 1.5]).skip).toBe(true);
    expect(spacingGeometry(a, [5, 6, 7], [1.5004, 1.5, 1.5]).skip).toBe(true);
    expect(spacingGeometry(a, [5, 6, 7], [1.502, 1.5, 1.5]).skip).toBe(false);
  });

  it('rejects bad pixdim', () => {
    expect(() => spacingGeometry(diagAffine(1, 1, 1), [2, 2, 2], [1, 0, 1])).toThrow(/pixdim/);
    expect(() => spacingGeometry(diagAffine(1, 1, 1), [2, 2, 2], [1, 1])).toThrow(/pixdim/);
  });
});

describe('spacing resampling', () => {
  it('2× upsample on a tiny grid: trilinear midpoints, exact on grid points', () => {
    const v = makeVolume([1, 3, 2, 2], (_c, x, y, z) => 10 * x + 100 * y + 1000 * z, diagAffine(2, 2, 2, [5, 6, 7]));
    const r = spacing(v, [1, 1, 1]);
    expect(r.skipped).toBe(false);
    expect(r.volume.shape).toEqual([1, 5, 3, 3]);
    expect(r.volume.data).toBeInstanceOf(Float32Array);
    expect(r.volume.affine).toEqual(diagAffine(1, 1, 1, [5, 6, 7]));
    for (let x = 0; x < 5; x++) for (let y = 0; y < 3; y++) for (let z = 0; z < 3; z++) expect(at(r.volume, 0, x, y, z)).toBeCloseTo(5 * x + 50 * y + 500 * z, 4);
  });

  it('border padding clamps outside coordinates (downsample with an odd extent)', () => {
    const v = makeVolume([1, 4, 1, 1], (_c, x) => [1, 2, 4, 8][x]!, diagAffine(1, 1, 1));
    const r = spacing(v, [2, 1, 1]);
    // extent 3/2 + 1 = 2.5 → 2 voxels at input x = 0 and 2
    expect(r.volume.shape).toEqual([1, 2, 1, 1]);
    expect(Array.from(r.volume.data)).toEqual([1, 4]);
    const up = spacing(v, [0.4, 1, 1]);
    // 3/0.4 + 1 = 8.5 → 8 voxels; the last one at x = 2.8
    expect(up.volume.shape).toEqual([1, 8, 1, 1]);
    expect(at(up.volume, 0, 7, 0, 0)).toBeCloseTo(4 + 0.8 * 4, 5);
  });

  it('nearest keeps the array type and picks the closest voxel (ties half to even)', () => {
    const lab = makeVolume([1, 3, 1, 1], (_c, x) => [7, 8, 9][x]!, diagAffine(2, 1, 1), Uint8Array);
    const r = spacing(lab, [1, 1, 1], 'nearest');
    expect(r.volume.data).toBeInstanceOf(Uint8Array);
    // coords 0, .5, 1, 1.5, 2 → 0, 0 (tie → even), 1, 2 (tie → even), 2
    expect(Array.from(r.volume.data)).toEqual([7, 7, 8, 9, 9]);
  });

  it('same grid: skipped, data kept (float32 for bilinear)', () => {
    const v = makeVolume([1, 3, 3, 3], (_c, x) => x, diagAffine(1.5, 1.5, 1.5), Int16Array);
    const r = spacing(v, [1.5, 1.5, 1.5]);
    expect(r.skipped).toBe(true);
    expect(r.volume.data).toBeInstanceOf(Float32Array);
    expect(Array.from(r.volume.data)).toEqual(Array.from(v.data));
    const n = spacing(v, [1.5, 1.5, 1.5], 'nearest');
    expect(n.volume.data).toBe(v.data);
  });

  it('multi-channel volumes resample every channel', () => {
    const v = makeVolume([2, 2, 2, 2], (c, x, y, z) => (c + 1) * (x + y + z), diagAffine(2, 2, 2));
    const r = spacing(v, 1);
    expect(r.volume.shape).toEqual([2, 3, 3, 3]);
    expect(at(r.volume, 1, 1, 1, 1)).toBeCloseTo(2 * 1.5, 6);
  });

  it('the per-voxel path equals the separable path on a diagonal map', () => {
    const v = makeVolume([1, 7, 6, 5], (_c, x, y, z) => Math.sin(x) * Math.cos(2 * y) + z * z, diagAffine(3, 2.5, 2, [1, 2, 3]));
    for (const mode of ['bilinear', 'nearest'] as const) {
      const a = spacing(v, [1.1, 0.9, 1.3], mode);
      const b = spacing(v, [1.1, 0.9, 1.3], mode, { forceGeneral: true });
      expect(b.volume.shape).toEqual(a.volume.shape);
      let m = 0;
      for (let i = 0; i < a.volume.data.length; i++) m = Math.max(m, Math.abs((a.volume.data[i] as number) - (b.volume.data[i] as number)));
      expect(m).toBeLessThan(1e-5);
    }
  });

  it('sheared (non-orthogonal) affine: general path reproduces a linear field exactly', () => {
    const a: Affine = [
      [2, 0.6, 0, -3],
      [0, 2, 0.4, 1],
      [0.3, 0, 2.5, 2],
      [0, 0, 0, 1],
    ];
    // data = linear function of world position, which trilinear interpolation reproduces
    const f = (w: number[]) => 0.5 * w[0]! - 0.25 * w[1]! + 0.125 * w[2]! + 3;
    const v = makeVolume([1, 9, 8, 7], (_c, x, y, z) => f(world(a, [x, y, z])), a, Float64Array);
    const g = spacingGeometry(a, [9, 8, 7], [1, 1, 1]);
    expect(g.diagonal).toBe(false);
    const r = spacing(v, [1, 1, 1]);
    expect(r.volume.shape).toEqual([1, ...g.spatialShape]);
    const [, X, Y, Z] = r.volume.shape;
    let checked = 0;
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) {
          const m = g.voxelMap;
          const src = [0, 1, 2].map((i) => m[i]![0]! * x + m[i]![1]! * y + m[i]![2]! * z + m[i]![3]!);
          if (src.some((s, i) => s < 0 || s > [8, 7, 6][i]!)) continue; // clamped region
          expect(at(r.volume, 0, x, y, z)).toBeCloseTo(f(world(r.volume.affine, [x, y, z])), 3);
          checked++;
        }
    expect(checked).toBeGreaterThan(100);
    // the new affine keeps the direction cosines of the first column and has 1 mm voxels
    const col = (m: Affine, j: number) => [m[0]![j]!, m[1]![j]!, m[2]![j]!];
    const n0 = Math.hypot(...col(a, 0));
    col(r.volume.affine, 0).forEach((v2, i) => expect(v2).toBeCloseTo(col(a, 0)[i]! / n0, 12));
    for (let j = 0; j < 3; j++) expect(Math.hypot(...col(r.volume.affine, j))).toBeCloseTo(1, 12);
  });
});
