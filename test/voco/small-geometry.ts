import type { VocoGeometry } from '../../src/voco/geometry.ts';

/** A small VoCo geometry that keeps crop tests fast: 32×32×8 region, 2×2 grid, crops resized to 8×8×4. */
export const SMALL: VocoGeometry = {
  region: [32, 32, 8],
  grid: [2, 2],
  baseCrop: [16, 16, 8],
  randomCrop: [16, 16, 8],
  numRandom: 2,
  cropOut: [8, 8, 4],
  randomCentreRange: { x: [8, 25], y: [8, 25] },
};
