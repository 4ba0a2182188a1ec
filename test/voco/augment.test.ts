import { describe, expect, it } from 'vitest';
import { createRng } from '../../src/util/rng.ts';
import {
  DRAWS_PER_CROP,
  NO_AUGMENTATION,
  VOCO_V1_AUGMENTATION,
  VOCO_V2_AUGMENTATION,
  applyCropAugmentation,
  augmentCrop,
  drawCropAugmentation,
  flipAxis,
  rotate90XY,
  shiftIntensity,
  validateAugmentation,
  type CropAugmentation,
} from '../../src/voco/augment.ts';

const arange = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

describe('flipAxis', () => {
  // a = arange(12) as [2, 2, 3]: a[x][y] = [6x + 3y, 6x + 3y + 1, 6x + 3y + 2]
  it('reverses axis 0, 1 or 2 of a [2, 2, 3] crop (hand-computed)', () => {
    const cases: [0 | 1 | 2, number[]][] = [
      [0, [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]],
      [1, [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]],
      [2, [2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9]],
    ];
    for (const [axis, expected] of cases) {
      const a = arange(12);
      flipAxis(a, [2, 2, 3], axis);
      expect(Array.from(a)).toEqual(expected);
    }
  });

  it('handles odd sizes (the middle stays) and is its own inverse', () => {
    const a = arange(3 * 5 * 2);
    flipAxis(a, [3, 5, 2], 1);
    expect(Array.from(a.subarray(0, 10))).toEqual([8, 9, 6, 7, 4, 5, 2, 3, 0, 1]);
    for (const axis of [0, 1, 2] as const) {
      const b = arange(3 * 5 * 7);
      flipAxis(b, [3, 5, 7], axis);
      flipAxis(b, [3, 5, 7], axis);
      expect(b).toEqual(arange(3 * 5 * 7));
    }
  });

  it('checks the crop length', () => {
    expect(() => flipAxis(arange(10), [2, 2, 3], 0)).toThrow(/crop has 10 voxels but shape \[2, 2, 3\] needs 12/);
  });
});

describe('rotate90XY (numpy.rot90 on axes (0, 1))', () => {
  // m = [[0, 1, 2], [3, 4, 5], [6, 7, 8]] as [3, 3, 1]
  it('rotates a 3×3 plane by k = 1, 2, 3 (hand-computed)', () => {
    const expected: Record<number, number[]> = {
      1: [2, 5, 8, 1, 4, 7, 0, 3, 6], // out[i][j] = m[j][2 − i]
      2: [8, 7, 6, 5, 4, 3, 2, 1, 0],
      3: [6, 3, 0, 7, 4, 1, 8, 5, 2], // out[i][j] = m[2 − j][i]
    };
    for (const k of [1, 2, 3]) {
      const a = arange(9);
      rotate90XY(a, [3, 3, 1], k);
      expect(Array.from(a)).toEqual(expected[k]);
    }
  });

  it('rotates an even 4×4 plane and moves whole z-rows', () => {
    const a = arange(16);
    rotate90XY(a, [4, 4, 1], 1);
    expect(Array.from(a)).toEqual([3, 7, 11, 15, 2, 6, 10, 14, 1, 5, 9, 13, 0, 4, 8, 12]);
    // [3, 3, 2]: voxel (i, j, z) = 10·(3i + j) + z
    const b = Float32Array.from({ length: 18 }, (_, n) => 10 * Math.floor(n / 2) + (n % 2));
    rotate90XY(b, [3, 3, 2], 1);
    expect(Array.from(b)).toEqual([20, 21, 50, 51, 80, 81, 10, 11, 40, 41, 70, 71, 0, 1, 30, 31, 60, 61]);
  });

  it('k and 4 − k undo each other; k = 0 and 4 do nothing', () => {
    for (const k of [1, 2, 3]) {
      const a = arange(5 * 5 * 3);
      rotate90XY(a, [5, 5, 3], k);
      expect(a).not.toEqual(arange(75));
      rotate90XY(a, [5, 5, 3], 4 - k);
      expect(a).toEqual(arange(75));
    }
    const c = arange(8);
    rotate90XY(c, [2, 2, 2], 4);
    rotate90XY(c, [2, 2, 2], 0);
    expect(c).toEqual(arange(8));
  });

  it('refuses a non-square plane', () => {
    expect(() => rotate90XY(arange(24), [2, 3, 4], 1)).toThrow(/needs a square crop, got \[2, 3, 4\]/);
  });
});

describe('shiftIntensity', () => {
  it('adds the offset rounded to float32', () => {
    const a = Float32Array.of(0, 0.5, 1);
    shiftIntensity(a, 0.1);
    expect(Array.from(a)).toEqual([Math.fround(0.1), Math.fround(0.5 + Math.fround(0.1)), Math.fround(1 + Math.fround(0.1))]);
  });
});

