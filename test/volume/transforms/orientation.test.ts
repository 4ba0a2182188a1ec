import { describe, expect, it } from 'vitest';
import { affineToAxcodes, axcodesToOrnt, ioOrientation, orientation, orntTransform } from '../../../src/volume/transforms/index.ts';
import type { Affine, Volume } from '../../../src/volume/volume.ts';
import { at, diagAffine, makeVolume, rotZAffine, world } from './synthetic.ts';

/** Every voxel keeps its value at the same world position. */
function expectWorldPreserved(a: Volume, b: Volume) {
  const [C, X, Y, Z] = a.shape;
  const inv = (p: number[]) => {
    // find b's voxel at world p by solving with b's affine (small grid: brute force)
    const [, BX, BY, BZ] = b.shape;
    for (let x = 0; x < BX; x++)
      for (let y = 0; y < BY; y++)
        for (let z = 0; z < BZ; z++) {
          const w = world(b.affine, [x, y, z]);
          if (w.every((v, i) => Math.abs(v - p[i]!) < 1e-9)) return [x, y, z];
        }
    return null;
  };
  for (let c = 0; c < C; c++)
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) {
          const q = inv(world(a.affine, [x, y, z]));
          expect(q).not.toBeNull();
          expect(at(b, c, q![0]!, q![1]!, q![2]!)).toBe(at(a, c, x, y, z));
        }
}

const lps: Affine = diagAffine(-1.5, -1.5, 1.5, [71.658203125, 255.658203125, 540.2000122070312]);

describe('orientation', () => {
  it('reads axis codes like nibabel', () => {
    expect(affineToAxcodes(diagAffine(3, 3, 3))).toBe('RAS');
    expect(affineToAxcodes(lps)).toBe('LPS');
    expect(affineToAxcodes(diagAffine(-1, 2, -3))).toBe('LAI');
    // voxel i → world y, j → world x (−), k → z
    const perm: Affine = [
      [0, -2, 0, 0],
      [2, 0, 0, 0],
      [0, 0, 2, 0],
      [0, 0, 0, 1],
    ];
    expect(affineToAxcodes(perm)).toBe('ALS');
    // 30° about z is still closest to RAS; 60° swaps the first two axes
    expect(affineToAxcodes(rotZAffine(30, [1, 1, 1], [0, 0, 0]))).toBe('RAS');
    expect(affineToAxcodes(rotZAffine(60, [1, 1, 1], [0, 0, 0]))).toBe('ALS');
  });

  it('LPS → RAS flips X and Y like the aorta fixture (data and affine)', () => {
    const v = makeVolume([1, 4, 3, 2], (_c, x, y, z) => 100 * x + 10 * y + z, lps);
    const r = orientation(v, 'RAS');
    expect(r.inputAxcodes).toBe('LPS');
    expect(r.unchanged).toBe(false);
    expect(r.ornt).toEqual([
      [0, -1],
      [1, -1],
      [2, 1],
    ]);
    expect(r.volume.shape).toEqual([1, 4, 3, 2]);
    expect(at(r.volume, 0, 0, 0, 0)).toBe(at(v, 0, 3, 2, 0));
    expect(at(r.volume, 0, 3, 2, 1)).toBe(at(v, 0, 0, 0, 1));
    expect(r.volume.affine).toEqual(diagAffine(1.5, 1.5, 1.5, [71.658203125 - 1.5 * 3, 255.658203125 - 1.5 * 2, 540.2000122070312]));
    expect(affineToAxcodes(r.volume.affine)).toBe('RAS');
    expectWorldPreserved(v, r.volume);
  });

  it('permutes axes (ALS → RAS) and keeps every voxel at its world position', () => {
    const perm: Affine = [
      [0, -2, 0, 5],
      [3, 0, 0, -7],
      [0, 0, 1.5, 11],
      [0, 0, 0, 1],
    ];
    const v = makeVolume([2, 4, 3, 5], (c, x, y, z) => 1000 * c + 100 * x + 10 * y + z, perm, Int16Array);
    const r = orientation(v, 'RAS');
    expect(r.inputAxcodes).toBe('ALS');
    expect(r.volume.shape).toEqual([2, 3, 4, 5]);
    expect(r.volume.data).toBeInstanceOf(Int16Array);
    expect(affineToAxcodes(r.volume.affine)).toBe('RAS');
    expectWorldPreserved(v, r.volume);
  });

  it('handles oblique affines by their closest axes', () => {
    const a = rotZAffine(60, [1, 2, 3], [1, 2, 3]);
    const v = makeVolume([1, 3, 4, 2], (_c, x, y, z) => x + 10 * y + 100 * z, a);
    const r = orientation(v, 'RAS');
    expect(r.volume.shape).toEqual([1, 4, 3, 2]);
    expect(affineToAxcodes(r.volume.affine)).toBe('RAS');
    expectWorldPreserved(v, r.volume);
  });

  it('is a no-op sharing the data when already oriented, and round-trips exactly', () => {
    const v = makeVolume([1, 5, 4, 3], (_c, x, y, z) => Math.sin(x + 2 * y + 3 * z), diagAffine(1, 2, 3, [4, 5, 6]));
    const same = orientation(v, 'RAS');
    expect(same.unchanged).toBe(true);
    expect(same.volume.data).toBe(v.data);
    expect(same.volume.affine).toEqual(v.affine);
    const there = orientation(v, 'LPI').volume;
    expect(affineToAxcodes(there.affine)).toBe('LPI');
    const back = orientation(there, 'RAS').volume;
    expect(Array.from(back.data)).toEqual(Array.from(v.data));
    expect(back.affine).toEqual(v.affine);
    // lower-case codes are accepted by the function
    expect(orientation(v, 'lpi').volume.affine).toEqual(there.affine);
  });

  it('rejects invalid axis codes', () => {
    const v = makeVolume([1, 2, 2, 2], () => 0);
    expect(() => orientation(v, 'RAX')).toThrow(/invalid axis code "X"/);
    expect(() => orientation(v, 'RLS')).toThrow(/twice/);
    expect(() => orientation(v, 'RA')).toThrow(/3 letters/);
    const singular: Affine = [
      [1, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ];
    expect(() => orientation({ ...v, affine: singular }, 'RAS')).toThrow(/singular|degenerate/);
  });

  it('orntTransform composes like nibabel', () => {
    expect(orntTransform(ioOrientation(lps), axcodesToOrnt('RAS'))).toEqual([
      [0, -1],
      [1, -1],
      [2, 1],
    ]);
    expect(orntTransform(axcodesToOrnt('ASL'), axcodesToOrnt('RAS'))).toEqual([
      [1, 1],
      [2, 1],
      [0, -1],
    ]);
  });
});
