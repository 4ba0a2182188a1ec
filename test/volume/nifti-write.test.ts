import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NiftiError, qformAffine, quaternionToRotation, readNifti } from '../../src/volume/nifti-read.ts';
import { affineToQform, encodeNifti, writeNifti } from '../../src/volume/nifti-write.ts';
import { createVolume, identityAffine, type Affine, type Volume, type VoxelArray } from '../../src/volume/volume.ts';

const CT_DIR = fileURLToPath(new URL('../../data/ct/', import.meta.url));
const FORMATS_DIR = fileURLToPath(new URL('../fixtures/nifti-formats/', import.meta.url));
const ct = (name: string): string => join(CT_DIR, name);
const fmt = (name: string): string => join(FORMATS_DIR, name);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'voco-nifti-write-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function mismatches(a: VoxelArray, b: VoxelArray): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) n++;
  return n;
}

function maxAffineError(a: Affine, b: Affine): number {
  let e = 0;
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) e = Math.max(e, Math.abs(a[r]![c]! - b[r]![c]!));
  return e;
}

/** Write, read back, and check voxels, type, shape and affine are unchanged. */
async function roundTrip(vol: Volume, file: string, opts = {}): Promise<Awaited<ReturnType<typeof readNifti>>> {
  const p = join(tmp, file);
  await writeNifti(p, vol, opts);
  const back = await readNifti(p, { allowNonFinite: true });
  const v = back.toVolume({ dtype: 'raw' });
  expect(v.shape).toEqual(vol.shape);
  expect(v.data.constructor).toBe(vol.data.constructor);
  expect(mismatches(v.data, vol.data)).toBe(0);
  expect(maxAffineError(back.affine, vol.affine)).toBeLessThanOrEqual(1e-6);
  return back;
}

