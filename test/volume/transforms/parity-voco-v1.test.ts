/**
 * Parity with MONAI 1.4.0 on chain A.1 (VoCo v1 pre-training prefix), fixtures in
 * test/fixtures/transforms/voco_v1 (see its README.md). Input: data/ct/totalseg_example_ct.nii.gz.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { applyTransformChain, cropForeground, orientation, parseTransformChain, resize, scaleIntensityRange, affineToAxcodes } from '../../../src/volume/transforms/index.ts';
import type { Volume } from '../../../src/volume/volume.ts';
import { affineMaxDiff, compareStored, fmt, loadCtRaw, readJson, sha256Bytes, sha256F32 } from './fixture-helpers.ts';

const DIR = 'voco_v1';
const chain = readJson(`${DIR}/chain.json`);
const step = (name: string) => {
  const s = chain.steps.find((x: any) => x.step === name);
  if (!s) throw new Error(`no step ${name}`);
  return s;
};

const report: string[] = [];
const log = (line: string) => report.push(line);

describe('MONAI parity: VoCo v1 chain (A.1)', () => {
  let s0: Volume<Int16Array>;
  let s2: Volume;
  let s3: Volume<Float32Array>;
  let s4: Volume<Float32Array>;
  let s5: Volume<Float32Array>;
  const ms: Record<string, number> = {};

  beforeAll(async () => {
    const raw = await loadCtRaw('totalseg_example_ct.nii.gz');
    // LoadImaged(dtype=np.int16): numpy astype(int16) wraps like Int16Array.from
    s0 = { data: Int16Array.from(raw.data as ArrayLike<number>), shape: raw.shape, affine: raw.affine };
    let t = performance.now();
    s2 = orientation(s0, 'RAS').volume;
    ms.s2 = performance.now() - t;
    t = performance.now();
    s3 = scaleIntensityRange(s2, { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true }).volume;
    ms.s3 = performance.now() - t;
    t = performance.now();
    s4 = cropForeground(s3, { threshold: 0.3, margin: 0 }).volume;
    ms.s4 = performance.now() - t;
    t = performance.now();
    s5 = resize(s4, [384, 384, 96], { mode: 'trilinear', alignCorners: true }).volume;
    ms.s5 = performance.now() - t;
  });

  it('s0_load / s1_ensure_channel_first: int16 data, shape, affine (bit-exact)', () => {
    const ref = step('s0_load');
    expect(s0.shape).toEqual([1, ...ref.shape]);
    expect(step('s1_ensure_channel_first').shape).toEqual(s0.shape);
    expect(affineMaxDiff(s0.affine, ref.affine)).toBeLessThanOrEqual(1e-6);
    expect(sha256Bytes(s0.data)).toBe(ref.int16_sha256_C_order);
    expect(sha256F32(s0.data)).toBe(ref.data.full_sha256);
    const c = compareStored(s0, DIR, ref.data);
    expect(c.max).toBe(0);
    log(`s0_load             max abs err ${fmt(c.max)} (sha256 exact)`);
  });

  it('s2_orientation: RAS no-op (bit-exact)', () => {
    const ref = step('s2_orientation');
    expect(s2.shape).toEqual(ref.shape);
    expect(affineMaxDiff(s2.affine, ref.affine)).toBeLessThanOrEqual(1e-6);
    expect(affineToAxcodes(s2.affine)).toBe(ref.axcodes);
    expect(sha256F32(s2.data)).toBe(ref.data.full_sha256);
    log(`s2_orientation      max abs err 0 (sha256 exact)  ${ms.s2!.toFixed(1)} ms`);
  });

  it('s3_scale_intensity: within 1e-4 on every stored piece', () => {
    const ref = step('s3_scale_intensity');
    expect(s3.shape).toEqual(ref.shape);
    expect(s3.data).toBeInstanceOf(Float32Array);
    expect(affineMaxDiff(s3.affine, ref.affine)).toBeLessThanOrEqual(1e-6);
    const c = compareStored(s3, DIR, ref.data);
    expect(c.max).toBeLessThanOrEqual(1e-4);
    const exact = sha256F32(s3.data) === ref.data.full_sha256;
    log(`s3_scale_intensity  max abs err ${fmt(c.max)} ${JSON.stringify(c.errors)} bit-exact=${exact}  ${ms.s3!.toFixed(1)} ms`);
  });

  it('s4_crop_foreground: box and data (bit-exact)', () => {
    const ref = step('s4_crop_foreground');
    const r = cropForeground(s3, { threshold: 0.3, margin: 0 });
    expect(r.box).toEqual(ref.crop_box);
    expect(r.empty).toBe(false);
    expect(s4.shape).toEqual(ref.shape);
    expect(affineMaxDiff(s4.affine, ref.affine)).toBeLessThanOrEqual(1e-6);
    expect(sha256F32(s4.data)).toBe(ref.data.full_sha256);
    const c = compareStored(s4, DIR, ref.data);
    expect(c.max).toBe(0);
    log(`s4_crop_foreground  max abs err 0 (sha256 exact) box ${JSON.stringify(r.box)}  ${ms.s4!.toFixed(1)} ms`);
  });

  it('s5_resize: shape, affine, within 1e-4 on every stored piece', () => {
    const ref = step('s5_resize');
    expect(s5.shape).toEqual(ref.shape);
    expect(affineMaxDiff(s5.affine, ref.affine)).toBeLessThanOrEqual(1e-6);
    const c = compareStored(s5, DIR, ref.data);
    expect(c.max).toBeLessThanOrEqual(1e-4);
    const exact = sha256F32(s5.data) === ref.data.full_sha256;
    log(`s5_resize           max abs err ${fmt(c.max)} ${JSON.stringify(c.errors)} bit-exact=${exact}  ${ms.s5!.toFixed(1)} ms (122x96x112 -> 384x384x96)`);
  });

  it('the same chain as a YAML-style spec through applyTransformChain gives the same volumes', () => {
    const steps = parseTransformChain([
      { orientation: 'RAS' },
      { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
      { crop_foreground: { threshold: 0.3 } },
      { resize: { spatial_size: [384, 384, 96], mode: 'bilinear', align_corners: true } },
    ]);
    const out = applyTransformChain(steps, { image: s0 });
    expect(out.image.shape).toEqual(s5.shape);
    expect(sha256F32(out.image.data)).toBe(sha256F32(s5.data));
    expect(out.steps.map((s) => s.kind)).toEqual(['orientation', 'scale_intensity_range', 'crop_foreground', 'resize']);
    expect(out.steps[2]!.box).toEqual(step('s4_crop_foreground').crop_box);
    expect(out.label).toBeUndefined();
    log(`dictionary chain    ${out.steps.map((s) => `${s.kind} ${s.ms.toFixed(1)} ms`).join(', ')}`);
    console.log(`VoCo v1 chain (A.1) vs MONAI 1.4.0:\n  ${report.join('\n  ')}`);
  });
});
