/**
 * NIfTI-1 writer: one `.nii` file, gzipped when the path ends in `.nii.gz`, little-endian,
 * vox_offset 352, no extensions.
 *
 * The volume's affine is written twice, as the sform (srow_x/y/z) and as the qform (quaternion,
 * qfac and qoffset, with pixdim[1..3] = the column norms of the affine), both with the same code
 * (1 = scanner anatomical by default, or 2 = aligned anatomical), so that readers that use either
 * one (nibabel/MONAI use the sform; ITK-SNAP, 3D Slicer and niivue look at both) place the image
 * at the same spot. An affine with shear cannot be expressed as a qform: the qform then holds the
 * nearest rotation (polar decomposition, as the NIfTI-1 standard prescribes) and only the sform is
 * exact.
 *
 * Volume layout: shape [C, X, Y, Z], Z fastest (see volume.ts); it is transposed back to the
 * NIfTI order (X fastest). C = 1 writes a 3-D image; C > 1 writes a 4-D image with dim4 = C (the
 * inverse of what readNifti's toVolume() does).
 *
 * The file is written atomically: to a temporary file in the same directory, then renamed.
 */
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { Affine, Volume, VoxelArray } from './volume.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { NiftiError } from './nifti-errors.ts';
import {
  HOST_LITTLE_ENDIAN,
  NIFTI_DATATYPES,
  bitView,
  byteSwapInPlace,
  datatypeOfArray,
  transposeXFastToZFast,
  type DatatypeInfo,
  type NiftiDatatype,
} from './nifti-read.ts';

const gzip = promisify(gzipCb);

export interface WriteNiftiOptions {
  /**
   * On-disk datatype; default: the datatype of `volume.data`. Converting float data to an integer
   * type rounds to the nearest integer and throws when a value does not fit.
   */
  datatype?: NiftiDatatype;
  /** Written to `descrip` (at most 79 bytes; longer text is cut, non-ASCII becomes '?'). */
  description?: string;
  /** qform_code and sform_code: 1 (scanner anatomical, default) or 2 (aligned anatomical). */
  xformCode?: 1 | 2;
  /** gzip level for .nii.gz (default 6). */
  gzipLevel?: number;
  /** Write NaN / ±Infinity in float output instead of throwing. Default false. */
  allowNonFinite?: boolean;
}

export interface Qform {
  /** Quaternion (b, c, d); a = sqrt(1 - b² - c² - d²) ≥ 0. */
  quatern: [number, number, number];
  /** qfac: -1 when the affine flips handedness, else 1 (stored in pixdim[0]). */
  qfac: 1 | -1;
  /** Voxel sizes: the column norms of the affine's 3×3 part. */
  zooms: [number, number, number];
  qoffset: [number, number, number];
}

type M3 = number[][];

function det3(m: M3): number {
  const [a, b, c] = m as [number[], number[], number[]];
  return (
    (a[0] as number) * ((b[1] as number) * (c[2] as number) - (b[2] as number) * (c[1] as number)) -
    (a[1] as number) * ((b[0] as number) * (c[2] as number) - (b[2] as number) * (c[0] as number)) +
    (a[2] as number) * ((b[0] as number) * (c[1] as number) - (b[1] as number) * (c[0] as number))
  );
}

/** Inverse transpose of a 3×3 matrix (the cofactor matrix divided by the determinant). */
function invTranspose3(m: M3): M3 {
  const g = (r: number, c: number): number => (m[r] as number[])[c] as number;
  const d = det3(m);
  const cof = (r: number, c: number): number => {
    const r1 = (r + 1) % 3;
    const r2 = (r + 2) % 3;
    const c1 = (c + 1) % 3;
    const c2 = (c + 2) % 3;
    return g(r1, c1) * g(r2, c2) - g(r1, c2) * g(r2, c1);
  };
  return [0, 1, 2].map((r) => [0, 1, 2].map((c) => cof(r, c) / d));
}

/** Nearest orthogonal matrix (polar decomposition) by Newton's iteration Q ← (Q + Q⁻ᵀ) / 2. */
function nearestOrthogonal(m: M3): M3 {
  let q = m.map((r) => r.slice());
  for (let it = 0; it < 100; it++) {
    const inv = invTranspose3(q);
    let diff = 0;
    const next = q.map((row, r) =>
      row.map((v, c) => {
        const n = (v + ((inv[r] as number[])[c] as number)) / 2;
        diff = Math.max(diff, Math.abs(n - v));
        return n;
      }),
    );
    q = next;
    if (diff < 1e-15) break;
  }
  return q;
}

/**
 * The NIfTI-1 qform parameters of an affine (the standard's method): zooms = column norms,
 * rotation = nearest orthogonal matrix to the normalised columns, qfac = -1 (and the third column
 * negated) when its determinant is negative, then the unit quaternion with a ≥ 0.
 */
