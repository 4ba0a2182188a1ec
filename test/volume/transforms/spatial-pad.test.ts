import { describe, expect, it } from 'vitest';
import { padWidths, spatialPad } from '../../../src/volume/transforms/index.ts';
import { at, diagAffine, makeVolume, world } from './synthetic.ts';

describe('spatialPad', () => {
  it('symmetric: before = (target − n) // 2, never crops', () => {
    expect(padWidths([241, 191, 59], [96, 96, 96])).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
      [18, 19],
    ]);
    expect(padWidths([3, 4, 5], [6, 7, 5])).toEqual([
      [0, 0],
      [1, 2],
      [1, 2],
      [0, 0],
    ]);
    expect(padWidths([3, 4, 5], [6, -1, 8], 'end')).toEqual([
      [0, 0],
      [0, 3],
      [0, 0],
      [0, 3],
    ]);
  });

  it('pads data with the value and moves the origin by −before', () => {
    const v = makeVolume([1, 2, 2, 2], (_c, x, y, z) => 1 + x + 2 * y + 4 * z, diagAffine(1.5, 1.5, 1.5, [0, 0, 94.3017578125]), Int16Array);
    const r = spatialPad(v, [4, 2, 5], { value: -7 });
    expect(r.padWidth).toEqual([
      [0, 0],
      [1, 1],
      [0, 0],
      [1, 2],
    ]);
    expect(r.volume.shape).toEqual([1, 4, 2, 5]);
    expect(r.volume.data).toBeInstanceOf(Int16Array);
    expect(at(r.volume, 0, 0, 0, 0)).toBe(-7);
    expect(at(r.volume, 0, 1, 0, 1)).toBe(1);
    expect(at(r.volume, 0, 2, 1, 2)).toBe(1 + 1 + 2 + 4);
    expect(at(r.volume, 0, 3, 1, 4)).toBe(-7);
    expect(world(r.volume.affine, [1, 0, 1])).toEqual(world(v.affine, [0, 0, 0]));
    expect(r.volume.affine[2]![3]).toBe(94.3017578125 - 1.5);
  });

  it('returns the input when nothing needs padding', () => {
    const v = makeVolume([1, 4, 4, 4], () => 1);
    const r = spatialPad(v, [2, 4, -1]);
    expect(r.volume.data).toBe(v.data);
    expect(r.padWidth.flat().every((w) => w === 0)).toBe(true);
  });

  it('validates its arguments', () => {
    const v = makeVolume([1, 2, 2, 2], () => 1);
    expect(() => spatialPad(v, [2, 2])).toThrow(/3 entries/);
    expect(() => spatialPad(v, [2, 2, 0])).toThrow(/positive integers or -1/);
    expect(() => spatialPad(v, [4, 4, 4], { method: 'middle' as never })).toThrow(/unknown method/);
  });
});
