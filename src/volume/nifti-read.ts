/**
 * NIfTI-1 / NIfTI-2 reader.
 *
 * Reads `.nii`, `.nii.gz`, `.hdr/.img` and `.hdr.gz/.img.gz` pairs (given either half's path),
 * either byte order, datatypes uint8, int8, int16, uint16, int32, uint32, float32 and float64,
 * `scl_slope`/`scl_inter` scaling and header extensions. Compression is detected from the gzip
 * magic bytes, not from the file name.
 *
 * Axis convention: NIfTI stores voxels with X (i) varying fastest. {@link NiftiImage.toVolume}
 * transposes them into the `Volume` layout of `volume.ts` (shape `[C, X, Y, Z]`, Z fastest).
 * A 3-D image becomes C = 1. Every dimension after the third (dim[4..7]: time, vector
 * components, ...) is folded into C: C = dim4 · dim5 · dim6 · dim7, with channel index
 * `c = t + T·(u + U·(v + V·w))` (the NIfTI storage order of the extra dims), so a 4-D image with
 * dim4 = 1 is C = 1 and a 4-D image with T > 1 frames becomes C = T, one channel per frame.
 *
 * Affine (nibabel's rule, which MONAI's NibabelReader uses too): the sform when sform_code > 0,
 * else the qform when qform_code > 0, else nibabel's pixdim fallback (x flipped, centred on the
 * middle voxel). See {@link bestAffine}.
 *
 * Scaling (nibabel's rule): scl_slope = 0 or non-finite means "no scaling" (slope 1, inter 0);
 * a valid slope with a non-finite scl_inter is an error. `toVolume()` (float32) applies it;
 * `toVolume({ dtype: 'raw' })` and `rawData()` do not.
 *
 * `nifti-reader-js` parses the fixed header fields (endianness detection, dims of NIfTI-1,
 * pixdim, datatype, codes, quaternion, scaling, units, ...). This file reads itself what that
 * package does not get right for our purposes: the int64 fields of NIfTI-2 (its big-endian int64
 * reader mixes the two words up), the srow_* rows (its `affine` prefers the qform whenever
 * qform_code > sform_code, unlike nibabel), the strings (it drops NULs inside them instead of
 * ending the string at the first one) and the extensions (it throws on pairs with vox_offset 0
 * and does not bound them by the file). Decompression uses node:zlib streaming with a byte limit.
 *
 * Every problem with the input is reported as one {@link NiftiError} naming the file.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { createGunzip } from 'node:zlib';
import { NIFTI1, NIFTI2 } from 'nifti-reader-js';
import { createVolume, type Affine, type Shape4, type Volume, type VoxelArray } from './volume.ts';
import { NiftiError } from './nifti-errors.ts';

export { NiftiError } from './nifti-errors.ts';

// ---------------------------------------------------------------------------------------------
// Datatypes

export type NiftiDatatype = 'uint8' | 'int8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

export interface VoxelArrayConstructor {
  new (length: number): VoxelArray;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): VoxelArray;
  readonly BYTES_PER_ELEMENT: number;
}

export interface DatatypeInfo {
  name: NiftiDatatype;
  /** NIfTI `datatype` code. */
  code: number;
  bytes: 1 | 2 | 4 | 8;
  isFloat: boolean;
  ctor: VoxelArrayConstructor;
  /** Smallest and largest value (integer types only; ±Infinity for floats). */
  min: number;
  max: number;
}

export const NIFTI_DATATYPES: Readonly<Record<NiftiDatatype, DatatypeInfo>> = {
  uint8: { name: 'uint8', code: 2, bytes: 1, isFloat: false, ctor: Uint8Array, min: 0, max: 255 },
  int16: { name: 'int16', code: 4, bytes: 2, isFloat: false, ctor: Int16Array, min: -32768, max: 32767 },
  int32: { name: 'int32', code: 8, bytes: 4, isFloat: false, ctor: Int32Array, min: -2147483648, max: 2147483647 },
  float32: { name: 'float32', code: 16, bytes: 4, isFloat: true, ctor: Float32Array, min: -Infinity, max: Infinity },
  float64: { name: 'float64', code: 64, bytes: 8, isFloat: true, ctor: Float64Array, min: -Infinity, max: Infinity },
  int8: { name: 'int8', code: 256, bytes: 1, isFloat: false, ctor: Int8Array, min: -128, max: 127 },
  uint16: { name: 'uint16', code: 512, bytes: 2, isFloat: false, ctor: Uint16Array, min: 0, max: 65535 },
  uint32: { name: 'uint32', code: 768, bytes: 4, isFloat: false, ctor: Uint32Array, min: 0, max: 4294967295 },
};

const DATATYPE_BY_CODE = new Map<number, DatatypeInfo>(Object.values(NIFTI_DATATYPES).map((d) => [d.code, d]));

/** Names of the NIfTI datatypes this reader refuses, for the error message. */
const UNSUPPORTED_DATATYPES: Readonly<Record<number, string>> = {
  0: 'DT_UNKNOWN (0)',
  1: 'binary (1 bit per voxel)',
  32: 'complex64',
  128: 'RGB24',
  1024: 'int64',
  1280: 'uint64',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'RGBA32',
};

/** The NIfTI datatype of a typed array (every VoxelArray type has one). */
export function datatypeOfArray(a: VoxelArray): DatatypeInfo {
  if (a instanceof Uint8Array) return NIFTI_DATATYPES.uint8;
  if (a instanceof Int8Array) return NIFTI_DATATYPES.int8;
  if (a instanceof Int16Array) return NIFTI_DATATYPES.int16;
  if (a instanceof Uint16Array) return NIFTI_DATATYPES.uint16;
  if (a instanceof Int32Array) return NIFTI_DATATYPES.int32;
  if (a instanceof Uint32Array) return NIFTI_DATATYPES.uint32;
  if (a instanceof Float32Array) return NIFTI_DATATYPES.float32;
  return NIFTI_DATATYPES.float64;
}

