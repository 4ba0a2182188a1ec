/**
 * Orientation: reorder and flip the spatial axes so that the voxel axes point along the requested
 * axis codes (e.g. 'RAS'), as MONAI `Orientation(axcodes=…)` does with nibabel's orientation
 * ("ornt") arithmetic. Only voxels move, so the data are bit-for-bit the input's; the affine is
 * updated so every voxel keeps its world position.
 *
 * Axis codes: each letter names the world direction a voxel axis points *towards*:
 * L/R (world x), P/A (world y), I/S (world z).
 */
import type { Affine, Volume, VoxelArray } from '../volume.ts';
import { checkAffine, invert, linearPart, matMul, transpose } from './affine.ts';
import { allocLike } from './resample.ts';

/** Per input axis: [output world/voxel axis, +1 or −1]. */
export type Ornt = [number, 1 | -1][];

const LABELS: readonly [string, string][] = [
  ['L', 'R'],
  ['P', 'A'],
  ['I', 'S'],
];

/**
 * The orientation of a voxel→world affine, like nibabel `io_orientation`: for each voxel axis,
 * the world axis it is closest to and the direction. Uses the orthogonal polar factor of the
 * column-normalised linear part, then assigns axes greedily in voxel-axis order.
 */
export function ioOrientation(affine: Affine): Ornt {
  checkAffine(affine);
  const rzs = linearPart(affine);
  const rs = rzs.map((row) => row.slice());
  for (let j = 0; j < 3; j++) {
    let z = Math.hypot(rzs[0]![j]!, rzs[1]![j]!, rzs[2]![j]!);
    if (z === 0) z = 1;
    for (let i = 0; i < 3; i++) rs[i]![j] = rzs[i]![j]! / z;
  }
  const r = polarFactor(rs);
  const ornt: Ornt = [];
  for (let inAx = 0; inAx < 3; inAx++) {
    let outAx = 0;
    let best = -1;
    for (let i = 0; i < 3; i++) {
      const v = Math.abs(r[i]![inAx]!);
      if (v > best) {
        best = v;
        outAx = i;
      }
    }
    if (!(best > 1e-12)) throw new Error('affine has a degenerate voxel axis; cannot determine its orientation');
    ornt.push([outAx, r[outAx]![inAx]! < 0 ? -1 : 1]);
    for (let j = 0; j < 3; j++) r[outAx]![j] = 0;
  }
  return ornt;
}

/** Orthogonal factor U of A = U·H (Newton iteration U ← (U + U⁻ᵀ)/2). */
function polarFactor(a: number[][]): number[][] {
  let u = a.map((row) => row.slice());
  for (let it = 0; it < 100; it++) {
    let inv: number[][];
    try {
      inv = invert(u);
    } catch {
      throw new Error('affine is singular; cannot determine its orientation');
    }
    const invT = transpose(inv);
    const next = u.map((row, i) => row.map((v, j) => 0.5 * (v + invT[i]![j]!)));
    let diff = 0;
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) diff = Math.max(diff, Math.abs(next[i]![j]! - u[i]![j]!));
    u = next;
    if (diff < 1e-15) break;
  }
  return u;
}

export function orntToAxcodes(ornt: Ornt): string {
  return ornt.map(([ax, flip]) => LABELS[ax]![flip === 1 ? 1 : 0]).join('');
}

export function affineToAxcodes(affine: Affine): string {
  return orntToAxcodes(ioOrientation(affine));
}

/** Validate axis codes ('RAS', 'lps', …) and return them upper-case. */
export function normalizeAxcodes(axcodes: string): string {
  if (typeof axcodes !== 'string' || axcodes.length !== 3) throw new Error(`axcodes must be 3 letters such as "RAS", got ${JSON.stringify(axcodes)}`);
  const up = axcodes.toUpperCase();
  axcodesToOrnt(up);
  return up;
}

