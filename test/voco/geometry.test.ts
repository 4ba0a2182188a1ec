import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createRng } from '../../src/util/rng.ts';
import {
  VOCO_V1_GEOMETRY,
  VOCO_V2_GEOMETRY,
  baseCropBoxes,
  baseCropCount,
  cropOutputShape,
  cropStart,
  drawRandomCentre,
  positionLabels,
  randomCropBox,
  validateGeometry,
  type VocoGeometry,
} from '../../src/voco/geometry.ts';
import { SMALL } from './small-geometry.ts';

const FIXTURE = JSON.parse(readFileSync(new URL('../fixtures/swinunetr/voco/voco_reference.json', import.meta.url), 'utf8')) as {
  position_labels: { center: [number, number]; labels: number[] }[];
};


/** Overlap fractions by counting voxels, independent of the closed-form formula. */
function bruteForceLabels(centre: [number, number], g: VocoGeometry): number[] {
  const box = randomCropBox(centre, g);
  const [bx, by] = g.baseCrop;
  const counts = new Array<number>(baseCropCount(g)).fill(0);
  for (let x = box.start[0]; x < box.start[0] + box.size[0]; x++) {
    for (let y = box.start[1]; y < box.start[1] + box.size[1]; y++) counts[g.grid[1] * Math.floor(x / bx) + Math.floor(y / by)]! += 1;
  }
  return counts.map((c) => c / (box.size[0] * box.size[1]));
}

describe('VoCo geometry presets', () => {
  it('are valid and describe v1 (384×384×96, 4×4 of 96³ → 64³) and v2 (192×192×64, 3×3 of 64³)', () => {
    validateGeometry(VOCO_V1_GEOMETRY);
    validateGeometry(VOCO_V2_GEOMETRY);
    validateGeometry(SMALL);
    expect(baseCropCount(VOCO_V1_GEOMETRY)).toBe(16);
    expect(baseCropCount(VOCO_V2_GEOMETRY)).toBe(9);
    expect(cropOutputShape(VOCO_V1_GEOMETRY)).toEqual([64, 64, 64]);
    expect(cropOutputShape(VOCO_V2_GEOMETRY)).toEqual([64, 64, 64]);
    expect(Object.isFrozen(VOCO_V1_GEOMETRY.region)).toBe(true);
  });
});