// ---------------------------------------------------------------------------------------------
// Header

export interface NiftiExtension {
  /** `ecode` (0 = unknown/generic, 2 = DICOM, 4 = AFNI, 6 = comment, 16 = Caret, ...). */
  code: number;
  /** `esize`: bytes of the whole extension including its 8-byte size/code prefix. */
  esize: number;
  /** The raw content, `esize - 8` bytes (including any NUL padding). */
  data: Uint8Array;
}

export type SpatialUnits = 'unknown' | 'meter' | 'mm' | 'micron';
export type TemporalUnits = 'unknown' | 'sec' | 'msec' | 'usec' | 'hz' | 'ppm' | 'rads';

/** A plain, typed summary of a NIfTI-1 or NIfTI-2 header (values as stored, not interpreted). */
export interface NiftiHeader {
  niftiVersion: 1 | 2;
  /** 348 (NIfTI-1) or 540 (NIfTI-2). */
  sizeofHdr: number;
  /** 'n+1' / 'n+2' (single file) or 'ni1' / 'ni2' (.hdr/.img pair). */
  magic: string;
  littleEndian: boolean;
  /** The 8 raw `dim` entries; dim[0] is the number of dimensions. */
  dim: number[];
  /** dim[1..dim[0]], as nibabel's `img.shape`. */
  shape: number[];
  /** The 8 raw `pixdim` entries; pixdim[0] is qfac. */
  pixdim: number[];
  datatypeCode: number;
  datatype: NiftiDatatype;
  bitpix: number;
  /** Byte offset of the voxels in the data file (int(vox_offset) for NIfTI-1). */
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  calMin: number;
  calMax: number;
  qformCode: number;
  sformCode: number;
  quaternB: number;
  quaternC: number;
  quaternD: number;
  qoffset: [number, number, number];
  /** srow_x, srow_y, srow_z (4 values each). */
  srow: [number[], number[], number[]];
  xyztUnits: number;
  spatialUnits: SpatialUnits;
  temporalUnits: TemporalUnits;
  intentCode: number;
  intentName: string;
  intentP: [number, number, number];
  dimInfo: number;
  sliceStart: number;
  sliceEnd: number;
  sliceCode: number;
  sliceDuration: number;
  toffset: number;
  descrip: string;
  auxFile: string;
  extensions: NiftiExtension[];
}

const SPATIAL_UNITS: Record<number, SpatialUnits> = { 0: 'unknown', 1: 'meter', 2: 'mm', 3: 'micron' };
const TEMPORAL_UNITS: Record<number, TemporalUnits> = {
  0: 'unknown',
  8: 'sec',
  16: 'msec',
  24: 'usec',
  32: 'hz',
  40: 'ppm',
  48: 'rads',
};

/** Text of an extension: UTF-8 decoded, trailing NULs removed (as nibabel stores the content). */
export function extensionText(ext: NiftiExtension): string {
  let end = ext.data.length;
  while (end > 0 && ext.data[end - 1] === 0) end--;
  return new TextDecoder('utf-8').decode(ext.data.subarray(0, end));
}

// ---------------------------------------------------------------------------------------------
// Affines

function affineFromRows(r0: number[], r1: number[], r2: number[]): Affine {
  return [
    [r0[0] ?? 0, r0[1] ?? 0, r0[2] ?? 0, r0[3] ?? 0],
    [r1[0] ?? 0, r1[1] ?? 0, r1[2] ?? 0, r1[3] ?? 0],
    [r2[0] ?? 0, r2[1] ?? 0, r2[2] ?? 0, r2[3] ?? 0],
    [0, 0, 0, 1],
  ];
}

/** The sform: the srow_x/y/z rows. */
export function sformAffine(h: NiftiHeader): Affine {
  return affineFromRows(h.srow[0], h.srow[1], h.srow[2]);
}

/**
 * Rotation matrix of the unit quaternion (a, b, c, d) with a = sqrt(1 - b² - c² - d²), as the
 * NIfTI-1 standard defines it. When b² + c² + d² is (numerically) ≥ 1, a = 0 and (b, c, d) is
 * renormalised.
 */
export function quaternionToRotation(b: number, c: number, d: number): number[][] {
  let a2 = 1 - (b * b + c * c + d * d);
  let a: number;
  if (a2 < 1e-7) {
    const n = Math.sqrt(b * b + c * c + d * d);
    if (n > 0) {
      b /= n;
      c /= n;
      d /= n;
    }
    a = 0;
  } else {
    a = Math.sqrt(a2);
  }
  return [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
  ];
}

/**
 * The qform: R(quaternion) · diag(pixdim[1], pixdim[2], qfac · pixdim[3]) plus qoffset, with
 * qfac = -1 when pixdim[0] < 0, else 1 (NIfTI-1 standard). Negative pixdims are taken as their
 * absolute value.
 */
export function qformAffine(h: NiftiHeader): Affine {
  const R = quaternionToRotation(h.quaternB, h.quaternC, h.quaternD);
  const qfac = (h.pixdim[0] ?? 1) < 0 ? -1 : 1;
  const zooms = [Math.abs(h.pixdim[1] ?? 1), Math.abs(h.pixdim[2] ?? 1), qfac * Math.abs(h.pixdim[3] ?? 1)];
  const out: Affine = [];
  for (let r = 0; r < 3; r++) {
    const row = R[r] as number[];
    out.push([
      (row[0] as number) * (zooms[0] as number),
      (row[1] as number) * (zooms[1] as number),
      (row[2] as number) * (zooms[2] as number),
      h.qoffset[r] as number,
    ]);
  }
  out.push([0, 0, 0, 1]);
  return out;
}

