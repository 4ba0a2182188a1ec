import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NiftiError,
  extensionText,
  fallbackAffine,
  qformAffine,
  readNifti,
  sformAffine,
  type NiftiImage,
} from '../../src/volume/nifti-read.ts';
import { encodeNifti } from '../../src/volume/nifti-write.ts';
import { createVolume, identityAffine, type VoxelArray } from '../../src/volume/volume.ts';

// All test data lives inside the repository.
const CT_DIR = fileURLToPath(new URL('../../data/ct/', import.meta.url));
const FORMATS_DIR = fileURLToPath(new URL('../fixtures/nifti-formats/', import.meta.url));
const ct = (name: string): string => join(CT_DIR, name);
const fmt = (name: string): string => join(FORMATS_DIR, name);

/** The subset of expected.json (written by nibabel 5.0.0) that the tests use. */
interface Expected {
  is_nifti: boolean;
  nifti_version?: number;
  pair?: boolean;
  byte_order?: 'little' | 'big';
  header?: {
    sizeof_hdr: number;
    magic: string;
    dim: number[];
    datatype: number;
    bitpix: number;
    pixdim: number[];
    vox_offset: number;
    scl_slope: number;
    scl_inter: number;
    qform_code: number;
    sform_code: number;
    quatern_b: number;
    quatern_c: number;
    quatern_d: number;
    qoffset_x: number;
    qoffset_y: number;
    qoffset_z: number;
    srow_x: number[];
    srow_y: number[];
    srow_z: number[];
    xyzt_units: number;
    intent_code: number;
    descrip: string;
  };
  extensions?: { code: number; content_bytes: number }[];
  shape?: number[];
  on_disk_dtype?: string;
  scaling_applied?: { slope: number; inter: number };
  affine?: number[][];
  data?: { min: number; max: number; mean: number; sum: number; first_voxel: number; voxel_at_center: number };
  label_histogram?: Record<string, number>;
  nibabel_error?: string;
}

function loadExpected(dir: string): Record<string, Expected> {
  return (JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { files: Record<string, Expected> }).files;
}
const EXPECTED_CT = loadExpected(CT_DIR);
const EXPECTED_FORMATS = loadExpected(FORMATS_DIR);

const NUMPY_DTYPES: Record<string, string> = {
  u1: 'uint8',
  i1: 'int8',
  i2: 'int16',
  u2: 'uint16',
  i4: 'int32',
  u4: 'uint32',
  f4: 'float32',
  f8: 'float64',
};
function dtypeName(numpy: string): string {
  const bare = numpy.replace(/^[<>|=]/, '');
  return NUMPY_DTYPES[bare] ?? bare;
}

function expectClose(actual: number, expected: number, rel = 1e-6, abs = 1e-6): void {
  const tol = Math.max(abs, rel * Math.abs(expected));
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(`expected ${actual} to be within ${tol} of ${expected}`);
  }
}

function expectAffineClose(actual: number[][], expected: number[][], tol: number): void {
  expect(actual).toHaveLength(4);
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      const a = (actual[r] as number[])[c] as number;
      const e = (expected[r] as number[])[c] as number;
      if (!(Math.abs(a - e) <= tol)) throw new Error(`affine[${r}][${c}] = ${a}, expected ${e} (±${tol})`);
    }
  }
}

/** Index into a Volume ([C, X, Y, Z], Z fastest) of nibabel's index `idx` over `img.shape`. */
function volumeIndex(img: NiftiImage, idx: number[]): number {
  const [X, Y, Z] = img.spatialShape;
  const [x = 0, y = 0, z = 0] = idx;
  let c = 0;
  let mul = 1;
  img.extraShape.forEach((d, k) => {
    c += (idx[3 + k] ?? 0) * mul;
    mul *= d;
  });
  return ((c * X + x) * Y + y) * Z + z;
}

