import type { Affine, Shape4, Volume, VoxelArray } from '../../../src/volume/volume.ts';

export function diagAffine(sx: number, sy: number, sz: number, t: [number, number, number] = [0, 0, 0]): Affine {
  return [
    [sx, 0, 0, t[0]],
    [0, sy, 0, t[1]],
    [0, 0, sz, t[2]],
    [0, 0, 0, 1],
  ];
}

/** A volume whose voxel (c, x, y, z) holds fn(c, x, y, z). */
export function makeVolume<T extends VoxelArray = Float32Array>(
  shape: Shape4,
  fn: (c: number, x: number, y: number, z: number) => number,
  affine: Affine = diagAffine(1, 1, 1),
  Ctor: new (n: number) => T = Float32Array as unknown as new (n: number) => T,
): Volume<T> {
  const [C, X, Y, Z] = shape;
  const data = new Ctor(C * X * Y * Z);
  let i = 0;
  for (let c = 0; c < C; c++) for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) data[i++] = fn(c, x, y, z);
  return { data, shape, affine };
}

export function at(v: Volume, c: number, x: number, y: number, z: number): number {
  const [, X, Y, Z] = v.shape;
  return v.data[((c * X + x) * Y + y) * Z + z] as number;
}

export function world(a: Affine, p: readonly number[]): number[] {
  return [0, 1, 2].map((i) => a[i]![0]! * p[0]! + a[i]![1]! * p[1]! + a[i]![2]! * p[2]! + a[i]![3]!);
}

/** Rotation about z by `deg` degrees, times diag(s), plus translation. */
export function rotZAffine(deg: number, s: [number, number, number], t: [number, number, number]): Affine {
  const r = (deg * Math.PI) / 180;
  const c = Math.cos(r);
  const n = Math.sin(r);
  return [
    [c * s[0], -n * s[1], 0, t[0]],
    [n * s[0], c * s[1], 0, t[1]],
    [0, 0, s[2], t[2]],
    [0, 0, 0, 1],
  ];
}