describe('positionLabels', () => {
  it('equals the VoCo reference fixture exactly (v1 geometry)', () => {
    expect(FIXTURE.position_labels).toHaveLength(4);
    for (const { center, labels } of FIXTURE.position_labels) {
      expect(Array.from(positionLabels(center, VOCO_V1_GEOMETRY))).toEqual(labels);
    }
  });

  it('matches a voxel count of the overlaps, and every row sums to 1 with at most 4 non-zeros', () => {
    for (const g of [VOCO_V1_GEOMETRY, VOCO_V2_GEOMETRY, SMALL]) {
      const rng = createRng(7, 'labels', g.region[0]);
      for (let t = 0; t < 200; t++) {
        const c = drawRandomCentre(g, rng);
        const labels = Array.from(positionLabels(c, g));
        const brute = bruteForceLabels(c, g);
        labels.forEach((v, k) => expect(v).toBeCloseTo(brute[k]!, 14));
        expect(labels.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
        expect(labels.filter((v) => v > 0).length).toBeLessThanOrEqual(4);
      }
    }
  });

  it('gives a one-hot label when the random crop coincides with a base crop', () => {
    expect(Array.from(positionLabels([96, 96], VOCO_V2_GEOMETRY))).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0]);
    expect(Array.from(positionLabels([240, 48], VOCO_V1_GEOMETRY))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('crop boxes', () => {
  it('base crops are ordered k = gy·i + j and tile the region exactly once', () => {
    const g = VOCO_V1_GEOMETRY;
    const boxes = baseCropBoxes(g);
    expect(boxes).toHaveLength(16);
    expect(boxes[0]).toEqual({ start: [0, 0, 0], size: [96, 96, 96] });
    expect(boxes[1]).toEqual({ start: [0, 96, 0], size: [96, 96, 96] });
    expect(boxes[4]).toEqual({ start: [96, 0, 0], size: [96, 96, 96] });
    expect(boxes[4 * 2 + 3]).toEqual({ start: [192, 288, 0], size: [96, 96, 96] });
    const cover = new Uint8Array(384 * 384);
    for (const b of boxes) for (let x = b.start[0]; x < b.start[0] + 96; x++) for (let y = b.start[1]; y < b.start[1] + 96; y++) cover[x * 384 + y]! += 1;
    expect(cover.every((c) => c === 1)).toBe(true);
    expect(baseCropBoxes(VOCO_V2_GEOMETRY)[5]).toEqual({ start: [64, 128, 0], size: [64, 64, 64] });
  });

  it('random crops start at max(centre − size//2, 0) and span the full z', () => {
    expect(randomCropBox([48, 335], VOCO_V1_GEOMETRY)).toEqual({ start: [0, 287, 0], size: [96, 96, 96] });
    expect(randomCropBox([150, 200], VOCO_V1_GEOMETRY)).toEqual({ start: [102, 152, 0], size: [96, 96, 96] });
    expect(randomCropBox([32, 159], VOCO_V2_GEOMETRY)).toEqual({ start: [0, 127, 0], size: [64, 64, 64] });
    expect(cropStart(3, 16)).toBe(0);
    expect(cropStart(20, 7)).toBe(17);
  });

  it('random centres stay in [lo, hi) and keep crops inside the region', () => {
    const rng = createRng(1, 'centres');
    const seen = new Set<number>();
    for (let t = 0; t < 5000; t++) {
      const [cx, cy] = drawRandomCentre(VOCO_V1_GEOMETRY, rng);
      expect(cx >= 48 && cx < 336 && cy >= 48 && cy < 336).toBe(true);
      seen.add(cx);
    }
    expect(Math.min(...seen)).toBe(48);
    expect(Math.max(...seen)).toBe(335);
  });
});

describe('validateGeometry', () => {
  const bad = (patch: Partial<VocoGeometry>) => () => validateGeometry({ ...SMALL, ...patch });

  it('rejects a grid that does not tile the region', () => {
    expect(bad({ grid: [3, 2] })).toThrow(/grid x \(3\) × baseCrop x \(16\) = 48 must equal region x \(32\)/);
    expect(bad({ baseCrop: [16, 8, 8] })).toThrow(/grid y \(2\) × baseCrop y \(8\) = 16 must equal region y \(32\)/);
  });

  it('rejects split z and crops that do not fit', () => {
    expect(bad({ baseCrop: [16, 16, 4] })).toThrow(/baseCrop z \(4\) must equal region z \(8\)/);
    expect(bad({ randomCrop: [16, 16, 4] })).toThrow(/randomCrop z \(4\) must equal region z \(8\)/);
  });

  it('rejects centre ranges that would push crops outside the region or are empty', () => {
    expect(bad({ randomCentreRange: { x: [7, 25], y: [8, 25] } })).toThrow(/randomCentreRange.x low 7 puts the crop start at -1 < 0/);
    expect(bad({ randomCentreRange: { x: [8, 25], y: [8, 26] } })).toThrow(/randomCentreRange.y high 26 .*needs hi ≤ 25/);
    expect(bad({ randomCentreRange: { x: [10, 10], y: [8, 25] } })).toThrow(/randomCentreRange.x \[10, 10\) is empty/);
  });

  it('rejects malformed fields and mismatched crop shapes without a resize', () => {
    expect(bad({ numRandom: 0 })).toThrow(/numRandom must be a positive integer/);
    expect(bad({ region: [32, 32] as unknown as VocoGeometry['region'] })).toThrow(/region must be 3 positive integers/);
    expect(bad({ cropOut: [8, 0, 4] })).toThrow(/cropOut must be 3 positive integers/);
    expect(bad({ cropOut: null, randomCrop: [12, 12, 8], randomCentreRange: { x: [8, 25], y: [8, 25] } })).toThrow(/baseCrop .* and randomCrop .* differ and cropOut is null/);
  });

  it('lists every problem at once', () => {
    expect(bad({ grid: [3, 3], baseCrop: [16, 16, 4] })).toThrow(/grid x[\s\S]*grid y[\s\S]*baseCrop z/);
  });
});