function checkAgainstExpected(img: NiftiImage, e: Expected): void {
  const h = e.header!;
  const hd = img.header;
  // Header fields, exactly as stored.
  expect(hd.niftiVersion).toBe(e.nifti_version);
  expect(hd.sizeofHdr).toBe(h.sizeof_hdr);
  expect(hd.magic).toBe(h.magic);
  expect(hd.littleEndian).toBe(e.byte_order === 'little');
  expect(hd.dim).toEqual(h.dim);
  expect(hd.datatypeCode).toBe(h.datatype);
  expect(hd.bitpix).toBe(h.bitpix);
  // nibabel's header check replaces a qfac (pixdim[0]) that is not ±1 by 1 when it loads; our
  // header keeps the stored value (0 in the avg152T1 files) and the qform treats it as 1.
  expect(hd.pixdim.slice(1)).toEqual(h.pixdim.slice(1));
  expect(Math.abs(hd.pixdim[0]!) === 1 ? hd.pixdim[0] : 1).toBe(h.pixdim[0]);
  expect(hd.voxOffset).toBe(h.vox_offset);
  expect(hd.sclSlope).toBe(h.scl_slope);
  expect(hd.sclInter).toBe(h.scl_inter);
  expect(hd.qformCode).toBe(h.qform_code);
  expect(hd.sformCode).toBe(h.sform_code);
  expect([hd.quaternB, hd.quaternC, hd.quaternD]).toEqual([h.quatern_b, h.quatern_c, h.quatern_d]);
  expect(hd.qoffset).toEqual([h.qoffset_x, h.qoffset_y, h.qoffset_z]);
  expect(hd.srow).toEqual([h.srow_x, h.srow_y, h.srow_z]);
  expect(hd.xyztUnits).toBe(h.xyzt_units);
  expect(hd.intentCode).toBe(h.intent_code);
  expect(hd.descrip).toBe(h.descrip);
  // Shape, datatype, affine, scaling.
  expect(img.shape).toEqual(e.shape);
  expect(img.datatype).toBe(dtypeName(e.on_disk_dtype!));
  expect(hd.datatype).toBe(img.datatype);
  expectAffineClose(img.affine, e.affine!, 1e-5);
  const s = img.scaling ?? { slope: 1, inter: 0 };
  expect(s.slope).toBe(e.scaling_applied!.slope);
  expect(s.inter).toBe(e.scaling_applied!.inter);
  // Extensions (nibabel reports the content length without trailing NULs).
  const exts = e.extensions ?? [];
  expect(hd.extensions.map((x) => x.code)).toEqual(exts.map((x) => x.code));
  hd.extensions.forEach((x, i) => {
    let end = x.data.length;
    while (end > 0 && x.data[end - 1] === 0) end--;
    expect(end).toBe(exts[i]!.content_bytes);
    expect(x.data.length).toBe(x.esize - 8);
  });
  // Data statistics of the scaled float32 volume.
  const vol = img.toVolume();
  expect(vol.data).toBeInstanceOf(Float32Array);
  expect(vol.shape).toEqual([img.channels, ...img.spatialShape]);
  const d = e.data!;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of vol.data) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  expectClose(min, d.min);
  expectClose(max, d.max);
  expectClose(sum, d.sum, 1e-6, 1e-3);
  expectClose(sum / vol.data.length, d.mean, 1e-6, 1e-7);
  // expected.json: first_voxel = data[0, 0, 0, ...], voxel_at_center = data[tuple(s // 2 for s in shape)].
  expectClose(vol.data[0] as number, d.first_voxel);
  const centre = img.shape.map((n) => Math.floor(n / 2));
  expectClose(vol.data[volumeIndex(img, centre)] as number, d.voxel_at_center);
  // Same centre voxel through rawData() in both orders (unscaled on-disk values).
  const rawF = img.rawData('F');
  const rawC = img.rawData('C');
  let f = 0;
  let cIdx = 0;
  let mul = 1;
  centre.forEach((v, k) => {
    f += v * mul;
    mul *= img.shape[k] as number;
    cIdx = cIdx * (img.shape[k] as number) + v;
  });
  expectClose((rawF[f] as number) * s.slope + s.inter, d.voxel_at_center);
  expect(rawC[cIdx]).toBe(rawF[f]);
  // Label histograms of masks.
  if (e.label_histogram) {
    const hist: Record<string, number> = {};
    for (const v of rawF) hist[String(v)] = (hist[String(v)] ?? 0) + 1;
    expect(hist).toEqual(e.label_histogram);
  }
}

describe('readNifti: every file of data/ct/expected.json', () => {
  for (const [name, e] of Object.entries(EXPECTED_CT)) {
    it(`${name}: header, shape, dtype, affine, scaling and data stats match nibabel`, async () => {
      expect(e.is_nifti).toBe(true);
      checkAgainstExpected(await readNifti(ct(name)), e);
    });
  }
});

