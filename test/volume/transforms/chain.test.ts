import { describe, expect, it } from 'vitest';
import {
  applyTransformChain,
  parseTransformChain,
  TransformSpecError,
  transformChainFingerprint,
  TRANSFORM_VERSIONS,
  type TransformStep,
} from '../../../src/volume/transforms/index.ts';
import { diagAffine, makeVolume } from './synthetic.ts';

const BRIEF = [
  { orientation: 'RAS' },
  { spacing: [1.5, 1.5, 1.5] },
  { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
  { crop_foreground: { threshold: 0.3 } },
  { resize: [384, 384, 96] },
  { spatial_pad: [96, 96, 96] },
];

const NORMALISED: TransformStep[] = [
  { kind: 'orientation', axcodes: 'RAS' },
  { kind: 'spacing', pixdim: [1.5, 1.5, 1.5], mode: 'bilinear', label_mode: 'nearest' },
  { kind: 'scale_intensity_range', a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true },
  { kind: 'crop_foreground', threshold: 0.3, margin: [0, 0, 0], allow_smaller: true, k_divisible: [1, 1, 1] },
  { kind: 'resize', spatial_size: [384, 384, 96], mode: 'trilinear', align_corners: false, label_mode: 'nearest' },
  { kind: 'spatial_pad', spatial_size: [96, 96, 96], method: 'symmetric', value: 0 },
];

const LONG = [
  { orientation: { axcodes: 'RAS' } },
  { spacing: { pixdim: 1.5, mode: 'bilinear' } },
  { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
  { crop_foreground: { threshold: 0.3, margin: 0, allow_smaller: true, k_divisible: [1, 1, 1] } },
  { resize: { spatial_size: [384, 384, 96], mode: 'bilinear', align_corners: false, label_mode: 'nearest' } },
  { spatial_pad: { spatial_size: [96, 96, 96], method: 'symmetric', value: 0 } },
];

describe('parseTransformChain', () => {
  it('normalises the short form with every default filled in', () => {
    expect(parseTransformChain(BRIEF)).toEqual(NORMALISED);
  });

  it('long forms (with defaults spelled out) normalise to the same steps', () => {
    expect(parseTransformChain(LONG)).toEqual(NORMALISED);
  });

  it('accepts the other documented shapes', () => {
    expect(parseTransformChain([{ crop_foreground: null }, { crop_foreground: {} }])).toEqual([
      { kind: 'crop_foreground', threshold: 0, margin: [0, 0, 0], allow_smaller: true, k_divisible: [1, 1, 1] },
      { kind: 'crop_foreground', threshold: 0, margin: [0, 0, 0], allow_smaller: true, k_divisible: [1, 1, 1] },
    ]);
    expect(parseTransformChain([{ resize: { spatial_size: [64, -1, 64], mode: 'nearest' } }])).toEqual([
      { kind: 'resize', spatial_size: [64, -1, 64], mode: 'nearest', align_corners: false, label_mode: 'nearest' },
    ]);
    expect(parseTransformChain([{ scale_intensity_range: { a_min: 0, a_max: 1 } }])).toEqual([
      { kind: 'scale_intensity_range', a_min: 0, a_max: 1, b_min: null, b_max: null, clip: false },
    ]);
    expect(parseTransformChain([])).toEqual([]);
  });

  const bad: [unknown, string][] = [
    [{ orientation: 'RAS' }, 'transforms: expected a list of transforms'],
    [[{ orientation: 'RAS' }, 'spacing'], 'transforms[1]: expected a one-key map'],
    [[{ orientation: 'RAS', spacing: [1, 1, 1] }], 'transforms[0]: expected one transform per list item, got 2 keys'],
    [[{}], 'transforms[0]: empty map'],
    [[{ spaceing: [1, 1, 1] }], 'transforms[0].spaceing: unknown transform (did you mean "spacing"?)'],
    [[{ orientation: 'RAX' }], 'transforms[0].orientation: expected 3 upper-case axis codes'],
    [[{ orientation: 'RLS' }], 'transforms[0].orientation: axis codes "RLS" name the L/R axis twice'],
    [[{ orientation: { codes: 'RAS' } }], 'transforms[0].orientation.codes: unknown field'],
    [[{ spacing: [1.5, 0, 1.5] }], 'transforms[0].spacing[1]: expected a positive number, got 0'],
    [[{ spacing: [1.5, 1.5] }], 'transforms[0].spacing: expected a list of 3 positive numbers'],
    [[{ spacing: { pixdim: [1, 1, 1], mode: 'linear' } }], 'transforms[0].spacing.mode: expected one of "bilinear", "nearest", got the string "linear"'],
    [[{ spacing: { mode: 'nearest' } }], 'transforms[0].spacing.pixdim: required field is missing'],
    [[{ orientation: 'RAS' }, {}, { scale_intensity_range: { a_min: 'x', a_max: 250 } }], 'transforms[1]: empty map'],
    [[{ orientation: 'RAS' }, { spacing: 1.5 }, { scale_intensity_range: { a_min: '-175', a_max: 250 } }], 'transforms[2].scale_intensity_range.a_min: expected a number, got the string "-175"'],
    [[{ scale_intensity_range: { a_max: 250 } }], 'transforms[0].scale_intensity_range.a_min: required field is missing'],
    [[{ scale_intensity_range: { a_min: 0, a_max: 1, b_min: 0 } }], 'transforms[0].scale_intensity_range.b_max: required field is missing'],
    [[{ scale_intensity_range: { a_min: 0, a_max: 1, clip: 'yes' } }], 'transforms[0].scale_intensity_range.clip: expected true or false'],
    [[{ scale_intensity_range: [0, 1] }], 'transforms[0].scale_intensity_range: expected a map with a_min, a_max'],
    [[{ crop_foreground: { treshold: 0.3 } }], 'transforms[0].crop_foreground.treshold: unknown field (did you mean "threshold"?)'],
    [[{ crop_foreground: { margin: 1.5 } }], 'transforms[0].crop_foreground.margin: expected an integer, got number 1.5'],
    [[{ crop_foreground: { k_divisible: [1, 0, 1] } }], 'transforms[0].crop_foreground.k_divisible[1]: expected an integer ≥ 1, got 0'],
    [[{ crop_foreground: 0.3 }], 'transforms[0].crop_foreground: expected a map'],
    [[{ resize: [384, 384, 0] }], 'transforms[0].resize[2]: expected a positive integer or -1 (keep), got number 0'],
    [[{ resize: [384, 384.5, 96] }], 'transforms[0].resize[1]: expected a positive integer or -1'],
    [[{ resize: { spatial_size: [2, 2, 2], mode: 'nearest', align_corners: true } }], 'transforms[0].resize.align_corners: only applies to trilinear'],
    [[{ resize: { spatial_size: [2, 2, 2], mode: 'area' } }], 'transforms[0].resize.mode: expected one of "trilinear", "bilinear", "nearest"'],
    [[{ spatial_pad: { spatial_size: [96, 96, 96], method: 'center' } }], 'transforms[0].spatial_pad.method: expected one of "symmetric", "end"'],
    [[{ spatial_pad: { size: [96, 96, 96] } }], 'transforms[0].spatial_pad.size: unknown field'],
  ];
  it.each(bad)('rejects %j with a located message', (spec, message) => {
    let err: unknown;
    try {
      parseTransformChain(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TransformSpecError);
    expect((err as Error).message.startsWith(message)).toBe(true);
    expect((err as TransformSpecError).path).toBe(message.split(':')[0]);
  });

  it('uses a caller-given path prefix', () => {
    expect(() => parseTransformChain([{ spacing: 'x' }], 'stages.prep.params.transforms')).toThrow(/^stages\.prep\.params\.transforms\[0\]\.spacing: /);
  });
});

describe('transformChainFingerprint', () => {
  const fp = (spec: unknown) => JSON.stringify(transformChainFingerprint(parseTransformChain(spec)));

  it('is JSON-able, carries a version per kind, and ignores spelling of the same parameters', () => {
    const f = transformChainFingerprint(parseTransformChain(BRIEF));
    expect(JSON.parse(JSON.stringify(f))).toEqual(f);
    expect(f.steps.map((s) => s.version)).toEqual(f.steps.map((s) => TRANSFORM_VERSIONS[s.kind]));
    expect(f.steps[1]).toEqual({ kind: 'spacing', params: { label_mode: 'nearest', mode: 'bilinear', pixdim: [1.5, 1.5, 1.5] }, version: 1 });
    expect(fp(LONG)).toBe(fp(BRIEF));
    expect(fp([{ resize: { spatial_size: [4, 4, 4], mode: 'bilinear' } }])).toBe(fp([{ resize: [4, 4, 4] }]));
    expect(fp([{ crop_foreground: null }])).toBe(fp([{ crop_foreground: { threshold: 0, margin: [0, 0, 0] } }]));
    // key order in the input does not matter
    expect(fp([{ scale_intensity_range: { clip: true, b_max: 1, b_min: 0, a_max: 250, a_min: -175 } }])).toBe(fp([BRIEF[2]]));
  });

  it('changes when any parameter changes', () => {
    const variants: unknown[] = [
      [{ orientation: 'LPS' }],
      [{ spacing: [1.5, 1.5, 2] }],
      [{ spacing: { pixdim: 1.5, mode: 'nearest' } }],
      [{ spacing: { pixdim: 1.5, label_mode: 'bilinear' } }],
      [{ scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: false } }],
      [{ scale_intensity_range: { a_min: -175, a_max: 251, b_min: 0, b_max: 1, clip: true } }],
      [{ scale_intensity_range: { a_min: -175, a_max: 250 } }],
      [{ crop_foreground: { threshold: 0.31 } }],
      [{ crop_foreground: { margin: 1 } }],
      [{ crop_foreground: { allow_smaller: false } }],
      [{ crop_foreground: { k_divisible: 2 } }],
      [{ resize: [384, 384, 95] }],
      [{ resize: { spatial_size: [384, 384, 96], align_corners: true } }],
      [{ resize: { spatial_size: [384, 384, 96], mode: 'nearest' } }],
      [{ resize: { spatial_size: [384, 384, 96], label_mode: 'trilinear' } }],
      [{ spatial_pad: [96, 96, 97] }],
      [{ spatial_pad: { spatial_size: [96, 96, 96], method: 'end' } }],
      [{ spatial_pad: { spatial_size: [96, 96, 96], value: -1 } }],
      [{ orientation: 'RAS' }, { spacing: 1.5 }],
      [{ spacing: 1.5 }, { orientation: 'RAS' }],
    ];
    const seen = new Set(variants.map(fp));
    expect(seen.size).toBe(variants.length);
  });
});

describe('applyTransformChain (dictionary form)', () => {
  // LPS image 3 mm, body block in the middle; label marks part of the block
  const lps = diagAffine(-3, -3, 3, [30, 40, 50]);
  const inBody = (x: number, y: number, z: number) => x >= 2 && x <= 7 && y >= 1 && y <= 5 && z >= 0 && z <= 3;
  const image = makeVolume([1, 10, 8, 5], (_c, x, y, z) => (inBody(x, y, z) ? 40 : -1000), lps, Int16Array);
  const label = makeVolume([1, 10, 8, 5], (_c, x, y, z) => (inBody(x, y, z) && x >= 4 ? 2 : 0), lps, Uint8Array);
  const steps = parseTransformChain([
    { orientation: 'RAS' },
    { spacing: [1.5, 1.5, 1.5] },
    { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
    { crop_foreground: { threshold: 0.3 } },
    { resize: { spatial_size: [16, 16, 8], align_corners: true } },
    { spatial_pad: [16, 20, 10] },
  ]);

  it('applies image and label variants step by step, with one crop box from the image', () => {
    const out = applyTransformChain(steps, { image, label });
    expect(out.steps.map((s) => s.kind)).toEqual(['orientation', 'spacing', 'scale_intensity_range', 'crop_foreground', 'resize', 'spatial_pad']);
    expect(out.steps[0]!.inputAxcodes).toBe('LPS');
    expect(out.steps[1]!.skipped).toBe(false);
    expect(out.steps[1]!.shape).toEqual([1, 19, 15, 9]);
    // body x 2..7 (LPS) → RAS x 2..7 → 1.5 mm 4..14; y 1..5 → 2..6 → 4..12; z 0..3 → 0..6
    expect(out.steps[3]!.box).toEqual({ start: [4, 4, 0], end: [15, 13, 7] });
    expect(out.steps[5]!.padWidth).toEqual([
      [0, 0],
      [0, 0],
      [2, 2],
      [1, 1],
    ]);
    expect(out.image.shape).toEqual([1, 16, 20, 10]);
    expect(out.image.data).toBeInstanceOf(Float32Array);
    const lab = out.label!;
    expect(lab.shape).toEqual(out.image.shape);
    expect(lab.affine).toEqual(out.image.affine);
    expect(lab.data).toBeInstanceOf(Uint8Array);
    expect(new Set(lab.data)).toEqual(new Set([0, 2]));
    // inside the (unpadded) body the image is 1 everywhere; the label only marks part of it
    for (const s of out.steps) expect(s.ms).toBeGreaterThanOrEqual(0);
  });

  it('without a label returns only the image', () => {
    const out = applyTransformChain(steps, { image });
    expect(out.label).toBeUndefined();
    expect(out.image.shape).toEqual([1, 16, 20, 10]);
  });

  it('refuses a label on a different grid at the crop', () => {
    const small = makeVolume([1, 9, 8, 5], () => 0, lps, Uint8Array);
    expect(() => applyTransformChain(steps, { image, label: small })).toThrow(/transforms\[3\] \(crop_foreground\): label grid/);
  });

  it('does not modify its inputs', () => {
    const before = Array.from(image.data);
    const aff = JSON.stringify(image.affine);
    applyTransformChain(steps, { image, label });
    expect(Array.from(image.data)).toEqual(before);
    expect(JSON.stringify(image.affine)).toBe(aff);
  });
});
