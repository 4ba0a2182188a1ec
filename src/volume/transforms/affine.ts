/**
 * Small dense linear algebra for 3×3 / 4×4 affines (float64, plain nested arrays).
 *
 * Everything here is written for clarity and for numerical behaviour close to numpy/LAPACK on
 * the same inputs: `solve` is Gaussian elimination with partial pivoting (what `numpy.linalg.solve`
 * does through LAPACK getrf/getrs), and products sum in index order. For diagonal matrices both
 * give the exact IEEE results numpy gives, which matters where MONAI rounds a computed extent.
 */
import type { Affine } from '../volume.ts';

export type Matrix = number[][];

export function cloneMatrix(a: readonly (readonly number[])[]): Matrix {
  return a.map((row) => row.slice());
}

export function identity(n: number): Matrix {
  const out: Matrix = [];
  for (let i = 0; i < n; i++) {
    const row = new Array<number>(n).fill(0);
    row[i] = 1;
    out.push(row);
  }
  return out;
}

function at(m: readonly (readonly number[])[], i: number, j: number): number {
  return (m[i] as readonly number[])[j] as number;
}

/** a · b for any compatible dense matrices; sums run k = 0, 1, … like a plain dot product. */
export function matMul(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): Matrix {
  const n = a.length;
  const m = (b[0] as readonly number[]).length;
  const inner = b.length;
  const out: Matrix = [];
  for (let i = 0; i < n; i++) {
    const row = new Array<number>(m).fill(0);
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < inner; k++) s += at(a, i, k) * at(b, k, j);
      row[j] = s;
    }
    out.push(row);
  }
  return out;
}

export function transpose(a: readonly (readonly number[])[]): Matrix {
  const rows = a.length;
  const cols = (a[0] as readonly number[]).length;
  const out: Matrix = [];
  for (let j = 0; j < cols; j++) {
    const row: number[] = [];
    for (let i = 0; i < rows; i++) row.push(at(a, i, j));
    out.push(row);
  }
  return out;
}

/**
 * Solve A·X = B (A n×n, B n×m) by Gaussian elimination with partial pivoting.
 * Throws on a singular matrix.
 */
export function solve(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): Matrix {
  const n = a.length;
  const lu = cloneMatrix(a);
  const x = cloneMatrix(b);
  const m = (x[0] as number[]).length;
  for (let col = 0; col < n; col++) {
    let piv = col;
    let best = Math.abs(at(lu, col, col));
    for (let r = col + 1; r < n; r++) {
      const v = Math.abs(at(lu, r, col));
      if (v > best) {
        best = v;
        piv = r;
      }
    }
    if (!(best > 0) || !Number.isFinite(best)) throw new Error('singular matrix');
    if (piv !== col) {
      [lu[piv], lu[col]] = [lu[col] as number[], lu[piv] as number[]];
      [x[piv], x[col]] = [x[col] as number[], x[piv] as number[]];
    }
    const prow = lu[col] as number[];
    const xrow = x[col] as number[];
    const d = prow[col] as number;
    for (let r = col + 1; r < n; r++) {
      const row = lu[r] as number[];
      const f = (row[col] as number) / d;
      if (f === 0) continue;
      row[col] = 0;
      for (let c = col + 1; c < n; c++) row[c] = (row[c] as number) - f * (prow[c] as number);
      const xr = x[r] as number[];
      for (let c = 0; c < m; c++) xr[c] = (xr[c] as number) - f * (xrow[c] as number);
    }
  }
  for (let col = n - 1; col >= 0; col--) {
    const row = lu[col] as number[];
    const xr = x[col] as number[];
    for (let c = 0; c < m; c++) {
      let s = xr[c] as number;
      for (let k = col + 1; k < n; k++) s -= (row[k] as number) * at(x, k, c);
      xr[c] = s / (row[col] as number);
    }
  }
  return x;
}

export function invert(a: readonly (readonly number[])[]): Matrix {
  return solve(a, identity(a.length));
}

/** Lower-triangular L with L·Lᵀ = m (m symmetric positive definite). */
export function cholesky(m: readonly (readonly number[])[]): Matrix {
  const n = m.length;
  const l: Matrix = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    const li = l[i] as number[];
    for (let j = 0; j <= i; j++) {
      const lj = l[j] as number[];
      let s = at(m, i, j);
      for (let k = 0; k < j; k++) s -= (li[k] as number) * (lj[k] as number);
      if (i === j) {
        if (!(s > 0)) throw new Error('matrix is not positive definite');
        li[i] = Math.sqrt(s);
      } else {
        li[j] = s / (lj[j] as number);
      }
    }
  }
  return l;
}

/** Upper-left 3×3 block of a 4×4 affine. */
export function linearPart(a: Affine): Matrix {
  return [0, 1, 2].map((i) => [0, 1, 2].map((j) => at(a, i, j)));
}

export function translationPart(a: Affine): [number, number, number] {
  return [at(a, 0, 3), at(a, 1, 3), at(a, 2, 3)];
}

/** Build a 4×4 affine from a 3×3 linear part and a translation. */
export function composeAffine(lin: readonly (readonly number[])[], t: readonly number[]): Affine {
  return [
    [at(lin, 0, 0), at(lin, 0, 1), at(lin, 0, 2), t[0] as number],
    [at(lin, 1, 0), at(lin, 1, 1), at(lin, 1, 2), t[1] as number],
    [at(lin, 2, 0), at(lin, 2, 1), at(lin, 2, 2), t[2] as number],
    [0, 0, 0, 1],
  ];
}

/** A · (x, y, z, 1) → world point (3 values). */
export function applyAffine(a: Affine, p: readonly number[]): [number, number, number] {
  const out: [number, number, number] = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    out[i] = at(a, i, 0) * (p[0] as number) + at(a, i, 1) * (p[1] as number) + at(a, i, 2) * (p[2] as number) + at(a, i, 3);
  }
  return out;
}

/**
 * The affine of a grid whose voxel 0 sits at voxel `offset` of the grid described by `a`
 * (a crop starting at `offset`, or a pad with `offset = -before`): A · T(offset).
 */
export function shiftOrigin(a: Affine, offset: readonly number[]): Affine {
  const t: Affine = [
    [1, 0, 0, offset[0] as number],
    [0, 1, 0, offset[1] as number],
    [0, 0, 1, offset[2] as number],
    [0, 0, 0, 1],
  ];
  return matMul(a, t);
}

export function allClose(a: readonly (readonly number[])[], b: readonly (readonly number[])[], atol: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const ra = a[i] as readonly number[];
    const rb = b[i] as readonly number[];
    if (ra.length !== rb.length) return false;
    for (let j = 0; j < ra.length; j++) {
      if (!(Math.abs((ra[j] as number) - (rb[j] as number)) <= atol)) return false;
    }
  }
  return true;
}

/** numpy's `round`: half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** Voxel sizes (column norms of the linear part), as nibabel's `affine_to_spacing`/zooms. */
export function voxelSizes(a: Affine): [number, number, number] {
  const out: [number, number, number] = [0, 0, 0];
  for (let j = 0; j < 3; j++) out[j] = Math.hypot(at(a, 0, j), at(a, 1, j), at(a, 2, j));
  return out;
}

export function checkAffine(a: Affine, what = 'affine'): void {
  if (!Array.isArray(a) || a.length !== 4 || a.some((r) => !Array.isArray(r) || r.length !== 4 || r.some((v) => !Number.isFinite(v)))) {
    throw new Error(`${what} must be a 4x4 array of finite numbers`);
  }
}
