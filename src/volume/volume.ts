/**
 * A volume in memory, in MONAI's layout.
 *
 * Axis convention: `shape` is `[C, X, Y, Z]` — channels first, then the NIfTI voxel index axes
 * i, j, k in that order (after `Orientation('RAS')`, X runs left→right, Y posterior→anterior,
 * Z inferior→superior). `data` is stored in C (row-major) order over that shape, so Z varies
 * fastest: the voxel (c, x, y, z) is at `((c * X + x) * Y + y) * Z + z`. This is the memory
 * layout of a numpy array of a MONAI `MetaTensor` for one volume, and of the reference fixtures.
 * (NIfTI stores voxels with X fastest; the reader transposes.)
 *
 * `affine` maps the voxel index (x, y, z, 1) to world millimetres (RAS, as nibabel and MONAI
 * report it), as a 4×4 row-major nested array: `affine[row][col]`.
 */
export type VoxelArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array;

export type Affine = number[][];

export type Shape4 = [c: number, x: number, y: number, z: number];

export interface Volume<T extends VoxelArray = VoxelArray> {
  data: T;
  shape: Shape4;
  affine: Affine;
}

export function voxelCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function identityAffine(): Affine {
  return [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
}

export function createVolume<T extends VoxelArray>(data: T, shape: Shape4, affine: Affine): Volume<T> {
  const n = voxelCount(shape);
  if (data.length !== n) {
    throw new Error(`volume data has ${data.length} voxels but shape [${shape.join(', ')}] needs ${n}`);
  }
  if (affine.length !== 4 || affine.some((row) => row.length !== 4)) {
    throw new Error('volume affine must be a 4x4 nested array');
  }
  return { data, shape, affine };
}