describe('writeNifti: round trips', () => {
  it('float32 CT (LPS affine, .nii.gz): identical voxels, shape and affine; header as specified', async () => {
    const src = await readNifti(ct('totalseg_aorta_ct_cropped.nii.gz'));
    const vol = src.toVolume(); // float32
    const back = await roundTrip(vol, 'aorta_f32.nii.gz');
    const h = back.header;
    expect(h.niftiVersion).toBe(1);
    expect(h.sizeofHdr).toBe(348);
    expect(h.magic).toBe('n+1');
    expect(h.littleEndian).toBe(true);
    expect(h.voxOffset).toBe(352);
    expect(h.datatype).toBe('float32');
    expect(h.bitpix).toBe(32);
    expect(h.dim).toEqual([3, 120, 126, 164, 1, 1, 1, 1]);
    expect(h.pixdim).toEqual([1, 1.5, 1.5, 1.5, 1, 1, 1, 1]);
    expect(h.qformCode).toBe(1);
    expect(h.sformCode).toBe(1);
    expect(h.spatialUnits).toBe('mm');
    expect(h.extensions).toEqual([]);
    // LPS = 180° about z: quaternion (b, c, d) = (0, 0, 1), qfac 1.
    expect([h.quaternB, h.quaternC, h.quaternD]).toEqual([0, 0, 1]);
    expect(maxAffineError(qformAffine(h), vol.affine)).toBeLessThanOrEqual(1e-6);
    expect(back.scaling).toBeNull();
    expect(readFileSync(join(tmp, 'aorta_f32.nii.gz')).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
  });

  it('uint8 label map (aorta mask, LPS) as .nii and .nii.gz, and the 41-label TotalSegmentator seg', async () => {
    const mask = (await readNifti(ct('totalseg_aorta_ct_cropped_aorta_mask.nii.gz'))).toVolume({ dtype: 'raw' });
    expect(mask.data).toBeInstanceOf(Uint8Array);
    await roundTrip(mask, 'mask.nii');
    expect(statSync(join(tmp, 'mask.nii')).size).toBe(352 + 120 * 126 * 164);
    await roundTrip(mask, 'mask.nii.gz');
    const seg = (await readNifti(ct('totalseg_example_ct_sm_seg.nii.gz'))).toVolume({ dtype: 'raw' });
    const back = await roundTrip(seg, 'seg.nii.gz', { description: 'TotalSegmentator total' });
    expect(back.header.descrip).toBe('TotalSegmentator total');
    expect(back.header.datatype).toBe('uint8');
  });

  it('oblique affine (CT_pitch): sform exact, qform = the same rotation (quaternion as in the source file)', async () => {
    const src = await readNifti(ct('niivue_CT_pitch.nii.gz'));
    const vol = src.toVolume({ dtype: 'raw' });
    const back = await roundTrip(vol, 'pitch.nii.gz');
    const h = back.header;
    expect(h.qformCode).toBe(1);
    expect(h.sformCode).toBe(1);
    expect(h.pixdim[0]).toBe(1);
    // The source header's own qform parameters, recovered from its sform.
    expect(Math.abs(h.quaternB - src.header.quaternB)).toBeLessThan(1e-6);
    expect(h.quaternC).toBe(0);
    expect(h.quaternD).toBe(0);
    for (let i = 1; i <= 3; i++) expect(Math.abs(h.pixdim[i]! - src.header.pixdim[i]!)).toBeLessThan(1e-6);
    expect(h.qoffset).toEqual(src.header.qoffset);
    expect(maxAffineError(qformAffine(h), vol.affine)).toBeLessThan(1e-5);
  });

  it('flipped affine (qfac = -1) from the AIR pair and with_extension; float32 data', async () => {
    for (const f of [fmt('air.hdr'), fmt('with_extension.nii.gz')]) {
      const src = await readNifti(f);
      const vol = src.toVolume({ dtype: 'raw' });
      const name = f.split('/').pop()!.replace(/\..*$/, '');
      const back = await roundTrip(vol, `${name}.nii.gz`);
      expect(back.header.pixdim[0]).toBe(-1);
      expect(maxAffineError(qformAffine(back.header), vol.affine)).toBeLessThan(1e-5);
    }
  });

  it('int16 CT as int16, and float data converted to int16 / uint8 by rounding', async () => {
    const src = await readNifti(ct('totalseg_example_ct_sm.nii.gz'));
    const raw = src.toVolume({ dtype: 'raw' });
    await roundTrip(raw, 'sm_i16.nii.gz');
    const f = src.toVolume();
    const p = join(tmp, 'sm_from_f32.nii.gz');
    await writeNifti(p, f, { datatype: 'int16' });
    const back = await readNifti(p);
    expect(back.datatype).toBe('int16');
    expect(mismatches(back.toVolume({ dtype: 'raw' }).data, raw.data)).toBe(0);
    const frac = createVolume(new Float32Array([0.4, 0.6, 1.5, 254.7, 2, 3, 4, 5]), [1, 2, 2, 2], identityAffine());
    const p2 = join(tmp, 'rounded.nii');
    await writeNifti(p2, frac, { datatype: 'uint8' });
    expect(Array.from((await readNifti(p2)).toVolume({ dtype: 'raw' }).data)).toEqual([0, 1, 2, 255, 2, 3, 4, 5]);
  });

  it('C > 1 becomes dim4 and reads back as the same channels', async () => {
    const data = new Int32Array(3 * 4 * 5 * 6).map((_, i) => i * 7 - 1000);
    const vol = createVolume(data, [3, 4, 5, 6], identityAffine());
    const back = await roundTrip(vol, 'channels.nii.gz');
    expect(back.header.dim).toEqual([4, 4, 5, 6, 3, 1, 1, 1]);
    expect(back.shape).toEqual([4, 5, 6, 3]);
    expect(back.channels).toBe(3);
  });

  it('transposes back to NIfTI order: voxel (x, y, z) lands at x + X·(y + Y·z) on disk', () => {
    const [X, Y, Z] = [3, 4, 5];
    const data = new Uint16Array(X * Y * Z);
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) data[(x * Y + y) * Z + z] = 100 * x + 10 * y + z;
    const bytes = encodeNifti(createVolume(data, [1, X, Y, Z], identityAffine()));
    expect(bytes.length).toBe(352 + 2 * X * Y * Z);
    const disk = new Uint16Array(bytes.buffer, 352, X * Y * Z);
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) {
      expect(disk[x + X * (y + Y * z)]).toBe(100 * x + 10 * y + z);
    }
  });
});