describe('drawCropAugmentation', () => {
  it('always consumes exactly 7 draws, in the documented order', () => {
    for (const aug of [NO_AUGMENTATION, VOCO_V1_AUGMENTATION, { flipProb: 1, rotate90Prob: 1, shiftProb: 1, shiftOffset: 0.1 }]) {
      const rng = createRng(3, 'aug');
      const ref = createRng(3, 'aug');
      for (let t = 0; t < 20; t++) {
        const d = drawCropAugmentation(aug, rng);
        const u = Array.from({ length: DRAWS_PER_CROP }, () => ref.float());
        expect(d.flip).toEqual([u[0]! < aug.flipProb, u[1]! < aug.flipProb, u[2]! < aug.flipProb]);
        expect(d.rotate90).toBe(u[3]! < aug.rotate90Prob ? 1 + Math.floor(u[4]! * 3) : 0);
        expect(d.shift).toBe(u[5]! < aug.shiftProb ? Math.fround(-0.1 + 0.2 * u[6]!) : 0);
      }
      expect(rng.getState()).toEqual(ref.getState());
    }
  });

  it('has the configured rates: flips 0.2 per axis, rot90 0.2 with k uniform in {1,2,3}, shift 0.1 (v1) / 0.5 (v2) in [−0.1, 0.1)', () => {
    const n = 30000;
    for (const [aug, shiftP] of [[VOCO_V1_AUGMENTATION, 0.1], [VOCO_V2_AUGMENTATION, 0.5]] as [CropAugmentation, number][]) {
      const rng = createRng(11, 'rates', shiftP);
      const flips = [0, 0, 0];
      const ks = [0, 0, 0, 0];
      let shifts = 0;
      let minShift = Infinity;
      let maxShift = -Infinity;
      for (let t = 0; t < n; t++) {
        const d = drawCropAugmentation(aug, rng);
        d.flip.forEach((f, a) => (flips[a]! += f ? 1 : 0));
        ks[d.rotate90]! += 1;
        if (d.shift !== 0) {
          shifts++;
          minShift = Math.min(minShift, d.shift);
          maxShift = Math.max(maxShift, d.shift);
        }
      }
      for (const f of flips) expect(Math.abs(f / n - 0.2)).toBeLessThan(0.012);
      expect(Math.abs((n - ks[0]!) / n - 0.2)).toBeLessThan(0.012);
      for (const k of [1, 2, 3]) expect(Math.abs(ks[k]! / (n - ks[0]!) - 1 / 3)).toBeLessThan(0.03);
      expect(Math.abs(shifts / n - shiftP)).toBeLessThan(0.015);
      expect(minShift).toBeGreaterThanOrEqual(-0.1);
      expect(maxShift).toBeLessThan(0.1);
      expect(minShift).toBeLessThan(-0.09);
      expect(maxShift).toBeGreaterThan(0.09);
    }
  });
});

describe('applyCropAugmentation / augmentCrop', () => {
  it('applies flips (axis 0, 1, 2), then rot90, then the shift', () => {
    const shape = [3, 3, 2] as const;
    const a = arange(18);
    applyCropAugmentation(a, shape, { flip: [true, false, true], rotate90: 1, shift: 0.25 });
    const b = arange(18);
    flipAxis(b, shape, 0);
    flipAxis(b, shape, 2);
    rotate90XY(b, shape, 1);
    shiftIntensity(b, 0.25);
    expect(a).toEqual(b);
    // rot90 after flip differs from flip after rot90 here, so the order is really checked
    const c = arange(18);
    rotate90XY(c, shape, 1);
    flipAxis(c, shape, 0);
    flipAxis(c, shape, 2);
    shiftIntensity(c, 0.25);
    expect(a).not.toEqual(c);
  });

  it('augmentCrop draws then applies; no augmentation leaves the crop unchanged', () => {
    const rngA = createRng(5, 'crop');
    const rngB = createRng(5, 'crop');
    const always: CropAugmentation = { flipProb: 1, rotate90Prob: 1, shiftProb: 1, shiftOffset: 0.1 };
    const a = arange(27);
    const d = augmentCrop(a, [3, 3, 3], always, rngA);
    const b = arange(27);
    applyCropAugmentation(b, [3, 3, 3], drawCropAugmentation(always, rngB));
    expect(a).toEqual(b);
    expect(d.flip).toEqual([true, true, true]);
    const c = arange(27);
    augmentCrop(c, [3, 3, 3], NO_AUGMENTATION, createRng(1));
    expect(c).toEqual(arange(27));
  });

  it('validates the parameters', () => {
    expect(() => validateAugmentation(VOCO_V1_AUGMENTATION)).not.toThrow();
    expect(() => validateAugmentation({ ...VOCO_V1_AUGMENTATION, flipProb: 1.5 })).toThrow(/flipProb must be a probability in \[0, 1\], got 1.5/);
    expect(() => validateAugmentation({ ...VOCO_V1_AUGMENTATION, shiftOffset: -1 })).toThrow(/shiftOffset must be a finite number ≥ 0/);
  });
});