/**
 * nibabel's fallback affine when neither sform nor qform is set (`get_base_affine`): zooms from
 * pixdim[1..3] (1 for missing dims), the x zoom negated, and the origin at the centre voxel:
 * `diag(-dx, dy, dz)` with translation `-((shape - 1) / 2) · zooms`.
 */
export function fallbackAffine(h: NiftiHeader): Affine {
  const shape = [1, 1, 1];
  const zooms = [1, 1, 1];
  for (let i = 0; i < 3 && i < h.shape.length; i++) {
    shape[i] = h.shape[i] as number;
    zooms[i] = h.pixdim[i + 1] as number;
  }
  zooms[0] = -(zooms[0] as number);
  const out: Affine = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  for (let i = 0; i < 3; i++) {
    const row = out[i] as number[];
    row[i] = zooms[i] as number;
    row[3] = -(((shape[i] as number) - 1) / 2) * (zooms[i] as number);
  }
  return out;
}

/** nibabel's choice: sform if sform_code > 0, else qform if qform_code > 0, else the fallback. */
export function bestAffine(h: NiftiHeader): Affine {
  if (h.sformCode > 0) return sformAffine(h);
  if (h.qformCode > 0) return qformAffine(h);
  return fallbackAffine(h);
}

// ---------------------------------------------------------------------------------------------
// Low-level helpers shared with nifti-write.ts

export const HOST_LITTLE_ENDIAN = endianness() === 'LE';

/** A typed array over the same bytes that copies bit patterns (keeps the kernels ≤ 4 types). */
export type BitArray = Uint8Array | Uint16Array | Uint32Array | Float64Array;

export function bitView(a: VoxelArray): BitArray {
  switch (a.BYTES_PER_ELEMENT) {
    case 1:
      return new Uint8Array(a.buffer, a.byteOffset, a.length);
    case 2:
      return new Uint16Array(a.buffer, a.byteOffset, a.length);
    case 4:
      return new Uint32Array(a.buffer, a.byteOffset, a.length);
    default:
      return new Float64Array(a.buffer, a.byteOffset, a.length);
  }
}

/**
 * 3-D transpose from X-fastest (NIfTI order: `x + X·(y + Y·z)`) to Z-fastest (C order over
 * [X, Y, Z]: `(x·Y + y)·Z + z`), `n = X·Y·Z` elements from `src[sOff..]` to `dst[dOff..]`.
 * Calling it with (Z, Y, X) does the reverse. Reads run along x and eight z-planes are written
 * per pass so that the writes land next to each other; ~2 ms for 2.5 M voxels. Only ever called
 * with the four {@link BitArray} types so that V8 keeps it fast.
 */
export function transposeXFastToZFast(
  src: BitArray,
  dst: BitArray,
  X: number,
  Y: number,
  Z: number,
  sOff = 0,
  dOff = 0,
): void {
  const XY = X * Y;
  const YZ = Y * Z;
  let z = 0;
  for (; z + 8 <= Z; z += 8) {
    for (let y = 0; y < Y; y++) {
      let s = sOff + z * XY + y * X;
      let d = dOff + y * Z + z;
      for (let x = 0; x < X; x++) {
        dst[d] = src[s] as number;
        dst[d + 1] = src[s + XY] as number;
        dst[d + 2] = src[s + 2 * XY] as number;
        dst[d + 3] = src[s + 3 * XY] as number;
        dst[d + 4] = src[s + 4 * XY] as number;
        dst[d + 5] = src[s + 5 * XY] as number;
        dst[d + 6] = src[s + 6 * XY] as number;
        dst[d + 7] = src[s + 7 * XY] as number;
        s++;
        d += YZ;
      }
    }
  }
  for (; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      let s = sOff + z * XY + y * X;
      let d = dOff + y * Z + z;
      for (let x = 0; x < X; x++) {
        dst[d] = src[s] as number;
        s++;
        d += YZ;
      }
    }
  }
}

