/**
 * Resampling kernels shared by `spacing` and `resize`.
 *
 * Two families:
 * - separable: each output axis reads only its own input axis (a diagonal voxel map, which is
 *   every Resize and every Spacing of an orthogonal-column affine). Per axis a table gives, for
 *   each output index, the two input indices and the weight of the second; linear interpolation
 *   then runs as up to three 1-D passes over typed arrays (float64 in between, float32 out), in
 *   the order that keeps the intermediates smallest. Nearest is a single gather that keeps the
 *   input's array type.
 * - general: any 3×4 voxel map (output voxel → input voxel coordinate), evaluated per voxel with
 *   trilinear weights (float64) or nearest (round half to even), for oblique/sheared cases.
 *
 * Out-of-range coordinates are clamped to [0, n − 1] ("border" padding).
 */
import type { Shape4, VoxelArray } from '../volume.ts';

export interface LinearAxisTable {
  /** first input index for each output index */
  i0: Int32Array;
  /** second input index (i0 + 1, or i0 at the last voxel) */
  i1: Int32Array;
  /** weight of i1; i0 gets 1 − w */
  w: Float64Array;
}

/** Linear table from a source coordinate per output index, clamped to [0, nIn − 1]. */
export function linearAxisTable(nOut: number, nIn: number, coord: (o: number) => number): LinearAxisTable {
  const i0 = new Int32Array(nOut);
  const i1 = new Int32Array(nOut);
  const w = new Float64Array(nOut);
  const hi = nIn - 1;
  for (let o = 0; o < nOut; o++) {
    let c = coord(o);
    if (!(c > 0)) c = 0; // also maps NaN to 0
    if (c > hi) c = hi;
    const f = Math.floor(c);
    i0[o] = f;
    i1[o] = f < hi ? f + 1 : f;
    w[o] = c - f;
  }
  return { i0, i1, w };
}

function isIdentityTable(t: LinearAxisTable, nIn: number): boolean {
  if (t.i0.length !== nIn) return false;
  for (let o = 0; o < nIn; o++) if (t.i0[o] !== o || t.w[o] !== 0) return false;
  return true;
}

type NumArray = VoxelArray | Float64Array;

/** One 1-D linear pass along spatial axis `axis` (1..3) of a [C, X, Y, Z] array. */
function linearPass(src: NumArray, dims: number[], axis: number, t: LinearAxisTable, out: Float64Array | Float32Array): void {
  const nIn = dims[axis] as number;
  const nOut = t.i0.length;
  let outer = 1;
  for (let a = 0; a < axis; a++) outer *= dims[a] as number;
  let inner = 1;
  for (let a = axis + 1; a < dims.length; a++) inner *= dims[a] as number;
  const { i0, i1, w } = t;
  for (let p = 0; p < outer; p++) {
    const inBase = p * nIn * inner;
    const outBase = p * nOut * inner;
    for (let o = 0; o < nOut; o++) {
      const a = inBase + (i0[o] as number) * inner;
      const b = inBase + (i1[o] as number) * inner;
      const wb = w[o] as number;
      const ob = outBase + o * inner;
      if (wb === 0) {
        for (let q = 0; q < inner; q++) out[ob + q] = src[a + q] as number;
      } else {
        const wa = 1 - wb;
        for (let q = 0; q < inner; q++) out[ob + q] = (src[a + q] as number) * wa + (src[b + q] as number) * wb;
      }
    }
  }
}

const PERMS: number[][] = [
  [1, 2, 3],
  [1, 3, 2],
  [2, 1, 3],
  [2, 3, 1],
  [3, 1, 2],
  [3, 2, 1],
];

/**
 * Separable linear resampling of `src` (shape [C, X, Y, Z]) with one table per spatial axis.
 * Returns float32 data of shape [C, tables[0].len, tables[1].len, tables[2].len].
 */
export function separableLinear(src: VoxelArray, shape: Shape4, tables: readonly [LinearAxisTable, LinearAxisTable, LinearAxisTable]): Float32Array {
  const outSizes = tables.map((t) => t.i0.length);
  const active = [1, 2, 3].filter((a) => !isIdentityTable(tables[a - 1] as LinearAxisTable, shape[a] as number));
  const outCount = shape[0] * (outSizes[0] as number) * (outSizes[1] as number) * (outSizes[2] as number);
  if (active.length === 0) return Float32Array.from(src as ArrayLike<number>);
  // pick the pass order with the least total work (sum of pass output sizes)
  let bestOrder: number[] = active;
  let bestCost = Infinity;
  for (const perm of PERMS) {
    const order = perm.filter((a) => active.includes(a));
    const dims = shape.slice();
    let cost = 0;
    for (const a of order) {
      dims[a] = outSizes[a - 1] as number;
      cost += dims.reduce((x, y) => x * y, 1);
    }
    if (cost < bestCost) {
      bestCost = cost;
      bestOrder = order;
    }
  }
  let cur: NumArray = src;
  const dims = shape.slice();
  for (let k = 0; k < bestOrder.length; k++) {
    const a = bestOrder[k] as number;
    const next = dims.slice();
    next[a] = outSizes[a - 1] as number;
    const n = next.reduce((x, y) => x * y, 1);
    const out = k === bestOrder.length - 1 ? new Float32Array(n) : new Float64Array(n);
    linearPass(cur, dims, a, tables[a - 1] as LinearAxisTable, out);
    cur = out;
    dims[a] = next[a] as number;
  }
  if (cur.length !== outCount) throw new Error('internal: separable resample size mismatch');
  return cur as Float32Array;
}

