/**
 * VoCo crop geometry (REFERENCE §1.3 v1, §2.1 v2), pure functions.
 *
 * A region of X×Y×Z voxels is tiled in-plane by a gx×gy grid of base crops (z is never split);
 * random crops of the same depth are cut around integer centres drawn in `randomCentreRange`.
 * A random crop's position label is its in-plane overlap with each base crop, as a fraction of
 * the random crop's area, so a row of labels sums to 1.
 *
 * Base crop order is k = gy·i + j with i along axis 0 (x) and j along axis 1 (y).
 * A crop box around a centre starts at max(centre − size//2, 0), as MONAI `SpatialCrop` does.
 */

export type Vec3 = readonly [number, number, number];

export interface VocoGeometry {
  /** The volume each sample is cut from, [X, Y, Z]. */
  readonly region: Vec3;
  /** Base crops along x and y; z is never split. */
  readonly grid: readonly [number, number];
  readonly baseCrop: Vec3;
  readonly randomCrop: Vec3;
  /** Random crops per volume (VoCo's sw_batch_size). */
  readonly numRandom: number;
  /** Every crop is resized (trilinear, align_corners=True) to this; null keeps crops at their size. */
  readonly cropOut: Vec3 | null;
  /** Random crop centres are integer-uniform in [lo, hi) per axis. */
  readonly randomCentreRange: { readonly x: readonly [number, number]; readonly y: readonly [number, number] };
}

/** An axis-aligned box of voxels: [start, start + size) per axis. */
export interface CropBox {
  start: [number, number, number];
  size: [number, number, number];
}

/**
 * VoCo v1: 384×384×96 region, 4×4 grid of 96³, 2 random 96³ crops, every crop resized to 64³.
 * (VoCo resizes base crops a second time to 64³; with align_corners that is the identity.)
 */
export const VOCO_V1_GEOMETRY: VocoGeometry = deepFreeze({
  region: [384, 384, 96],
  grid: [4, 4],
  baseCrop: [96, 96, 96],
  randomCrop: [96, 96, 96],
  numRandom: 2,
  cropOut: [64, 64, 64],
  randomCentreRange: { x: [48, 336], y: [48, 336] },
});

/** VoCo v2: 192×192×64 region, 3×3 grid of 64³, 2 random 64³ crops, no resize. */
export const VOCO_V2_GEOMETRY: VocoGeometry = deepFreeze({
  region: [192, 192, 64],
  grid: [3, 3],
  baseCrop: [64, 64, 64],
  randomCrop: [64, 64, 64],
  numRandom: 2,
  cropOut: null,
  randomCentreRange: { x: [32, 160], y: [32, 160] },
});

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (v && typeof v === 'object') deepFreeze(v as object);
  return Object.freeze(o);
}

const isPosInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;

function checkVec(name: string, v: unknown, len: number, problems: string[]): boolean {
  if (!Array.isArray(v) || v.length !== len || !v.every(isPosInt)) {
    problems.push(`${name} must be ${len} positive integers, got ${JSON.stringify(v)}`);
    return false;
  }
  return true;
}