export function affineToQform(affine: Affine, file = '<affine>'): Qform {
  const m: M3 = [0, 1, 2].map((r) => [0, 1, 2].map((c) => (affine[r] as number[])[c] as number));
  const zooms = [0, 1, 2].map((c) => Math.hypot(...[0, 1, 2].map((r) => (m[r] as number[])[c] as number)));
  for (let c = 0; c < 3; c++) {
    const z = zooms[c] as number;
    if (!(z > 0) || !Number.isFinite(z)) {
      throw new NiftiError(file, 'affine', `affine column ${c} has norm ${z}; the affine must be invertible and finite`);
    }
    for (let r = 0; r < 3; r++) (m[r] as number[])[c] = ((m[r] as number[])[c] as number) / z;
  }
  if (Math.abs(det3(m)) < 1e-12) {
    throw new NiftiError(file, 'affine', 'affine is singular (its columns are linearly dependent)');
  }
  const q = nearestOrthogonal(m);
  let qfac: 1 | -1 = 1;
  if (det3(q) < 0) {
    qfac = -1;
    for (let r = 0; r < 3; r++) (q[r] as number[])[2] = -((q[r] as number[])[2] as number);
  }
  const R = (r: number, c: number): number => (q[r] as number[])[c] as number;
  const trace = R(0, 0) + R(1, 1) + R(2, 2);
  let a: number;
  let b: number;
  let c: number;
  let d: number;
  if (trace > -0.5) {
    a = 0.5 * Math.sqrt(1 + trace);
    b = (R(2, 1) - R(1, 2)) / (4 * a);
    c = (R(0, 2) - R(2, 0)) / (4 * a);
    d = (R(1, 0) - R(0, 1)) / (4 * a);
  } else if (R(0, 0) >= R(1, 1) && R(0, 0) >= R(2, 2)) {
    b = 0.5 * Math.sqrt(1 + R(0, 0) - R(1, 1) - R(2, 2));
    a = (R(2, 1) - R(1, 2)) / (4 * b);
    c = (R(0, 1) + R(1, 0)) / (4 * b);
    d = (R(0, 2) + R(2, 0)) / (4 * b);
  } else if (R(1, 1) >= R(2, 2)) {
    c = 0.5 * Math.sqrt(1 - R(0, 0) + R(1, 1) - R(2, 2));
    a = (R(0, 2) - R(2, 0)) / (4 * c);
    b = (R(0, 1) + R(1, 0)) / (4 * c);
    d = (R(1, 2) + R(2, 1)) / (4 * c);
  } else {
    d = 0.5 * Math.sqrt(1 - R(0, 0) - R(1, 1) + R(2, 2));
    a = (R(1, 0) - R(0, 1)) / (4 * d);
    b = (R(0, 2) + R(2, 0)) / (4 * d);
    c = (R(1, 2) + R(2, 1)) / (4 * d);
  }
  if (a < 0) {
    b = -b;
    c = -c;
    d = -d;
  }
  return {
    quatern: [b, c, d],
    qfac,
    zooms: zooms as [number, number, number],
    qoffset: [0, 1, 2].map((r) => (affine[r] as number[])[3] as number) as [number, number, number],
  };
}