/** Reverse the byte order of every `width`-byte element of `bytes` in place. */
export function byteSwapInPlace(buffer: ArrayBuffer, byteOffset: number, count: number, width: number): void {
  if (width === 1 || count === 0) return;
  if (width === 2) {
    const u = new Uint16Array(buffer, byteOffset, count);
    for (let i = 0; i < count; i++) {
      const v = u[i] as number;
      u[i] = ((v & 0xff) << 8) | (v >>> 8);
    }
    return;
  }
  const words = new Uint32Array(buffer, byteOffset, (count * width) / 4);
  for (let i = 0; i < words.length; i++) {
    const v = words[i] as number;
    words[i] = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  }
  if (width === 8) {
    for (let i = 0; i < words.length; i += 2) {
      const t = words[i] as number;
      words[i] = words[i + 1] as number;
      words[i + 1] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Header decoding

const NIFTI1_HDR = 348;
const NIFTI2_HDR = 540;

function readString(bytes: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) {
    const ch = bytes[i] as number;
    if (ch === 0) break;
    s += String.fromCharCode(ch);
  }
  return s;
}

function readInt64(file: string, dv: DataView, offset: number, le: boolean, field: string): number {
  const v = dv.getBigInt64(offset, le);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new NiftiError(file, field, `${field} is ${v}, which is too large to handle`);
  }
  return Number(v);
}

interface DecodedHeader {
  header: NiftiHeader;
  info: DatatypeInfo;
  /** Number of voxels (product of the dims). */
  nvox: number;
  /** Bytes of voxel data. */
  nbytes: number;
}

/**
 * Decode and validate the fixed header from the first bytes of a file (at least 348 bytes, 540
 * for NIfTI-2). Extensions are not read here. Throws NiftiError for everything that is not a
 * readable NIfTI header.
 */
function decodeHeader(file: string, bytes: Uint8Array, pair: boolean, maxVoxels: number): DecodedHeader {
  if (bytes.length < NIFTI1_HDR) {
    throw new NiftiError(
      file,
      'sizeof_hdr',
      `not a NIfTI file: it holds only ${bytes.length} bytes, less than the 348-byte NIfTI-1 header`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sizeLE = dv.getInt32(0, true);
  const sizeBE = dv.getInt32(0, false);
  let version: 1 | 2;
  let le: boolean;
  if (sizeLE === NIFTI1_HDR || sizeBE === NIFTI1_HDR) {
    version = 1;
    le = sizeLE === NIFTI1_HDR;
  } else if (sizeLE === NIFTI2_HDR || sizeBE === NIFTI2_HDR) {
    version = 2;
    le = sizeLE === NIFTI2_HDR;
  } else {
    throw new NiftiError(
      file,
      'sizeof_hdr',
      `not a NIfTI file: sizeof_hdr is ${sizeLE} (${sizeBE} read big-endian), expected 348 (NIfTI-1) or 540 (NIfTI-2)`,
    );
  }
  const hdrSize = version === 1 ? NIFTI1_HDR : NIFTI2_HDR;
  if (bytes.length < hdrSize) {
    throw new NiftiError(
      file,
      'sizeof_hdr',
      `file ends inside the NIfTI-2 header: ${bytes.length} of its 540 bytes are present`,
    );
  }
  const magic = version === 1 ? readString(bytes, 344, 348) : readString(bytes, 4, 8);
  const want = version === 1 ? ['n+1', 'ni1'] : ['n+2', 'ni2'];
  if (!want.includes(magic)) {
    const what =
      version === 1
        ? "it has a 348-byte header but no NIfTI-1 magic ('n+1' or 'ni1'), so it is ANALYZE 7.5 or not an image at all, which this reader does not support"
        : "it has a 540-byte header but no NIfTI-2 magic ('n+2' or 'ni2')";
    throw new NiftiError(file, 'magic', `not a NIfTI file: magic is ${JSON.stringify(magic)}; ${what}`);
  }
  const isPairMagic = magic === 'ni1' || magic === 'ni2';
  if (!pair && isPairMagic) {
    throw new NiftiError(
      file,
      'magic',
      `magic '${magic}' marks the header of a .hdr/.img pair, but this is a single file (expected '${want[0]}')`,
    );
  }

  // Fixed fields through nifti-reader-js (a copy of exactly the header bytes, so that it does not
  // try to parse extensions itself).
  const lib = version === 1 ? new NIFTI1() : new NIFTI2();
  try {
    lib.readHeader(bytes.slice(0, hdrSize).buffer);
  } catch (e) {
    throw new NiftiError(file, 'header', `cannot parse the NIfTI-${version} header: ${(e as Error).message}`, {
      cause: e,
    });
  }

  let dim: number[];
  let voxOffset: number;
  let sliceStart = lib.slice_start;
  let sliceEnd = lib.slice_end;
  let srow: [number[], number[], number[]];
  let descrip: string;
  let auxFile: string;
  let intentName: string;
  if (version === 1) {
    dim = lib.dims.slice(0, 8);
    const vo = lib.vox_offset;
    if (!Number.isFinite(vo) || vo < 0) {
      throw new NiftiError(file, 'vox_offset', `vox_offset is ${vo}; it must be a finite byte offset ≥ 0`);
    }
    voxOffset = Math.floor(vo);
    srow = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => dv.getFloat32(280 + (r * 4 + c) * 4, le))) as [
      number[],
      number[],
      number[],
    ];
    descrip = readString(bytes, 148, 228);
    auxFile = readString(bytes, 228, 252);
    intentName = readString(bytes, 328, 344);
  } else {
    dim = [];
    for (let i = 0; i < 8; i++) dim.push(readInt64(file, dv, 16 + i * 8, le, `dim[${i}]`));
    voxOffset = readInt64(file, dv, 168, le, 'vox_offset');
    if (voxOffset < 0) {
      throw new NiftiError(file, 'vox_offset', `vox_offset is ${voxOffset}; it must be ≥ 0`);
    }
    sliceStart = readInt64(file, dv, 224, le, 'slice_start');
    sliceEnd = readInt64(file, dv, 232, le, 'slice_end');
    srow = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => dv.getFloat64(400 + (r * 4 + c) * 8, le))) as [
      number[],
      number[],
      number[],
    ];
    descrip = readString(bytes, 240, 320);
    auxFile = readString(bytes, 320, 344);
    intentName = readString(bytes, 508, 524);
  }
  if (!pair && voxOffset < hdrSize) {
    throw new NiftiError(
      file,
      'vox_offset',
      `vox_offset is ${voxOffset}, inside the ${hdrSize}-byte header; a single-file NIfTI needs vox_offset ≥ ${hdrSize + 4}`,
    );
  }

  // Dimensions: checked before anything is allocated.
  const ndim = dim[0] as number;
  if (!Number.isInteger(ndim) || ndim < 1 || ndim > 7) {
    throw new NiftiError(file, 'dim', `dim[0] (the number of dimensions) is ${ndim}; it must be 1..7`);
  }
  const shape = dim.slice(1, ndim + 1);
  let nvox = 1;
  for (let i = 0; i < ndim; i++) {
    const d = shape[i] as number;
    if (!Number.isSafeInteger(d) || d < 1) {
      throw new NiftiError(
        file,
        'dim',
        `dim[${i + 1}] is ${d} (dims ${shape.join('x')}); every dimension must be ≥ 1 (zero-sized or negative image)`,
      );
    }
    nvox *= d;
  }
  if (!(nvox <= maxVoxels)) {
    throw new NiftiError(
      file,
      'dim',
      `header dims ${shape.join('x')} make ${nvox} voxels, more than the limit of ${maxVoxels} (option maxVoxels); refusing to allocate`,
    );
  }

  const code = lib.datatypeCode;
  const info = DATATYPE_BY_CODE.get(code);
  if (!info) {
    const name = UNSUPPORTED_DATATYPES[code] ?? `unknown code ${code}`;
    throw new NiftiError(
      file,
      'datatype',
      `unsupported datatype ${name}; supported: ${Object.values(NIFTI_DATATYPES)
        .map((d) => `${d.name} (${d.code})`)
        .join(', ')}`,
    );
  }

  const header: NiftiHeader = {
    niftiVersion: version,
    sizeofHdr: hdrSize,
    magic,
    littleEndian: le,
    dim,
    shape,
    pixdim: lib.pixDims.slice(0, 8),
    datatypeCode: code,
    datatype: info.name,
    bitpix: lib.numBitsPerVoxel,
    voxOffset,
    sclSlope: lib.scl_slope,
    sclInter: lib.scl_inter,
    calMin: lib.cal_min,
    calMax: lib.cal_max,
    qformCode: lib.qform_code,
    sformCode: lib.sform_code,
    quaternB: lib.quatern_b,
    quaternC: lib.quatern_c,
    quaternD: lib.quatern_d,
    qoffset: [lib.qoffset_x, lib.qoffset_y, lib.qoffset_z],
    srow,
    xyztUnits: lib.xyzt_units,
    spatialUnits: SPATIAL_UNITS[lib.xyzt_units & 7] ?? 'unknown',
    temporalUnits: TEMPORAL_UNITS[lib.xyzt_units & 56] ?? 'unknown',
    intentCode: lib.intent_code,
    intentName,
    intentP: [lib.intent_p1, lib.intent_p2, lib.intent_p3],
    dimInfo: lib.dim_info,
    sliceStart,
    sliceEnd,
    sliceCode: lib.slice_code,
    sliceDuration: lib.slice_duration,
    toffset: lib.toffset,
    descrip,
    auxFile,
    extensions: [],
  };
  return { header, info, nvox, nbytes: nvox * info.bytes };
}

