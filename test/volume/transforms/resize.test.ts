import { describe, expect, it } from 'vitest';
import { resize, resizeAffine } from '../../../src/volume/transforms/index.ts';
import { at, diagAffine, makeVolume } from './synthetic.ts';

const line = (vals: number[]) => makeVolume([1, vals.length, 1, 1], (_c, x) => vals[x]!, diagAffine(3, 3, 3, [1, 2, 3]));

describe('resize', () => {
  it('trilinear with align_corners maps the corners onto each other', () => {
    const r = resize(line([0, 10]), [3, 1, 1], { alignCorners: true }).volume;
    expect(Array.from(r.data)).toEqual([0, 5, 10]);
    expect(r.data).toBeInstanceOf(Float32Array);
  });

  it('trilinear without align_corners uses half-pixel centres (torch default)', () => {
    const r = resize(line([0, 10]), [4, 1, 1]).volume;
    expect(Array.from(r.data)).toEqual([0, 2.5, 7.5, 10]);
    const d = resize(line([0, 10, 20, 30]), [2, 1, 1]).volume;
    expect(Array.from(d.data)).toEqual([5, 25]);
  });

  it('"bilinear" is accepted as MONAI\'s name for trilinear', () => {
    const a = resize(line([0, 10, 4]), [5, 1, 1], { mode: 'bilinear', alignCorners: true }).volume;
    const b = resize(line([0, 10, 4]), [5, 1, 1], { mode: 'trilinear', alignCorners: true }).volume;
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
  });

  it('trilinear in 3-D interpolates each axis', () => {
    const v = makeVolume([1, 2, 2, 2], (_c, x, y, z) => x + 2 * y + 4 * z, diagAffine(1, 1, 1));
    const r = resize(v, [3, 3, 3], { alignCorners: true }).volume;
    for (let x = 0; x < 3; x++) for (let y = 0; y < 3; y++) for (let z = 0; z < 3; z++) expect(at(r, 0, x, y, z)).toBeCloseTo(x / 2 + y + 2 * z, 6);
  });

  it('nearest follows torch (floor(o·in/out), exact 2× = o >> 1) and keeps the type', () => {
    const lab = makeVolume([1, 3, 2, 1], (_c, x, y) => 10 * x + y, diagAffine(1, 1, 1), Uint8Array);
    const r = resize(lab, [5, 4, 1], { mode: 'nearest' }).volume;
    expect(r.data).toBeInstanceOf(Uint8Array);
    const xs = [0, 1, 2, 3, 4].map((x) => at(r, 0, x, 0, 0));
    expect(xs).toEqual([0, 0, 10, 10, 20]);
    const ys = [0, 1, 2, 3].map((y) => at(r, 0, 0, y, 0));
    expect(ys).toEqual([0, 0, 1, 1]);
    const down = resize(lab, [2, 2, 1], { mode: 'nearest' }).volume;
    expect(Array.from(down.data)).toEqual([0, 1, 10, 11]);
  });

  it('affine: A·S with S = diag(in/out), translation (s − 1)/2, whatever align_corners is', () => {
    const a = diagAffine(3, 3, 3, [-177.95632934570312, 11.319000244140625, 94.3017578125]);
    const expected = [
      [0.953125, 0, 0, -178.97976684570312],
      [0, 0.75, 0, 10.194000244140625],
      [0, 0, 3.5, 94.5517578125],
      [0, 0, 0, 1],
    ];
    const got = resizeAffine(a, [122, 96, 112], [384, 384, 96]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) expect(got[i]![j]!).toBeCloseTo(expected[i]![j]!, 9);
    const v = makeVolume([1, 4, 2, 2], () => 1, a);
    expect(resize(v, [8, 2, 2], { alignCorners: true }).volume.affine).toEqual(resize(v, [8, 2, 2], { alignCorners: false }).volume.affine);
  });

  it('-1 keeps an axis; the same size returns the input unchanged', () => {
    const v = makeVolume([1, 4, 3, 2], (_c, x, y, z) => x + y + z, diagAffine(1, 1, 1), Int16Array);
    expect(resize(v, [8, -1, -1]).volume.shape).toEqual([1, 8, 3, 2]);
    const same = resize(v, [4, 3, 2]).volume;
    expect(same.data).toBe(v.data);
    expect(same.affine).toEqual(v.affine);
  });

  it('rejects bad sizes and empty inputs', () => {
    const v = makeVolume([1, 2, 2, 2], () => 0);
    expect(() => resize(v, [0, 2, 2])).toThrow(/positive integers or -1/);
    expect(() => resize(v, [2, 2])).toThrow(/3 entries/);
    expect(() => resize({ ...v, data: new Float32Array(0), shape: [1, 0, 0, 0] }, [2, 2, 2])).toThrow(/empty/);
    expect(() => resize(v, [3, 3, 3], { mode: 'cubic' as never })).toThrow(/unknown mode/);
  });
});
