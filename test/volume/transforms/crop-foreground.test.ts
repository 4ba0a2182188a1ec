import { describe, expect, it } from 'vitest';
import { cropForeground, cropToBox, foregroundBox } from '../../../src/volume/transforms/index.ts';
import { at, diagAffine, makeVolume, world } from './synthetic.ts';

// a 10×8×6 volume with a bright block at x 2..5, y 3..4, z 1..4 (inclusive)
const inBlock = (x: number, y: number, z: number) => x >= 2 && x <= 5 && y >= 3 && y <= 4 && z >= 1 && z <= 4;
const vol = makeVolume([1, 10, 8, 6], (_c, x, y, z) => (inBlock(x, y, z) ? 1 : 0.2), diagAffine(2, 3, 4, [10, 20, 30]));

describe('cropForeground', () => {
  it('finds the box (end exclusive) and moves the origin to its start', () => {
    const r = cropForeground(vol, { threshold: 0.3 });
    expect(r.box).toEqual({ start: [2, 3, 1], end: [6, 5, 5] });
    expect(r.empty).toBe(false);
    expect(r.volume.shape).toEqual([1, 4, 2, 4]);
    expect(r.volume.affine).toEqual(diagAffine(2, 3, 4, [14, 29, 34]));
    expect(world(r.volume.affine, [0, 0, 0])).toEqual(world(vol.affine, [2, 3, 1]));
    expect(Array.from(r.volume.data).every((v) => v === 1)).toBe(true);
    expect(r.volume.data).toBeInstanceOf(Float32Array);
  });

  it('default select is x > 0; select functions and channel choice work', () => {
    expect(foregroundBox(vol)).toEqual({ start: [0, 0, 0], end: [10, 8, 6] });
    expect(foregroundBox(vol, { select: (v) => v === 1 })).toEqual({ start: [2, 3, 1], end: [6, 5, 5] });
    const two = makeVolume([2, 5, 5, 5], (c, x, y, z) => (c === 0 ? (x === 1 && y === 1 && z === 1 ? 1 : 0) : x === 3 && y === 3 && z === 3 ? 1 : 0));
    expect(foregroundBox(two)).toEqual({ start: [1, 1, 1], end: [4, 4, 4] });
    expect(foregroundBox(two, { channelIndices: [1] })).toEqual({ start: [3, 3, 3], end: [4, 4, 4] });
  });

  it('margin is clamped to the image by default', () => {
    expect(foregroundBox(vol, { threshold: 0.3, margin: 3 })).toEqual({ start: [0, 0, 0], end: [9, 8, 6] });
    expect(foregroundBox(vol, { threshold: 0.3, margin: [1, 0, 2] })).toEqual({ start: [1, 3, 0], end: [7, 5, 6] });
  });

  it('allowSmaller=false lets the box leave the image; outside is filled with 0', () => {
    const r = cropForeground(vol, { threshold: 0.3, margin: 3, allowSmaller: false });
    expect(r.box).toEqual({ start: [-1, 0, -2], end: [9, 8, 8] });
    expect(r.volume.shape).toEqual([1, 10, 8, 10]);
    expect(at(r.volume, 0, 0, 0, 0)).toBe(0); // outside (x = −1)
    expect(at(r.volume, 0, 1, 0, 2)).toBeCloseTo(0.2, 6); // input (0, 0, 0)
    expect(at(r.volume, 0, 3, 3, 3)).toBe(1); // input (2, 3, 1)
    expect(world(r.volume.affine, [0, 0, 0])).toEqual(world(vol.affine, [-1, 0, -2]));
  });

  it('kDivisible grows the box around its centre', () => {
    // sizes 4, 2, 4 → 6, 3, 6: the start moves back by (new − size) // 2
    expect(foregroundBox(vol, { threshold: 0.3, kDivisible: 3 })).toEqual({ start: [1, 3, 0], end: [7, 6, 6] });
    // sizes 4, 2, 4 → 4, 4, 5
    expect(foregroundBox(vol, { threshold: 0.3, kDivisible: [4, 4, 5] })).toEqual({ start: [2, 2, 1], end: [6, 6, 6] });
  });

  it('no foreground gives an empty box and an empty volume (as MONAI)', () => {
    const r = cropForeground(vol, { threshold: 5 });
    expect(r.box).toEqual({ start: [0, 0, 0], end: [0, 0, 0] });
    expect(r.empty).toBe(true);
    expect(r.volume.shape).toEqual([1, 0, 0, 0]);
  });

  it('cropToBox applies the image box to a label of any type', () => {
    const label = makeVolume([1, 10, 8, 6], (_c, x, y, z) => (inBlock(x, y, z) ? 3 : 0), vol.affine, Uint8Array);
    const { box } = cropForeground(vol, { threshold: 0.3 });
    const l = cropToBox(label, box).volume;
    expect(l.data).toBeInstanceOf(Uint8Array);
    expect(l.shape).toEqual([1, 4, 2, 4]);
    expect(Array.from(l.data).every((v) => v === 3)).toBe(true);
    expect(l.affine).toEqual(cropForeground(vol, { threshold: 0.3 }).volume.affine);
  });

  it('validates options', () => {
    expect(() => foregroundBox(vol, { margin: -1 })).toThrow(/margin/);
    expect(() => foregroundBox(vol, { kDivisible: 0 })).toThrow(/kDivisible/);
    expect(() => foregroundBox(vol, { channelIndices: [1] })).toThrow(/channel/);
  });
});