/**
 * Parse the extensions in `bytes[start..end)` (after the 4-byte extender flag). Like nibabel, it
 * reads them only when the first flag byte is non-zero, and stops at a zero esize or when fewer
 * than 8 bytes are left.
 */
function parseExtensions(file: string, bytes: Uint8Array, hdrSize: number, end: number, le: boolean): NiftiExtension[] {
  if (bytes.length < hdrSize + 4 || bytes[hdrSize] === 0) return [];
  const exts: NiftiExtension[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = hdrSize + 4;
  end = Math.min(end, bytes.length);
  while (pos + 8 <= end) {
    let esize = dv.getInt32(pos, le);
    let ele = le;
    if (esize === 0) break;
    if (esize < 8 || pos + esize > end) {
      // Some writers store the extension in the other byte order.
      const swapped = dv.getInt32(pos, !le);
      if (swapped >= 8 && pos + swapped <= end) {
        esize = swapped;
        ele = !le;
      } else {
        throw new NiftiError(
          file,
          'extensions',
          `header extension at byte ${pos} has esize ${esize}, which does not fit before byte ${end} where the extensions must end`,
        );
      }
    }
    const code = dv.getInt32(pos + 4, ele);
    exts.push({ code, esize, data: bytes.slice(pos + 8, pos + esize) });
    pos += esize;
  }
  return exts;
}

// ---------------------------------------------------------------------------------------------
// File access

export interface ReadNiftiOptions {
  /** Refuse images with more voxels than this (checked before allocating). Default 1024³. */
  maxVoxels?: number;
  /** Accept NaN / ±Infinity in float data instead of throwing. Default false. */
  allowNonFinite?: boolean;
  /**
   * A gzip stream may hold at most this many bytes beyond what the header says is needed before
   * it is refused as a decompression bomb / wrong dims. Default 1 MiB.
   */
  inflateMargin?: number;
  /** Largest .hdr file (with its extensions) accepted. Default 64 MiB. */
  maxHeaderBytes?: number;
}

interface Options {
  maxVoxels: number;
  allowNonFinite: boolean;
  inflateMargin: number;
  maxHeaderBytes: number;
}

const GZIP_CHUNK = 256 * 1024;

function fileErrorProblem(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return 'file not found';
  if (err.code === 'EISDIR') return 'is a directory, not a file';
  if (err.code === 'EACCES') return 'permission denied';
  return `cannot read file (${err.message})`;
}

async function statFile(file: string): Promise<number> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    throw new NiftiError(file, 'file', fileErrorProblem(e), { cause: e });
  }
  if (!st.isFile()) throw new NiftiError(file, 'file', 'is not a regular file');
  return st.size;
}