export function allocLike<T extends VoxelArray>(data: T, n: number): T {
  const Ctor = data.constructor as new (n: number) => T;
  return new Ctor(n);
}

/** Separable nearest: out[c, x, y, z] = src[c, ix[x], iy[y], iz[z]]; keeps the array type. */
export function separableGather<T extends VoxelArray>(src: T, shape: Shape4, idx: readonly [Int32Array, Int32Array, Int32Array]): T {
  const [C, , Y, Z] = shape;
  const [ix, iy, iz] = idx;
  const nx = ix.length;
  const ny = iy.length;
  const nz = iz.length;
  const out = allocLike(src, C * nx * ny * nz);
  let o = 0;
  for (let c = 0; c < C; c++) {
    for (let x = 0; x < nx; x++) {
      const bx = (c * shape[1] + (ix[x] as number)) * Y;
      for (let y = 0; y < ny; y++) {
        const by = (bx + (iy[y] as number)) * Z;
        for (let z = 0; z < nz; z++) out[o++] = src[by + (iz[z] as number)] as number;
      }
    }
  }
  return out;
}

/**
 * General trilinear resampling with a 3×4 voxel map `m` (rows: input x, y, z; columns: output
 * x, y, z, 1), border clamping, float64 arithmetic, float32 output.
 */
export function generalLinear(src: VoxelArray, shape: Shape4, m: readonly (readonly number[])[], outSpatial: readonly [number, number, number]): Float32Array {
  const [C, X, Y, Z] = shape;
  const [nx, ny, nz] = outSpatial;
  const out = new Float32Array(C * nx * ny * nz);
  const r0 = m[0] as readonly number[];
  const r1 = m[1] as readonly number[];
  const r2 = m[2] as readonly number[];
  const hx = X - 1;
  const hy = Y - 1;
  const hz = Z - 1;
  const sX = Y * Z;
  const cStride = X * Y * Z;
  let o = 0;
  for (let c = 0; c < C; c++) {
    const cb = c * cStride;
    for (let x = 0; x < nx; x++) {
      for (let y = 0; y < ny; y++) {
        const bx = (r0[0] as number) * x + (r0[1] as number) * y + (r0[3] as number);
        const by = (r1[0] as number) * x + (r1[1] as number) * y + (r1[3] as number);
        const bz = (r2[0] as number) * x + (r2[1] as number) * y + (r2[3] as number);
        for (let z = 0; z < nz; z++) {
          let px = bx + (r0[2] as number) * z;
          let py = by + (r1[2] as number) * z;
          let pz = bz + (r2[2] as number) * z;
          if (!(px > 0)) px = 0;
          else if (px > hx) px = hx;
          if (!(py > 0)) py = 0;
          else if (py > hy) py = hy;
          if (!(pz > 0)) pz = 0;
          else if (pz > hz) pz = hz;
          const x0 = Math.floor(px);
          const y0 = Math.floor(py);
          const z0 = Math.floor(pz);
          const wx = px - x0;
          const wy = py - y0;
          const wz = pz - z0;
          const dx = x0 < hx ? sX : 0;
          const dy = y0 < hy ? Z : 0;
          const dz = z0 < hz ? 1 : 0;
          const i000 = cb + x0 * sX + y0 * Z + z0;
          const v000 = src[i000] as number;
          const v001 = src[i000 + dz] as number;
          const v010 = src[i000 + dy] as number;
          const v011 = src[i000 + dy + dz] as number;
          const v100 = src[i000 + dx] as number;
          const v101 = src[i000 + dx + dz] as number;
          const v110 = src[i000 + dx + dy] as number;
          const v111 = src[i000 + dx + dy + dz] as number;
          const uz = 1 - wz;
          const a00 = v000 * uz + v001 * wz;
          const a01 = v010 * uz + v011 * wz;
          const a10 = v100 * uz + v101 * wz;
          const a11 = v110 * uz + v111 * wz;
          const uy = 1 - wy;
          out[o++] = (a00 * uy + a01 * wy) * (1 - wx) + (a10 * uy + a11 * wy) * wx;
        }
      }
    }
  }
  return out;
}