describe('readNifti: every file of test/fixtures/nifti-formats/expected.json', () => {
  for (const [name, e] of Object.entries(EXPECTED_FORMATS)) {
    if (!e.is_nifti) {
      it(`${name}: rejected with a NiftiError (nibabel: ${e.nibabel_error})`, async () => {
        const err = await readNifti(fmt(name)).catch((x: unknown) => x);
        expect(err).toBeInstanceOf(NiftiError);
        expect((err as NiftiError).message).toContain(name);
        expect((err as NiftiError).message).toMatch(/not a NIfTI file/);
        expect((err as NiftiError).file).toBe(fmt(name));
        expect((err as NiftiError).field).toBe('sizeof_hdr');
      });
      continue;
    }
    it(`${name}: header, shape, dtype, affine, scaling and data stats match nibabel`, async () => {
      const img = await readNifti(fmt(name));
      checkAgainstExpected(img, e);
      if (e.pair) {
        expect(img.headerPath).toBe(fmt(name));
        expect(img.imagePath).not.toBe(img.headerPath);
      }
    });
  }
});

function sameArray(a: VoxelArray, b: VoxelArray): boolean {
  if (a.length !== b.length || a.constructor !== b.constructor) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

describe('readNifti: formats', () => {
  it('reads a .hdr/.img pair from either half, gzipped or not, NIfTI-1 and NIfTI-2, all identical', async () => {
    const viaHdr = await readNifti(fmt('air.hdr'));
    const viaImg = await readNifti(fmt('air.img'));
    const viaHdrGz = await readNifti(fmt('air.hdr.gz'));
    const viaImgGz = await readNifti(fmt('air.img.gz'));
    const nifti2 = await readNifti(fmt('air2.img.gz'));
    expect(viaImg.headerPath).toBe(fmt('air.hdr'));
    expect(viaImg.imagePath).toBe(fmt('air.img'));
    expect(viaImgGz.headerPath).toBe(fmt('air.hdr.gz'));
    expect(nifti2.header.niftiVersion).toBe(2);
    expect(nifti2.header.magic).toBe('ni2');
    expect(viaHdr.header.magic).toBe('ni1');
    const ref = viaHdr.rawData();
    expect(ref).toBeInstanceOf(Float32Array);
    for (const img of [viaImg, viaHdrGz, viaImgGz, nifti2]) {
      expect(sameArray(img.rawData(), ref)).toBe(true);
      expect(img.affine).toEqual(viaHdr.affine);
    }
  });

  it('NIfTI-2 (n+2, 540-byte header) float32 equals the big-endian NIfTI-1 uint8 file voxel for voxel', async () => {
    const n1 = await readNifti(fmt('avg152T1_LR_nifti.nii'));
    const n2 = await readNifti(fmt('avg152T1_LR_nifti2.nii.gz'));
    expect(n1.header.littleEndian).toBe(false);
    expect(n2.header.niftiVersion).toBe(2);
    expect(n2.header.sizeofHdr).toBe(540);
    expect(n2.header.voxOffset).toBe(544);
    const a = n1.toVolume();
    const b = n2.toVolume();
    expect(a.shape).toEqual([1, 91, 109, 91]);
    expect(b.data.length).toBe(a.data.length);
    let mismatches = 0;
    for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) mismatches++;
    expect(mismatches).toBe(0);
    expect(b.affine).toEqual(a.affine);
  });

  it('big-endian and little-endian copies of the same float32 image are identical', async () => {
    const big = await readNifti(fmt('big.nii.gz'));
    const little = await readNifti(fmt('little.nii.gz'));
    expect(big.header.littleEndian).toBe(false);
    expect(little.header.littleEndian).toBe(true);
    expect(sameArray(big.rawData('F'), little.rawData('F'))).toBe(true);
    // 4-D with dim4 = 1 is one channel.
    expect(little.shape).toEqual([64, 64, 21, 1]);
    expect(little.channels).toBe(1);
    expect(little.toVolume().shape).toEqual([1, 64, 64, 21]);
    expect(sameArray(big.toVolume().data, little.toVolume().data)).toBe(true);
  });

  it('qform-only files use the qform (quaternion, qfac = -1)', async () => {
    const img = await readNifti(fmt('little.nii.gz'));
    expect(img.header.sformCode).toBe(0);
    expect(img.affine).toEqual(qformAffine(img.header));
    expectAffineClose(
      img.affine,
      [
        [-4, 0, 0, 0],
        [0, 4, 0, 0],
        [0, 0, 6, 0],
        [0, 0, 0, 1],
      ],
      0,
    );
  });

  it('prefers the sform even when qform_code > sform_code (nibabel rule), and the qform agrees', async () => {
    const img = await readNifti(fmt('5D_small.nii'));
    expect(img.header.qformCode).toBe(2);
    expect(img.header.sformCode).toBe(1);
    expect(img.affine).toEqual(sformAffine(img.header));
    // An oblique quaternion with qfac = -1: the qform lands within float32 precision of the sform.
    expectAffineClose(qformAffine(img.header), sformAffine(img.header), 1e-6);
    const pitch = await readNifti(ct('niivue_CT_pitch.nii.gz'));
    expectAffineClose(qformAffine(pitch.header), pitch.affine, 1e-6);
  });

  it('5-D image: dims 4..7 fold into C (C = 3 here), channel order matches rawData', async () => {
    const img = await readNifti(fmt('5D_small.nii'));
    expect(img.shape).toEqual([1, 2, 3, 1, 3]);
    expect(img.extraShape).toEqual([1, 3]);
    expect(img.channels).toBe(3);
    const vol = img.toVolume({ dtype: 'raw' });
    expect(vol.shape).toEqual([3, 1, 2, 3]);
    expect(vol.data).toBeInstanceOf(Uint8Array);
    const rawC = img.rawData('C'); // C order over [1, 2, 3, 1, 3]
    for (let u = 0; u < 3; u++) {
      for (let y = 0; y < 2; y++) {
        for (let z = 0; z < 3; z++) {
          expect(vol.data[(u * 2 + y) * 3 + z]).toBe(rawC[(y * 3 + z) * 3 + u]);
        }
      }
    }
    // Scaling: uint8 * 0.0027581409 + 0.0769190192 (slope and inter are float32 in the header).
    const f = img.toVolume();
    for (let i = 0; i < f.data.length; i++) {
      expect(f.data[i]).toBe(Math.fround((vol.data[i] as number) * img.header.sclSlope + img.header.sclInter));
    }
  });

  it('scl_slope scaling of a uint8 CT (CT_AVM): raw stays uint8, float32 is scaled', async () => {
    const img = await readNifti(ct('niivue_CT_AVM.nii.gz'));
    expect(img.scaling).toEqual({ slope: img.header.sclSlope, inter: 0 });
    const raw = img.toVolume({ dtype: 'raw' });
    const f = img.toVolume({ dtype: 'float32' });
    expect(raw.data).toBeInstanceOf(Uint8Array);
    let maxRaw = 0;
    for (const v of raw.data) if (v > maxRaw) maxRaw = v;
    expect(maxRaw).toBe(255);
    const i = raw.data.indexOf(255);
    expect(f.data[i]).toBe(Math.fround(255 * img.header.sclSlope));
  });

  it('slope 0 means no scaling (avg152T1 files have scl_slope = 0)', async () => {
    const img = await readNifti(fmt('avg152T1_LR_nifti.nii'));
    expect(img.header.sclSlope).toBe(0);
    expect(img.scaling).toBeNull();
  });

  it('the int16 example_ct_sm crop equals example_ct[:, :, 82:112] (transposition check on real CTs)', async () => {
    const big = (await readNifti(ct('totalseg_example_ct.nii.gz'))).toVolume({ dtype: 'raw' });
    const sm = (await readNifti(ct('totalseg_example_ct_sm.nii.gz'))).toVolume({ dtype: 'raw' });
    expect(big.data).toBeInstanceOf(Int32Array);
    expect(sm.data).toBeInstanceOf(Int16Array);
    const [, X, Y, Z] = big.shape;
    expect(sm.shape).toEqual([1, X, Y, 30]);
    let mismatches = 0;
    for (let xy = 0; xy < X * Y; xy++) {
      for (let z = 0; z < 30; z++) if (sm.data[xy * 30 + z] !== big.data[xy * Z + 82 + z]) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('mask and CT of the aorta crop share the LPS grid; the label map has 72810 foreground voxels', async () => {
    const ctImg = await readNifti(ct('totalseg_aorta_ct_cropped.nii.gz'));
    const mask = await readNifti(ct('totalseg_aorta_ct_cropped_aorta_mask.nii.gz'));
    expect(mask.affine).toEqual(ctImg.affine);
    expect(ctImg.affine[0]![0]).toBe(-1.5);
    expect(ctImg.affine[1]![1]).toBe(-1.5);
    const m = mask.toVolume({ dtype: 'raw' }).data;
    const c = ctImg.toVolume({ dtype: 'raw' }).data;
    let n = 0;
    let hu = 0;
    for (let i = 0; i < m.length; i++) {
      if (m[i]) {
        n++;
        hu += c[i] as number;
      }
    }
    expect(n).toBe(72810);
    // The aorta is contrast-filled blood: a mean well above soft tissue.
    expect(hu / n).toBeGreaterThan(150);
  });

  it('exposes the Caret XML label-table extension of the TotalSegmentator seg (esize 12816)', async () => {
    const img = await readNifti(ct('totalseg_example_ct_sm_seg.nii.gz'));
    expect(img.header.voxOffset).toBe(13168);
    expect(img.header.extensions).toHaveLength(1);
    const ext = img.header.extensions[0]!;
    expect(ext.code).toBe(0);
    expect(ext.esize).toBe(12816);
    expect(ext.data.length).toBe(12808);
    const text = extensionText(ext);
    expect(Buffer.byteLength(text)).toBe(12807);
    expect(text.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    expect(text).toContain('<CaretExtension>');
    const labels: Record<string, string> = {};
    for (const m of text.matchAll(/<Label Key="(\d+)"[^>]*><!\[CDATA\[([^\]]*)\]\]><\/Label>/g)) {
      labels[m[1]!] = m[2]!;
    }
    const json = JSON.parse(readFileSync(ct('totalseg_total_labels.json'), 'utf8')) as { labels: Record<string, string> };
    expect(Object.keys(labels)).toHaveLength(117);
    expect(labels).toEqual(json.labels);
    expect(labels['52']).toBe('aorta');
  });

  it('exposes the Mango ROI extension of a big-endian file (esize 384, 365 content bytes)', async () => {
    const img = await readNifti(fmt('with_extension.nii.gz'));
    expect(img.header.littleEndian).toBe(false);
    expect(img.header.voxOffset).toBe(736);
    const ext = img.header.extensions[0]!;
    expect(ext.code).toBe(0);
    expect(ext.esize).toBe(384);
    const text = extensionText(ext);
    expect(Buffer.byteLength(text)).toBe(365);
    expect(text).toContain('<MangoROI version="3.8">');
    expect(text).toContain('<Point index="1" x="150" y="23"/>');
    expect(img.header.spatialUnits).toBe('mm');
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'voco-nifti-read-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A small valid NIfTI-1 file (uncompressed bytes) to corrupt. */
function smallNifti(data: VoxelArray = new Uint8Array(4 * 5 * 6).map((_, i) => i), shape: [number, number, number] = [4, 5, 6]): Uint8Array {
  return encodeNifti(createVolume(data, [1, ...shape], identityAffine()), { allowNonFinite: true });
}

function writeTmp(name: string, bytes: Uint8Array): string {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

function patched(bytes: Uint8Array, fn: (dv: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  fn(new DataView(copy.buffer));
  return copy;
}

async function expectNiftiError(promise: Promise<unknown>, file: string, field: string, problem: RegExp): Promise<NiftiError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a NiftiError, but the read succeeded');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NiftiError);
  const ne = err as NiftiError;
  expect(ne.message).toContain(file.split('/').pop());
  expect(ne.message).toMatch(problem);
  expect(ne.field).toBe(field);
  return ne;
}

describe('readNifti: bad input gives one clear NiftiError', () => {
  it('control: the small generated file reads fine', async () => {
    const p = writeTmp('ok.nii', smallNifti());
    const img = await readNifti(p);
    expect(img.shape).toEqual([4, 5, 6]);
    expect(img.rawData('C')[7]).toBe(7);
  });

  it('missing file', async () => {
    await expectNiftiError(readNifti(join(tmp, 'nope.nii.gz')), 'nope.nii.gz', 'file', /file not found/);
  });

  it('missing .img for a .hdr, and missing .hdr for an .img', async () => {
    const hdr = join(tmp, 'lonely.hdr');
    copyFileSync(fmt('air.hdr'), hdr);
    const e = await expectNiftiError(readNifti(hdr), 'lonely.hdr', 'img', /image \(\.img\) file .* is missing/);
    expect(e.message).toContain('lonely.img');
    const img = join(tmp, 'orphan.img');
    copyFileSync(fmt('air.img'), img);
    const e2 = await expectNiftiError(readNifti(img), 'orphan.img', 'hdr', /header \(\.hdr\) file .* is missing/);
    expect(e2.message).toContain('orphan.hdr');
  });

  it('not a NIfTI file (random bytes), and an ANALYZE 7.5 header without magic', async () => {
    await expectNiftiError(readNifti(fmt('not-nifti.nii')), 'not-nifti.nii', 'sizeof_hdr', /not a NIfTI file: sizeof_hdr is/);
    const analyze = patched(smallNifti(), (dv) => dv.setUint32(344, 0));
    await expectNiftiError(readNifti(writeTmp('analyze.nii', analyze)), 'analyze.nii', 'magic', /ANALYZE 7\.5/);
    await expectNiftiError(readNifti(writeTmp('tiny.nii', new Uint8Array(100))), 'tiny.nii', 'sizeof_hdr', /only 100 bytes/);
  });

  it('pair magic (ni1) in a single .nii file', async () => {
    const bad = patched(smallNifti(), (dv) => dv.setUint8(345, 'i'.charCodeAt(0)));
    await expectNiftiError(readNifti(writeTmp('pairmagic.nii', bad)), 'pairmagic.nii', 'magic', /marks the header of a \.hdr\/\.img pair/);
  });

  it('truncated .nii.gz (gzip stream ends early), cut in the middle or only its trailer', async () => {
    const gz = readFileSync(ct('totalseg_example_ct_sm.nii.gz'));
    const half = writeTmp('half.nii.gz', gz.subarray(0, gz.length >> 1));
    await expectNiftiError(readNifti(half), 'half.nii.gz', 'gzip', /gzip stream ends early \(truncated file\?\)/);
    const noTrailer = writeTmp('notrailer.nii.gz', gz.subarray(0, gz.length - 6));
    await expectNiftiError(readNifti(noTrailer), 'notrailer.nii.gz', 'gzip', /truncated/);
    const headOnly = writeTmp('head.nii.gz', gz.subarray(0, 30));
    await expectNiftiError(readNifti(headOnly), 'head.nii.gz', 'gzip', /truncated/);
  });

  it('corrupt gzip data', async () => {
    const gz = Buffer.from(readFileSync(fmt('little.nii.gz')));
    for (let i = 2000; i < 2400; i++) gz[i] = (gz[i] as number) ^ 0x5a;
    await expectNiftiError(readNifti(writeTmp('corrupt.nii.gz', gz)), 'corrupt.nii.gz', 'gzip', /corrupt gzip data/);
  });

  it('header dims that disagree with the data size (file too short), plain and gzipped', async () => {
    const full = readFileSync(fmt('5D_small.nii'));
    const short = writeTmp('short.nii', full.subarray(0, full.length - 3));
    const e = await expectNiftiError(readNifti(short), 'short.nii', 'data', /too short for its header: dims 1x2x3x1x3 of uint8 need 18 bytes/);
    expect(e.message).toMatch(/holds 367 bytes/);
    const bigger = patched(smallNifti(), (dv) => dv.setInt16(46, 7, true)); // dim[3] 6 -> 7
    await expectNiftiError(readNifti(writeTmp('dims.nii.gz', gzipSync(bigger))), 'dims.nii.gz', 'data', /decompressed file is too short.*4x5x7/);
    await expectNiftiError(readNifti(writeTmp('dims.nii', bigger)), 'dims.nii', 'data', /header dims disagree with the data size/);
    // The .img of a pair too short.
    copyFileSync(fmt('air.hdr'), join(tmp, 'cut.hdr'));
    writeFileSync(join(tmp, 'cut.img'), readFileSync(fmt('air.img')).subarray(0, 1000));
    await expectNiftiError(readNifti(join(tmp, 'cut.hdr')), 'cut.img', 'data', /image file of the pair .* is too short/);
  });

  it('NaN / Inf voxels in float data: error by default, accepted with allowNonFinite', async () => {
    const data = new Float32Array(4 * 5 * 6).fill(1);
    data[17] = NaN;
    data[10] = Infinity;
    const p = writeTmp('nan.nii.gz', gzipSync(smallNifti(data)));
    const e = await expectNiftiError(readNifti(p), 'nan.nii.gz', 'data', /2 non-finite voxel\(s\)/);
    expect(e.message).toMatch(/allowNonFinite/);
    const img = await readNifti(p, { allowNonFinite: true });
    const raw = img.rawData('F') as Float32Array;
    expect(raw.filter((v) => !Number.isFinite(v))).toHaveLength(2);
    const inf = patched(smallNifti(new Float32Array(120).fill(2)), (dv) => dv.setFloat32(352 + 4 * 9, -Infinity, true));
    await expectNiftiError(readNifti(writeTmp('inf.nii', inf)), 'inf.nii', 'data', /-Infinity\) at voxel \[1, 2, 0\]/);
  });

  it('unsupported datatypes (complex64, RGB24, int64) are refused by name', async () => {
    for (const [code, name] of [
      [32, 'complex64'],
      [128, 'RGB24'],
      [1024, 'int64'],
    ] as const) {
      const bad = patched(smallNifti(), (dv) => dv.setInt16(70, code, true));
      await expectNiftiError(readNifti(writeTmp(`dt${code}.nii`, bad)), `dt${code}.nii`, 'datatype', new RegExp(`unsupported datatype ${name}`));
    }
  });

  it('zero-sized, negative and out-of-range dims', async () => {
    const zero = patched(smallNifti(), (dv) => dv.setInt16(44, 0, true)); // dim[2] = 0
    await expectNiftiError(readNifti(writeTmp('zero.nii', zero)), 'zero.nii', 'dim', /dim\[2\] is 0 .* must be ≥ 1/);
    const neg = patched(smallNifti(), (dv) => dv.setInt16(42, -5, true));
    await expectNiftiError(readNifti(writeTmp('neg.nii.gz', gzipSync(neg))), 'neg.nii.gz', 'dim', /dim\[1\] is -5/);
    const nd = patched(smallNifti(), (dv) => dv.setInt16(40, 9, true));
    await expectNiftiError(readNifti(writeTmp('nd.nii', nd)), 'nd.nii', 'dim', /dim\[0\] .* is 9; it must be 1\.\.7/);
  });

  it('absurd dims are refused before allocating (maxVoxels, default 1024^3)', async () => {
    const huge = patched(smallNifti(), (dv) => {
      dv.setInt16(42, 30000, true);
      dv.setInt16(44, 30000, true);
      dv.setInt16(46, 30000, true);
    });
    const t0 = performance.now();
    await expectNiftiError(readNifti(writeTmp('huge.nii.gz', gzipSync(huge))), 'huge.nii.gz', 'dim', /30000x30000x30000 make 27000000000000 voxels, more than the limit of 1073741824/);
    await expectNiftiError(readNifti(writeTmp('huge.nii', huge)), 'huge.nii', 'dim', /maxVoxels/);
    // A real file over a lower limit.
    await expectNiftiError(readNifti(ct('totalseg_example_ct_sm.nii.gz'), { maxVoxels: 100_000 }), 'totalseg_example_ct_sm.nii.gz', 'dim', /limit of 100000/);
    // Under the limit but far more than the file holds: no 1 GB allocation, just "too short".
    const claims = patched(smallNifti(), (dv) => {
      dv.setInt16(42, 1000, true);
      dv.setInt16(44, 1000, true);
      dv.setInt16(46, 1000, true);
    });
    await expectNiftiError(readNifti(writeTmp('claims.nii.gz', gzipSync(claims))), 'claims.nii.gz', 'data', /too short/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a decompression bomb stops inflating just past what the header needs', async () => {
    // Header + 512 voxels, then 1 GiB of zeros as 1024 concatenated gzip members (~1 MB on disk).
    const member = gzipSync(Buffer.alloc(1 << 20));
    const parts = [gzipSync(smallNifti(new Uint8Array(512), [8, 8, 8]))];
    for (let i = 0; i < 1024; i++) parts.push(member);
    const p = writeTmp('bomb.nii.gz', Buffer.concat(parts));
    const t0 = performance.now();
    const e = await expectNiftiError(readNifti(p), 'bomb.nii.gz', 'gzip', /decompression bomb/);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(e.message).toMatch(/its header \(dims, datatype and vox_offset\) needs only 864 bytes/);
    // A smaller margin is honoured, a bigger one lets a small trailer through.
    await expectNiftiError(readNifti(p, { inflateMargin: 0 }), 'bomb.nii.gz', 'gzip', /more than 864 bytes/);
    const trailer = writeTmp('trailer.nii.gz', Buffer.concat([parts[0]!, gzipSync(Buffer.alloc(100))]));
    expect((await readNifti(trailer)).shape).toEqual([8, 8, 8]);
    // The .img.gz of a pair is bounded the same way.
    copyFileSync(fmt('air.hdr'), join(tmp, 'pairbomb.hdr'));
    const img = [gzipSync(readFileSync(fmt('air.img')))];
    for (let i = 0; i < 1024; i++) img.push(member);
    writeTmp('pairbomb.img.gz', Buffer.concat(img));
    const e2 = await expectNiftiError(readNifti(join(tmp, 'pairbomb.hdr')), 'pairbomb.img.gz', 'gzip', /decompression bomb/);
    expect(e2.message).toMatch(/dims 79x67x64 of float32 from byte 0\) needs only 1355008 bytes/);
  });

  it('a valid scl_slope with a non-finite scl_inter', async () => {
    const bad = patched(smallNifti(), (dv) => {
      dv.setFloat32(112, 2, true);
      dv.setFloat32(116, NaN, true);
    });
    await expectNiftiError(readNifti(writeTmp('inter.nii', bad)), 'inter.nii', 'scl_inter', /scl_inter is NaN/);
  });

  it('vox_offset inside the header, and an extension that overruns vox_offset', async () => {
    const vo = patched(smallNifti(), (dv) => dv.setFloat32(108, 100, true));
    await expectNiftiError(readNifti(writeTmp('vo.nii', vo)), 'vo.nii', 'vox_offset', /vox_offset is 100, inside the 348-byte header/);
    // Move the voxels to 368 and declare a 16-byte extension there whose esize claims 4096 bytes.
    const base = smallNifti();
    const withExt = new Uint8Array(base.length + 16);
    withExt.set(base.subarray(0, 352));
    withExt.set(base.subarray(352), 368);
    const dv = new DataView(withExt.buffer);
    dv.setFloat32(108, 368, true);
    withExt[348] = 1;
    dv.setInt32(352, 4096, true);
    dv.setInt32(356, 6, true);
    await expectNiftiError(readNifti(writeTmp('ext.nii', withExt)), 'ext.nii', 'extensions', /esize 4096/);
    // The same with a correct esize reads, exposing the extension.
    dv.setInt32(352, 16, true);
    withExt.set([104, 105], 360);
    const img = await readNifti(writeTmp('ext-ok.nii', withExt));
    expect(img.header.extensions).toHaveLength(1);
    expect(img.header.extensions[0]!.code).toBe(6);
    expect(extensionText(img.header.extensions[0]!)).toBe('hi');
    expect(img.rawData('C')[5]).toBe(5);
  });
});

describe('affine fallback (no sform, no qform)', () => {
  it("matches nibabel's get_base_affine: x flipped, origin at the centre voxel", async () => {
    const bytes = patched(smallNifti(), (dv) => {
      dv.setInt16(252, 0, true); // qform_code
      dv.setInt16(254, 0, true); // sform_code
      dv.setFloat32(80, 2, true); // pixdim[1..3] = 2, 3, 4
      dv.setFloat32(84, 3, true);
      dv.setFloat32(88, 4, true);
    });
    const img = await readNifti(writeTmp('noxform.nii', bytes));
    // shape 4x5x6: origin (1.5, 2, 2.5); zooms (-2, 3, 4).
    expect(img.affine).toEqual([
      [-2, 0, 0, 3],
      [0, 3, 0, -6],
      [0, 0, 4, -10],
      [0, 0, 0, 1],
    ]);
    expect(fallbackAffine(img.header)).toEqual(img.affine);
  });
});