async function isGzipFile(file: string): Promise<boolean> {
  const fh = await open(file, 'r').catch((e: unknown) => {
    throw new NiftiError(file, 'file', fileErrorProblem(e), { cause: e });
  });
  try {
    const b = new Uint8Array(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** Copy `length` bytes starting at `start` of the concatenation of `chunks` into `dst`. */
function copyFromChunks(chunks: readonly Uint8Array[], start: number, length: number, dst: Uint8Array): void {
  let pos = 0;
  let out = 0;
  for (const c of chunks) {
    if (out >= length) break;
    const cEnd = pos + c.length;
    if (cEnd > start) {
      const from = Math.max(0, start + out - pos);
      const n = Math.min(c.length - from, length - out);
      dst.set(c.subarray(from, from + n), out);
      out += n;
    }
    pos = cEnd;
  }
}

interface InflateResult {
  chunks: Buffer[];
  total: number;
}

/**
 * Stream-decompress a gzip file, keeping at most what is needed. `needed(prefix, ended)` is
 * called once the first `probeBytes` bytes are out (or the stream ended before): it returns how
 * many bytes the file must hold (or throws). Decompression stops with an error as soon as more
 * than `needed + margin` bytes come out, so a bomb never inflates past that (plus one chunk).
 * Memory grows only with the bytes really decompressed, never with what the header claims.
 */
async function gunzipBounded(
  file: string,
  probeBytes: number,
  needed: (prefix: Uint8Array, ended: boolean) => number,
  margin: number,
  what: string,
): Promise<InflateResult & { needed: number }> {
  const source = createReadStream(file, { highWaterMark: GZIP_CHUNK });
  const gunzip = createGunzip({ chunkSize: GZIP_CHUNK });
  source.on('error', (e) => gunzip.destroy(e));
  source.pipe(gunzip);
  const chunks: Buffer[] = [];
  let total = 0;
  let need = -1;
  const prefix = (): Uint8Array => {
    const n = Math.min(total, probeBytes);
    const b = new Uint8Array(n);
    copyFromChunks(chunks, 0, n, b);
    return b;
  };
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      if (need < 0 && total >= probeBytes) need = needed(prefix(), false);
      if (need >= 0 && total > need + margin) {
        throw new NiftiError(
          file,
          'gzip',
          `gzip stream decompresses to more than ${need + margin} bytes, but ${what} only ${need} bytes; ` +
            'refusing to inflate further (decompression bomb, or header dims that disagree with the data size)',
        );
      }
    }
  } catch (e) {
    if (e instanceof NiftiError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(err.message)) {
      const of = need >= 0 ? ` of the ${need} bytes the header needs` : '';
      throw new NiftiError(
        file,
        'gzip',
        `gzip stream ends early (truncated file?) after ${total}${of} decompressed bytes`,
        { cause: e },
      );
    }
    if (err.code?.startsWith('Z_')) {
      throw new NiftiError(file, 'gzip', `corrupt gzip data after ${total} decompressed bytes (${err.message})`, {
        cause: e,
      });
    }
    throw new NiftiError(file, 'file', fileErrorProblem(e), { cause: e });
  } finally {
    source.destroy();
    gunzip.destroy();
  }
  if (need < 0) need = needed(prefix(), true);
  return { chunks, total, needed: need };
}

function tooShort(file: string, d: DecodedHeader, offset: number, have: number, kind: string): NiftiError {
  const h = d.header;
  return new NiftiError(
    file,
    'data',
    `${kind} is too short for its header: dims ${h.shape.join('x')} of ${h.datatype} need ${d.nbytes} bytes of voxels ` +
      `from byte ${offset} (${offset + d.nbytes} bytes in all), but it holds ${have} bytes (header dims disagree with the data size)`,
  );
}

function allocate(file: string, nbytes: number): ArrayBuffer {
  try {
    return new ArrayBuffer(nbytes);
  } catch (e) {
    throw new NiftiError(file, 'dim', `cannot allocate ${nbytes} bytes for the voxels (${(e as Error).message})`, {
      cause: e,
    });
  }
}

interface Loaded {
  decoded: DecodedHeader;
  /** Voxel bytes, exactly nbytes, in file byte order. */
  data: ArrayBuffer;
}

/** Read a file fully (bounded), gzip or not: used for .hdr files. */
async function readSmallFile(file: string, limit: number): Promise<Uint8Array> {
  const size = await statFile(file);
  if (await isGzipFile(file)) {
    const r = await gunzipBounded(file, 0, () => limit, 0, 'a .hdr file may hold (option maxHeaderBytes)');
    const out = new Uint8Array(r.total);
    copyFromChunks(r.chunks, 0, r.total, out);
    return out;
  }
  if (size > limit) {
    throw new NiftiError(file, 'file', `header file is ${size} bytes, more than the ${limit}-byte limit (maxHeaderBytes)`);
  }
  const fh = await open(file, 'r');
  try {
    const out = new Uint8Array(size);
    await readFully(fh, out, 0);
    return out;
  } finally {
    await fh.close();
  }
}

async function readFully(
  fh: Awaited<ReturnType<typeof open>>,
  dst: Uint8Array,
  position: number,
): Promise<number> {
  let off = 0;
  while (off < dst.length) {
    const { bytesRead } = await fh.read(dst, off, dst.length - off, position + off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off;
}

/** Read the voxel bytes [offset, offset + d.nbytes) of an uncompressed or gzip data file. */
async function readVoxelBytes(file: string, d: DecodedHeader, offset: number, o: Options, kind: string): Promise<ArrayBuffer> {
  const size = await statFile(file);
  const end = offset + d.nbytes;
  if (await isGzipFile(file)) {
    const r = await gunzipBounded(
      file,
      0,
      () => end,
      o.inflateMargin,
      `its header (dims ${d.header.shape.join('x')} of ${d.header.datatype} from byte ${offset}) needs`,
    );
    if (r.total < end) throw tooShort(file, d, offset, r.total, `decompressed ${kind}`);
    const buf = allocate(file, d.nbytes);
    copyFromChunks(r.chunks, offset, d.nbytes, new Uint8Array(buf));
    return buf;
  }
  if (size < end) throw tooShort(file, d, offset, size, kind);
  const buf = allocate(file, d.nbytes);
  const fh = await open(file, 'r');
  try {
    const got = await readFully(fh, new Uint8Array(buf), offset);
    if (got < d.nbytes) throw tooShort(file, d, offset, offset + got, kind);
  } finally {
    await fh.close();
  }
  return buf;
}

async function loadSingle(file: string, o: Options): Promise<Loaded> {
  const size = await statFile(file);
  if (await isGzipFile(file)) {
    let decoded: DecodedHeader | undefined;
    const r = await gunzipBounded(
      file,
      NIFTI2_HDR,
      (prefix) => {
        decoded = decodeHeader(file, prefix, false, o.maxVoxels);
        return decoded.header.voxOffset + decoded.nbytes;
      },
      o.inflateMargin,
      'its header (dims, datatype and vox_offset) needs',
    );
    const d = decoded as DecodedHeader;
    const h = d.header;
    if (r.total < r.needed) throw tooShort(file, d, h.voxOffset, r.total, 'decompressed file');
    const head = new Uint8Array(h.voxOffset);
    copyFromChunks(r.chunks, 0, h.voxOffset, head);
    h.extensions = parseExtensions(file, head, h.sizeofHdr, h.voxOffset, h.littleEndian);
    const buf = allocate(file, d.nbytes);
    copyFromChunks(r.chunks, h.voxOffset, d.nbytes, new Uint8Array(buf));
    return { decoded: d, data: buf };
  }
  const fh = await open(file, 'r');
  let d: DecodedHeader;
  try {
    const probe = new Uint8Array(Math.min(size, NIFTI2_HDR));
    await readFully(fh, probe, 0);
    d = decodeHeader(file, probe, false, o.maxVoxels);
    const h = d.header;
    if (size < h.voxOffset + d.nbytes) throw tooShort(file, d, h.voxOffset, size, 'file');
    if (h.voxOffset > h.sizeofHdr + 4) {
      const head = new Uint8Array(h.voxOffset);
      await readFully(fh, head, 0);
      h.extensions = parseExtensions(file, head, h.sizeofHdr, h.voxOffset, h.littleEndian);
    }
  } finally {
    await fh.close();
  }
  const data = await readVoxelBytes(file, d, d.header.voxOffset, o, 'file');
  return { decoded: d, data };
}

async function loadPair(hdrFile: string, imgFile: string, o: Options): Promise<Loaded> {
  const hdrBytes = await readSmallFile(hdrFile, o.maxHeaderBytes);
  const d = decodeHeader(hdrFile, hdrBytes, true, o.maxVoxels);
  const h = d.header;
  h.extensions = parseExtensions(hdrFile, hdrBytes, h.sizeofHdr, hdrBytes.length, h.littleEndian);
  const data = await readVoxelBytes(imgFile, d, h.voxOffset, o, `image file of the pair (header ${hdrFile})`);
  return { decoded: d, data };
}

interface Located {
  /** The single file, or the .hdr of a pair. */
  header: string;
  /** null for a single file. */
  image: string | null;
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Work out which files make up the image at `path` (either half of a pair may be given). */
async function locate(path: string): Promise<Located> {
  await statFile(path);
  const m = /^(.*)\.(hdr|img)(\.gz)?$/i.exec(path);
  if (!m) return { header: path, image: null };
  const stem = m[1] as string;
  const ext = m[2] as string;
  const gz = m[3] ?? '';
  const isHdr = ext.toLowerCase() === 'hdr';
  const upper = ext === ext.toUpperCase();
  const partnerExt = isHdr ? (upper ? 'IMG' : 'img') : upper ? 'HDR' : 'hdr';
  const otherGz = gz ? '' : upper ? '.GZ' : '.gz';
  const candidates = [`${stem}.${partnerExt}${gz}`, `${stem}.${partnerExt}${otherGz}`];
  for (const c of candidates) {
    if (await exists(c)) return isHdr ? { header: path, image: c } : { header: c, image: path };
  }
  throw new NiftiError(
    path,
    isHdr ? 'img' : 'hdr',
    `the ${isHdr ? 'image (.img)' : 'header (.hdr)'} file of this .hdr/.img pair is missing (looked for ${candidates
      .map((c) => `"${c}"`)
      .join(' and ')})`,
  );
}

// ---------------------------------------------------------------------------------------------
// Image

export interface ToVolumeOptions {
  /**
   * 'float32' (default): Float32Array with scl_slope/scl_inter applied (computed in float64,
   * then rounded to float32). 'raw': the on-disk datatype, without scaling.
   */
  dtype?: 'float32' | 'raw';
}

/** An image read from disk. The voxels are kept once, in NIfTI order and native byte order. */
export class NiftiImage {
  /** The path given to readNifti. */
  readonly path: string;
  /** The header file (the path itself for a single file, the .hdr of a pair). */
  readonly headerPath: string;
  /** The file holding the voxels (the path itself for a single file, the .img of a pair). */
  readonly imagePath: string;
  readonly header: NiftiHeader;
  /** 4×4 row-major voxel → world (RAS mm) matrix, chosen by nibabel's rule. */
  readonly affine: Affine;
  /** dim[1..dim[0]], as nibabel's `img.shape` (e.g. [64, 64, 21, 1] for a 4-D file with dim4 = 1). */
  readonly shape: number[];
  /** [X, Y, Z]: the first three dims, 1 for missing ones. */
  readonly spatialShape: [number, number, number];
  /** The dims after the third (empty for ≤ 3-D images). */
  readonly extraShape: number[];
  /** C of toVolume(): the product of extraShape (1 for ≤ 3-D). */
  readonly channels: number;
  readonly datatype: NiftiDatatype;
  /** The scaling toVolume() applies, or null when the header asks for none. */
  readonly scaling: { slope: number; inter: number } | null;
  readonly #data: VoxelArray;

  constructor(path: string, headerPath: string, imagePath: string, header: NiftiHeader, data: VoxelArray) {
    this.path = path;
    this.headerPath = headerPath;
    this.imagePath = imagePath;
    this.header = header;
    this.affine = bestAffine(header);
    this.shape = header.shape.slice();
    this.spatialShape = [header.shape[0] ?? 1, header.shape[1] ?? 1, header.shape[2] ?? 1];
    this.extraShape = header.shape.slice(3);
    this.channels = this.extraShape.reduce((a, b) => a * b, 1);
    this.datatype = header.datatype;
    this.#data = data;
    const slope = header.sclSlope;
    const inter = header.sclInter;
    if (slope === 0 || !Number.isFinite(slope)) {
      this.scaling = null;
    } else if (!Number.isFinite(inter)) {
      throw new NiftiError(path, 'scl_inter', `scl_slope is ${slope} but scl_inter is ${inter}; the scaling is invalid`);
    } else if (slope === 1 && inter === 0) {
      this.scaling = null;
    } else {
      this.scaling = { slope, inter };
    }
  }

  /** Number of voxels (all dims). */
  get voxelCount(): number {
    return this.#data.length;
  }

  /**
   * A copy of the voxels in the on-disk datatype, native byte order, unscaled.
   * order 'C' (default): C order over `shape` = [X, Y, Z, ...], the last axis fastest (for a
   * 3-D image: `(x·Y + y)·Z + z`, the same layout as toVolume({ dtype: 'raw' }).data).
   * order 'F': the NIfTI on-disk order, X fastest (`x + X·(y + Y·z)`), no transpose.
   */
  rawData(order: 'C' | 'F' = 'C'): VoxelArray {
    const src = this.#data;
    const info = NIFTI_DATATYPES[this.datatype];
    const out = new info.ctor(src.length);
    if (order === 'F') {
      out.set(src);
      return out;
    }
    const shape = this.shape;
    if (this.channels === 1) {
      const [X, Y, Z] = this.spatialShape;
      transposeXFastToZFast(bitView(src), bitView(out), X, Y, Z);
    } else {
      reverseAxes(bitView(src), bitView(out), shape);
    }
    return out;
  }

  /**
   * The image as a `Volume` ([C, X, Y, Z], Z fastest; see the file comment for how dims 4..7
   * become C). The affine is a copy of `this.affine`.
   */
  toVolume(opts?: { dtype?: 'float32' }): Volume<Float32Array>;
  toVolume(opts: { dtype: 'raw' }): Volume<VoxelArray>;
  toVolume(opts?: ToVolumeOptions): Volume<VoxelArray>;
  toVolume(opts: ToVolumeOptions = {}): Volume<VoxelArray> {
    const [X, Y, Z] = this.spatialShape;
    const C = this.channels;
    const n3 = X * Y * Z;
    const shape: Shape4 = [C, X, Y, Z];
    const affine = this.affine.map((r) => r.slice());
    const src = this.#data;
    const info = NIFTI_DATATYPES[this.datatype];
    const rawOut = opts.dtype === 'raw';
    // Transpose in the on-disk type (into a Float32Array directly for float32 data).
    const direct = rawOut || this.datatype === 'float32';
    const t = direct && !rawOut ? new Float32Array(src.length) : new info.ctor(src.length);
    const sv = bitView(src);
    const tv = bitView(t);
    for (let c = 0; c < C; c++) transposeXFastToZFast(sv, tv, X, Y, Z, c * n3, c * n3);
    if (rawOut) return createVolume(t, shape, affine);
    let out: Float32Array;
    if (t instanceof Float32Array) {
      out = t;
    } else {
      out = new Float32Array(t.length);
      if (this.scaling && (info.bytes === 4 || info.bytes === 8)) {
        // int32 / uint32 / float64 are not exact in float32: scale from float64.
        const f64 = t instanceof Float64Array ? t : Float64Array.from(t as ArrayLike<number>);
        const { slope, inter } = this.scaling;
        for (let i = 0; i < f64.length; i++) out[i] = (f64[i] as number) * slope + inter;
        return createVolume(out, shape, affine);
      }
      out.set(t);
    }
    if (this.scaling) {
      const { slope, inter } = this.scaling;
      for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) * slope + inter;
    }
    return createVolume(out, shape, affine);
  }
}

/** Full axis reversal: src F order over `shape` → dst C order over `shape` (any ndim). */
function reverseAxes(src: BitArray, dst: BitArray, shape: readonly number[]): void {
  const n = shape.length;
  const stride: number[] = [];
  let acc = 1;
  for (let k = 0; k < n; k++) {
    stride.push(acc);
    acc *= shape[k] as number;
  }
  const idx = new Array<number>(n).fill(0);
  let s = 0;
  for (let d = 0; d < acc; d++) {
    dst[d] = src[s] as number;
    for (let k = n - 1; k >= 0; k--) {
      idx[k] = (idx[k] as number) + 1;
      s += stride[k] as number;
      if ((idx[k] as number) < (shape[k] as number)) break;
      s -= (stride[k] as number) * (shape[k] as number);
      idx[k] = 0;
    }
  }
}

function checkFinite(file: string, data: Float32Array | Float64Array, shape: readonly number[]): void {
  let count = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (v - v !== 0) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (count === 0) return;
  const index: number[] = [];
  let rest = first;
  for (const d of shape) {
    index.push(rest % d);
    rest = Math.floor(rest / d);
  }
  throw new NiftiError(
    file,
    'data',
    `float data holds ${count} non-finite voxel(s) (NaN or ±Infinity), the first (${data[first]}) at voxel [${index.join(', ')}]; ` +
      'pass allowNonFinite: true to accept them',
  );
}

/**
 * Read a NIfTI image. `path` may be a `.nii`, `.nii.gz`, or either half of a `.hdr/.img` pair
 * (each half gzipped or not). Throws {@link NiftiError} for anything wrong with the input.
 */
export async function readNifti(path: string, opts: ReadNiftiOptions = {}): Promise<NiftiImage> {
  const o: Options = {
    maxVoxels: opts.maxVoxels ?? 1024 ** 3,
    allowNonFinite: opts.allowNonFinite ?? false,
    inflateMargin: opts.inflateMargin ?? 1024 * 1024,
    maxHeaderBytes: opts.maxHeaderBytes ?? 64 * 1024 * 1024,
  };
  const loc = await locate(path);
  const { decoded, data } = loc.image === null ? await loadSingle(path, o) : await loadPair(loc.header, loc.image, o);
  const h = decoded.header;
  const info = decoded.info;
  if (h.littleEndian !== HOST_LITTLE_ENDIAN) byteSwapInPlace(data, 0, decoded.nvox, info.bytes);
  const arr = new info.ctor(data, 0, decoded.nvox);
  if (info.isFloat && !o.allowNonFinite) {
    checkFinite(loc.image ?? path, arr as Float32Array | Float64Array, h.shape);
  }
  return new NiftiImage(path, loc.header, loc.image ?? path, h, arr);
}