describe('affineToQform', () => {
  it('recovers quaternion, zooms and qfac of random rotations, with and without a flip', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let t = 0; t < 200; t++) {
      let [b, c, d] = [rand() - 0.5, rand() - 0.5, rand() - 0.5];
      const a = rand();
      const n = Math.hypot(a, b, c, d);
      b /= n;
      c /= n;
      d /= n;
      const R = quaternionToRotation(b, c, d);
      const zooms = [0.5 + rand() * 3, 0.5 + rand() * 3, 0.5 + rand() * 3];
      const qfac = t % 2 ? -1 : 1;
      const affine: Affine = [0, 1, 2].map((r) => [
        R[r]![0]! * zooms[0]!,
        R[r]![1]! * zooms[1]!,
        R[r]![2]! * zooms[2]! * qfac,
        rand() * 200 - 100,
      ]);
      affine.push([0, 0, 0, 1]);
      const q = affineToQform(affine);
      expect(q.qfac).toBe(qfac);
      expect(Math.abs(q.quatern[0] - b) + Math.abs(q.quatern[1] - c) + Math.abs(q.quatern[2] - d)).toBeLessThan(1e-9);
      for (let i = 0; i < 3; i++) expect(Math.abs(q.zooms[i]! - zooms[i]!)).toBeLessThan(1e-9);
      expect(q.qoffset).toEqual([affine[0]![3], affine[1]![3], affine[2]![3]]);
    }
  });

  it('a sheared affine keeps the exact sform; the qform holds the nearest rotation', async () => {
    const affine: Affine = [
      [2, 0.3, 0, -10],
      [0, 2, 0, 5],
      [0, 0, 3, 7],
      [0, 0, 0, 1],
    ];
    const vol = createVolume(new Uint8Array(8).fill(3), [1, 2, 2, 2], affine);
    const back = await roundTrip(vol, 'shear.nii');
    const R = quaternionToRotation(back.header.quaternB, back.header.quaternC, back.header.quaternD);
    // R is orthonormal and close to the identity.
    for (let i = 0; i < 3; i++) expect(Math.abs(R[i]![i]! - 1)).toBeLessThan(0.02);
  });

  it('refuses a singular affine', () => {
    const flat: Affine = identityAffine();
    flat[2]![2] = 0;
    expect(() => affineToQform(flat, 'x.nii')).toThrow(NiftiError);
    expect(() => affineToQform(flat, 'x.nii')).toThrow(/x\.nii.*column 2 has norm 0/);
  });
});

describe('writeNifti: errors and atomicity', () => {
  async function writeError(p: string, vol: Volume, opts = {}): Promise<NiftiError> {
    const err = await writeNifti(p, vol, opts).then(
      () => {
        throw new Error('expected a NiftiError');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NiftiError);
    expect((err as NiftiError).message).toContain(p.split('/').pop());
    return err as NiftiError;
  }

  it('values that do not fit the datatype, NaN, a bad shape, a bad extension', async () => {
    const p = join(tmp, 'bad.nii.gz');
    const big = createVolume(new Float32Array([1, 2, 300, 4, 5, 6, 7, 8]), [1, 2, 2, 2], identityAffine());
    const e1 = await writeError(p, big, { datatype: 'uint8' });
    expect(e1.message).toMatch(/value 300 at flat index 2 does not fit datatype uint8 \(0\.\.255\)/);
    const nan = createVolume(new Float32Array([1, NaN, 3, 4, 5, 6, 7, 8]), [1, 2, 2, 2], identityAffine());
    expect((await writeError(p, nan)).message).toMatch(/non-finite value \(NaN\) at flat index 1/);
    await writeNifti(join(tmp, 'nan-ok.nii'), nan, { allowNonFinite: true });
    const img = await readNifti(join(tmp, 'nan-ok.nii'), { allowNonFinite: true });
    expect(Number.isNaN(img.rawData()[1])).toBe(true);
    const badShape = { data: new Uint8Array(8), shape: [1, 2, 2, 3], affine: identityAffine() } as Volume;
    expect((await writeError(p, badShape)).message).toMatch(/has 8 voxels but shape \[1, 2, 2, 3\] needs 12/);
    const ok = createVolume(new Uint8Array(8), [1, 2, 2, 2], identityAffine());
    expect((await writeError(join(tmp, 'x.img'), ok)).message).toMatch(/must end in \.nii or \.nii\.gz/);
    expect(readdirSync(tmp).filter((f) => f.startsWith('bad'))).toEqual([]);
  });

  it('writes through a temp file + rename: no leftovers, overwrites, a failed write leaves nothing', async () => {
    const dir = mkdtempSync(join(tmp, 'atomic-'));
    const p = join(dir, 'vol.nii.gz');
    const v1 = createVolume(new Int16Array(8).fill(1), [1, 2, 2, 2], identityAffine());
    const v2 = createVolume(new Int16Array(8).fill(2), [1, 2, 2, 2], identityAffine());
    await writeNifti(p, v1);
    await writeNifti(p, v2);
    expect(readdirSync(dir)).toEqual(['vol.nii.gz']);
    expect(Array.from((await readNifti(p)).rawData())).toEqual(new Array(8).fill(2));
    // A directory that does not exist: a 'write' error, nothing created.
    const e = await writeError(join(dir, 'missing', 'v.nii'), v1);
    expect(e.field).toBe('write');
    expect(readdirSync(dir)).toEqual(['vol.nii.gz']);
    // A failing conversion leaves the existing file as it was.
    const before = readFileSync(p);
    await writeError(p, createVolume(new Float32Array(8).fill(1e6), [1, 2, 2, 2], identityAffine()), { datatype: 'int16' });
    expect(readFileSync(p).equals(before)).toBe(true);
    writeFileSync(join(dir, 'keep.txt'), 'x');
    expect(readdirSync(dir).sort()).toEqual(['keep.txt', 'vol.nii.gz']);
  });
});