export function axcodesToOrnt(axcodes: string): Ornt {
  const up = axcodes.toUpperCase();
  const ornt: Ornt = [];
  const used = new Set<number>();
  for (const ch of up) {
    const ax = LABELS.findIndex((pair) => pair.includes(ch));
    if (ax < 0) throw new Error(`invalid axis code "${ch}" in "${axcodes}" (use one of L/R, P/A, I/S per axis)`);
    if (used.has(ax)) throw new Error(`axis codes "${axcodes}" name the ${LABELS[ax]!.join('/')} axis twice`);
    used.add(ax);
    ornt.push([ax, LABELS[ax]![1] === ch ? 1 : -1]);
  }
  if (ornt.length !== 3) throw new Error(`axcodes must be 3 letters such as "RAS", got ${JSON.stringify(axcodes)}`);
  return ornt;
}

/** The orientation transform taking arrays in `start` orientation to `end` (nibabel `ornt_transform`). */
export function orntTransform(start: Ornt, end: Ornt): Ornt {
  return start.map(([startAx, startFlip]) => {
    const j = end.findIndex(([endAx]) => endAx === startAx);
    if (j < 0) throw new Error('orientations do not share the same world axes');
    return [j, startFlip === end[j]![1] ? 1 : -1] as [number, 1 | -1];
  });
}

export interface OrientationResult<T extends VoxelArray> {
  volume: Volume<T>;
  /** the transform applied: input axis i went to output axis ornt[i][0], flipped when ornt[i][1] = −1 */
  ornt: Ornt;
  /** axis codes of the input */
  inputAxcodes: string;
  /** true when nothing moved (the output shares the input's data array) */
  unchanged: boolean;
}

/**
 * Reorient `vol` to `axcodes`. The output shares the input's data array when the volume already
 * has that orientation (volumes are treated as immutable).
 */
export function orientation<T extends VoxelArray>(vol: Volume<T>, axcodes: string): OrientationResult<T> {
  const target = axcodesToOrnt(normalizeAxcodes(axcodes));
  const src = ioOrientation(vol.affine);
  const tr = orntTransform(src, target);
  const inputAxcodes = orntToAxcodes(src);
  return { ...applyOrnt(vol, tr), ornt: tr, inputAxcodes };
}

/** Apply an orientation transform (flip input axes, then move input axis i to ornt[i][0]). */
export function applyOrnt<T extends VoxelArray>(vol: Volume<T>, ornt: Ornt): { volume: Volume<T>; unchanged: boolean } {
  const [C, ...nIn] = vol.shape;
  const identityOrnt = ornt.every(([ax, flip], i) => ax === i && flip === 1);
  if (identityOrnt) return { volume: { data: vol.data, shape: [...vol.shape], affine: vol.affine.map((r) => r.slice()) }, unchanged: true };

  // T maps output voxel index → input voxel index; new affine = A · T
  const t: number[][] = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  const inAxisOf = [0, 0, 0];
  ornt.forEach(([ax, flip], i) => {
    t[i]![ax] = flip;
    t[i]![3] = flip === -1 ? nIn[i]! - 1 : 0;
    inAxisOf[ax] = i;
  });
  const affine = matMul(vol.affine, t);

  const strideIn = [nIn[1]! * nIn[2]!, nIn[2]!, 1];
  const outSpatial = inAxisOf.map((i) => nIn[i]!) as [number, number, number];
  // input offset = base + Σ_k o_k · step_k
  const step = [0, 0, 0];
  let base = 0;
  for (let k = 0; k < 3; k++) {
    const i = inAxisOf[k]!;
    const flip = ornt[i]![1];
    step[k] = flip * strideIn[i]!;
    if (flip === -1) base += (nIn[i]! - 1) * strideIn[i]!;
  }
  const src = vol.data;
  const out = allocLike(src, src.length);
  const [n0, n1, n2] = outSpatial;
  const [s0, s1, s2] = step as [number, number, number];
  const cStride = nIn[0]! * nIn[1]! * nIn[2]!;
  let o = 0;
  for (let c = 0; c < C; c++) {
    const cb = c * cStride + base;
    for (let a = 0; a < n0; a++) {
      const ba = cb + a * s0;
      for (let b = 0; b < n1; b++) {
        let p = ba + b * s1;
        for (let z = 0; z < n2; z++, p += s2) out[o++] = src[p] as number;
      }
    }
  }
  return { volume: { data: out, shape: [C, n0, n1, n2], affine }, unchanged: false };
}