/** Round half to even for non-negative values (torch `nearbyint` in the default rounding mode). */
function rintPos(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** General nearest-neighbour resampling (round half to even, border clamping); keeps the array type. */
export function generalNearest<T extends VoxelArray>(src: T, shape: Shape4, m: readonly (readonly number[])[], outSpatial: readonly [number, number, number]): T {
  const [C, X, Y, Z] = shape;
  const [nx, ny, nz] = outSpatial;
  const out = allocLike(src, C * nx * ny * nz);
  const r0 = m[0] as readonly number[];
  const r1 = m[1] as readonly number[];
  const r2 = m[2] as readonly number[];
  const hx = X - 1;
  const hy = Y - 1;
  const hz = Z - 1;
  const cStride = X * Y * Z;
  let o = 0;
  for (let c = 0; c < C; c++) {
    const cb = c * cStride;
    for (let x = 0; x < nx; x++) {
      for (let y = 0; y < ny; y++) {
        const bx = (r0[0] as number) * x + (r0[1] as number) * y + (r0[3] as number);
        const by = (r1[0] as number) * x + (r1[1] as number) * y + (r1[3] as number);
        const bz = (r2[0] as number) * x + (r2[1] as number) * y + (r2[3] as number);
        for (let z = 0; z < nz; z++) {
          let px = bx + (r0[2] as number) * z;
          let py = by + (r1[2] as number) * z;
          let pz = bz + (r2[2] as number) * z;
          if (!(px > 0)) px = 0;
          else if (px > hx) px = hx;
          if (!(py > 0)) py = 0;
          else if (py > hy) py = hy;
          if (!(pz > 0)) pz = 0;
          else if (pz > hz) pz = hz;
          out[o++] = src[cb + (rintPos(px) * Y + rintPos(py)) * Z + rintPos(pz)] as number;
        }
      }
    }
  }
  return out;
}

/** Nearest index per output index from a source coordinate (round half to even, clamped). */
export function nearestAxisIndex(nOut: number, nIn: number, coord: (o: number) => number): Int32Array {
  const idx = new Int32Array(nOut);
  const hi = nIn - 1;
  for (let o = 0; o < nOut; o++) {
    let c = coord(o);
    if (!(c > 0)) c = 0;
    if (c > hi) c = hi;
    idx[o] = rintPos(c);
  }
  return idx;
}

export interface LinearAxisTableF32 {
  i0: Int32Array;
  i1: Int32Array;
  /** weights of i0 and i1, float32 values */
  w0: Float32Array;
  w1: Float32Array;
}

/**
 * Separable linear interpolation in float32 arithmetic, passes Z, then Y, then X, each output
 * `fround(a·w0 + fround(b·w1))`, i.e. `fma(a, w0, b·w1)` in float32. This is how torch's CPU
 * `interpolate(mode="trilinear")` evaluates (innermost axis first, float32, the compiler fusing the
 * first product into the add), which makes the results bit-identical to torch (checked on the VoCo
 * fixture; the float64 emulation of the fused add could differ by an ulp in rare double-rounding
 * cases). Axes whose table is the identity are skipped (torch gives the input value there).
 */
export function separableLinearF32(src: VoxelArray, shape: Shape4, tables: readonly [LinearAxisTableF32, LinearAxisTableF32, LinearAxisTableF32]): Float32Array {
  const f = Math.fround;
  let cur: VoxelArray = src;
  const dims: number[] = shape.slice();
  for (const a of [3, 2, 1]) {
    const t = tables[a - 1] as LinearAxisTableF32;
    const nIn = dims[a] as number;
    const nOut = t.i0.length;
    let identityAxis = nOut === nIn;
    for (let o = 0; identityAxis && o < nOut; o++) if (t.i0[o] !== o || t.w1[o] !== 0 || t.w0[o] !== 1) identityAxis = false;
    if (identityAxis) continue;
    let outer = 1;
    for (let k = 0; k < a; k++) outer *= dims[k] as number;
    let inner = 1;
    for (let k = a + 1; k < 4; k++) inner *= dims[k] as number;
    const out = new Float32Array(outer * nOut * inner);
    const { i0, i1, w0, w1 } = t;
    for (let p = 0; p < outer; p++) {
      const inBase = p * nIn * inner;
      const outBase = p * nOut * inner;
      for (let o = 0; o < nOut; o++) {
        const ia = inBase + (i0[o] as number) * inner;
        const ib = inBase + (i1[o] as number) * inner;
        const wa = w0[o] as number;
        const wb = w1[o] as number;
        const ob = outBase + o * inner;
        for (let q = 0; q < inner; q++) out[ob + q] = (cur[ia + q] as number) * wa + f((cur[ib + q] as number) * wb);
      }
    }
    cur = out;
    dims[a] = nOut;
  }
  return cur instanceof Float32Array && cur !== src ? cur : Float32Array.from(cur as ArrayLike<number>);
}