/** Throws an Error listing every inconsistency of `g` (all of them, not just the first). */
export function validateGeometry(g: VocoGeometry): void {
  const problems: string[] = [];
  const shapesOk = [
    checkVec('region', g.region, 3, problems),
    checkVec('grid', g.grid, 2, problems),
    checkVec('baseCrop', g.baseCrop, 3, problems),
    checkVec('randomCrop', g.randomCrop, 3, problems),
  ].every(Boolean);
  if (!isPosInt(g.numRandom)) problems.push(`numRandom must be a positive integer, got ${JSON.stringify(g.numRandom)}`);
  const outOk = g.cropOut === null || checkVec('cropOut', g.cropOut, 3, problems);
  if (shapesOk) {
    const [X, Y, Z] = g.region;
    const [gx, gy] = g.grid;
    const [bx, by, bz] = g.baseCrop;
    const [rx, ry, rz] = g.randomCrop;
    if (gx * bx !== X) problems.push(`grid x (${gx}) × baseCrop x (${bx}) = ${gx * bx} must equal region x (${X})`);
    if (gy * by !== Y) problems.push(`grid y (${gy}) × baseCrop y (${by}) = ${gy * by} must equal region y (${Y})`);
    if (bz !== Z) problems.push(`baseCrop z (${bz}) must equal region z (${Z}): z is never split`);
    if (rz !== Z) problems.push(`randomCrop z (${rz}) must equal region z (${Z}): position labels count only x–y overlap`);
    if (rx > X || ry > Y) problems.push(`randomCrop [${rx}, ${ry}] does not fit the region [${X}, ${Y}] in-plane`);
    if (outOk && g.cropOut === null && (bx !== rx || by !== ry || bz !== rz)) {
      problems.push(`baseCrop [${g.baseCrop.join(', ')}] and randomCrop [${g.randomCrop.join(', ')}] differ and cropOut is null: every crop must end up the same shape`);
    }
    const range = g.randomCentreRange as VocoGeometry['randomCentreRange'] | undefined;
    for (const [axis, size, extent] of [['x', rx, X], ['y', ry, Y]] as const) {
      const r = range?.[axis];
      if (!Array.isArray(r) || r.length !== 2 || !r.every(Number.isInteger)) {
        problems.push(`randomCentreRange.${axis} must be two integers [lo, hi), got ${JSON.stringify(r)}`);
        continue;
      }
      const [lo, hi] = r as readonly [number, number];
      if (!(hi > lo)) {
        problems.push(`randomCentreRange.${axis} [${lo}, ${hi}) is empty`);
        continue;
      }
      const half = Math.floor(size / 2);
      if (lo - half < 0) problems.push(`randomCentreRange.${axis} low ${lo} puts the crop start at ${lo - half} < 0 (needs lo ≥ ${half})`);
      if (hi - 1 - half + size > extent) {
        problems.push(`randomCentreRange.${axis} high ${hi} (exclusive) lets the crop end at ${hi - 1 - half + size} > region ${axis} ${extent} (needs hi ≤ ${extent - size + half + 1})`);
      }
    }
  }
  if (problems.length > 0) throw new Error(`invalid VoCo geometry:\n  - ${problems.join('\n  - ')}`);
}

/** Number of base crops (= position labels per random crop): gx·gy. */
export function baseCropCount(g: VocoGeometry): number {
  return g.grid[0] * g.grid[1];
}

/** The shape every crop has after extraction (and resize): cropOut, or the crop size. */
export function cropOutputShape(g: VocoGeometry): [number, number, number] {
  const s = g.cropOut ?? g.randomCrop;
  return [s[0], s[1], s[2]];
}

/** The base crop boxes in order k = gy·i + j (i along x, j along y), each spanning the full z. */
export function baseCropBoxes(g: VocoGeometry): CropBox[] {
  const [gx, gy] = g.grid;
  const [bx, by, bz] = g.baseCrop;
  const boxes: CropBox[] = [];
  for (let i = 0; i < gx; i++) {
    for (let j = 0; j < gy; j++) boxes.push({ start: [i * bx, j * by, 0], size: [bx, by, bz] });
  }
  return boxes;
}

/** MONAI SpatialCrop's start for a centre: max(centre − size//2, 0). */
export function cropStart(centre: number, size: number): number {
  return Math.max(centre - Math.floor(size / 2), 0);
}

/** The random crop box around an in-plane centre (cx, cy); z is centred in the region (start 0 when rz = Z). */
export function randomCropBox(centre: readonly [number, number], g: VocoGeometry): CropBox {
  const [rx, ry, rz] = g.randomCrop;
  return {
    start: [cropStart(centre[0], rx), cropStart(centre[1], ry), cropStart(Math.floor(g.region[2] / 2), rz)],
    size: [rx, ry, rz],
  };
}

/**
 * Position labels of the random crop centred at `centre`: for base crop k = gy·i + j, the
 * in-plane overlap area of the two boxes divided by rx·ry (0 without overlap).
 */
export function positionLabels(centre: readonly [number, number], g: VocoGeometry): Float64Array {
  const [gx, gy] = g.grid;
  const [bx, by] = g.baseCrop;
  const [rx, ry] = g.randomCrop;
  const box = randomCropBox(centre, g);
  const [sx, sy] = box.start;
  const labels = new Float64Array(gx * gy);
  for (let i = 0; i < gx; i++) {
    const dx = Math.min((i + 1) * bx, sx + rx) - Math.max(i * bx, sx);
    if (dx <= 0) continue;
    for (let j = 0; j < gy; j++) {
      const dy = Math.min((j + 1) * by, sy + ry) - Math.max(j * by, sy);
      if (dy > 0) labels[gy * i + j] = (dx * dy) / (rx * ry);
    }
  }
  return labels;
}

/** Draws one random crop centre: cx then cy, each rng.int(lo, hi). */
export function drawRandomCentre(g: VocoGeometry, rng: { int(min: number, max: number): number }): [number, number] {
  const { x, y } = g.randomCentreRange;
  const cx = rng.int(x[0], x[1]);
  const cy = rng.int(y[0], y[1]);
  return [cx, cy];
}