function checkVolume(file: string, volume: Volume): void {
  const { data, shape, affine } = volume;
  if (!Array.isArray(shape) || shape.length !== 4 || shape.some((d) => !Number.isSafeInteger(d) || d < 1)) {
    throw new NiftiError(file, 'volume', `volume shape must be [C, X, Y, Z] of positive integers, got [${String(shape)}]`);
  }
  if (shape.slice(1).some((d) => d > 32767) || shape[0] > 32767) {
    throw new NiftiError(file, 'dim', `volume shape [${shape.join(', ')}] does not fit NIfTI-1 (each dim ≤ 32767)`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new NiftiError(file, 'volume', `volume data has ${data.length} voxels but shape [${shape.join(', ')}] needs ${n}`);
  }
  if (
    !Array.isArray(affine) ||
    affine.length !== 4 ||
    affine.some((row) => !Array.isArray(row) || row.length !== 4 || row.some((v) => !Number.isFinite(v)))
  ) {
    throw new NiftiError(file, 'affine', 'volume affine must be a 4x4 nested array of finite numbers');
  }
}

/** Convert to the target datatype (C order kept). Same type: returned as is. */
function convert(file: string, src: VoxelArray, target: DatatypeInfo, allowNonFinite: boolean): VoxelArray {
  const from = datatypeOfArray(src);
  if (from.isFloat && !allowNonFinite) {
    for (let i = 0; i < src.length; i++) {
      const v = src[i] as number;
      if (v - v !== 0) {
        throw new NiftiError(
          file,
          'data',
          `volume holds a non-finite value (${v}) at flat index ${i}; pass allowNonFinite: true to write it`,
        );
      }
    }
  }
  if (from.name === target.name) return src;
  const f64 = new Float64Array(src.length);
  f64.set(src);
  if (target.name === 'float32') {
    const F32_MAX = 3.4028234663852886e38;
    for (let i = 0; i < f64.length; i++) {
      const v = f64[i] as number;
      if (Math.abs(v) > F32_MAX && Number.isFinite(v)) {
        throw new NiftiError(file, 'datatype', `value ${v} at flat index ${i} does not fit datatype float32`);
      }
    }
  } else if (!target.isFloat) {
    const { min, max } = target;
    for (let i = 0; i < f64.length; i++) {
      const v = Math.round(f64[i] as number);
      if (!(v >= min && v <= max)) {
        throw new NiftiError(
          file,
          'datatype',
          `value ${f64[i]} at flat index ${i} does not fit datatype ${target.name} (${min}..${max})`,
        );
      }
      f64[i] = v;
    }
  }
  const out = new target.ctor(src.length);
  out.set(f64);
  return out;
}

function cleanDescription(s: string): Uint8Array {
  const out = new Uint8Array(Math.min(s.length, 79));
  for (let i = 0; i < out.length; i++) {
    const ch = s.charCodeAt(i);
    out[i] = ch >= 32 && ch < 127 ? ch : 63;
  }
  return out;
}

/**
 * Encode a volume as the bytes of an uncompressed single-file NIfTI-1 image (what `writeNifti`
 * writes, before gzip). `file` is only used in error messages.
 */
export function encodeNifti(volume: Volume, opts: WriteNiftiOptions = {}, file = '<memory>'): Uint8Array {
  checkVolume(file, volume);
  const [C, X, Y, Z] = volume.shape;
  const target = opts.datatype ? NIFTI_DATATYPES[opts.datatype] : datatypeOfArray(volume.data);
  if (!target) {
    throw new NiftiError(file, 'datatype', `unsupported datatype ${String(opts.datatype)}`);
  }
  const code = opts.xformCode ?? 1;
  if (code !== 1 && code !== 2) throw new NiftiError(file, 'xformCode', `xformCode must be 1 or 2, got ${String(code)}`);
  const qf = affineToQform(volume.affine, file);
  const conv = convert(file, volume.data, target, opts.allowNonFinite ?? false);

  const n = conv.length;
  const n3 = X * Y * Z;
  const buf = new ArrayBuffer(352 + n * target.bytes);
  const bytes = new Uint8Array(buf);
  const dv = new DataView(buf);
  const le = true;
  dv.setInt32(0, 348, le);
  bytes[38] = 0x72; // regular = 'r'
  const dim = [C > 1 ? 4 : 3, X, Y, Z, C, 1, 1, 1];
  dim.forEach((d, i) => dv.setInt16(40 + 2 * i, d, le));
  dv.setInt16(70, target.code, le);
  dv.setInt16(72, target.bytes * 8, le);
  const pixdim = [qf.qfac, qf.zooms[0], qf.zooms[1], qf.zooms[2], 1, 1, 1, 1];
  pixdim.forEach((p, i) => dv.setFloat32(76 + 4 * i, p, le));
  dv.setFloat32(108, 352, le); // vox_offset
  dv.setFloat32(112, 1, le); // scl_slope
  dv.setFloat32(116, 0, le); // scl_inter
  bytes[123] = 2; // xyzt_units: mm
  if (opts.description) bytes.set(cleanDescription(opts.description), 148);
  dv.setInt16(252, code, le); // qform_code
  dv.setInt16(254, code, le); // sform_code
  qf.quatern.forEach((q, i) => dv.setFloat32(256 + 4 * i, q, le));
  qf.qoffset.forEach((q, i) => dv.setFloat32(268 + 4 * i, q, le));
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) dv.setFloat32(280 + (r * 4 + c) * 4, (volume.affine[r] as number[])[c] as number, le);
  }
  bytes.set([0x6e, 0x2b, 0x31, 0x00], 344); // magic "n+1\0"
  // bytes 348..351: extension flag, all zero.

  const out = new target.ctor(buf, 352, n);
  const sv = bitView(conv);
  const ov = bitView(out);
  // C order over [X, Y, Z] is X-fast order over [Z, Y, X]: the same kernel transposes back.
  for (let c = 0; c < C; c++) transposeXFastToZFast(sv, ov, Z, Y, X, c * n3, c * n3);
  if (!HOST_LITTLE_ENDIAN) byteSwapInPlace(buf, 352, n, target.bytes);
  return bytes;
}

/**
 * Write `volume` to `path` (`.nii` or `.nii.gz`) as a NIfTI-1 image; see the file comment.
 * Throws NiftiError for a bad volume, a value that does not fit the datatype, or a failed write
 * (the target is then left untouched).
 */
export async function writeNifti(path: string, volume: Volume, opts: WriteNiftiOptions = {}): Promise<void> {
  const lower = path.toLowerCase();
  const gz = lower.endsWith('.nii.gz');
  if (!gz && !lower.endsWith('.nii')) {
    throw new NiftiError(path, 'file', 'the writer writes single-file NIfTI: the path must end in .nii or .nii.gz');
  }
  const raw = encodeNifti(volume, opts, path);
  const payload = gz ? await gzip(raw, { level: opts.gzipLevel ?? 6 }) : raw;
  try {
    await writeFileAtomic(path, payload);
  } catch (e) {
    throw new NiftiError(path, 'write', `cannot write the file (${(e as Error).message})`, { cause: e });
  }
}
