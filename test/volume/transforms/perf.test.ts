/**
 * Timings at the sizes of the real chains (printed only; nothing is asserted about time).
 */
import { describe, expect, it } from 'vitest';
import { cropForeground, orientation, resize, scaleIntensityRange, spacing, spatialPad } from '../../../src/volume/transforms/index.ts';
import type { Affine } from '../../../src/volume/volume.ts';
import { diagAffine, makeVolume } from './synthetic.ts';

function time(fn: () => unknown, reps = 3): { median: number; all: number[] } {
  const all: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    all.push(performance.now() - t);
  }
  const s = [...all].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, all };
}

describe('transform timings (console only)', () => {
  it('prints median times over 3 runs', () => {
    const ct = makeVolume([1, 122, 101, 112], (_c, x, y, z) => ((x * 7919 + y * 104729 + z * 1299709) % 4000) - 1200, diagAffine(3, 3, 3, [-178, 11, 94]));
    const lps = { ...ct, affine: diagAffine(-3, -3, 3, [178, 300, 94]) };
    const label = makeVolume([1, 122, 101, 112], (_c, x, y, z) => (x + y + z) % 117, ct.affine, Uint8Array);
    const crop = makeVolume([1, 122, 96, 112], (_c, x, y, z) => ((x + 3 * y + 7 * z) % 100) / 100, ct.affine);
    const shear: Affine = [
      [3, 0.3, 0, 0],
      [0, 3, 0.2, 0],
      [0, 0, 3, 0],
      [0, 0, 0, 1],
    ];
    const rows: [string, () => unknown][] = [
      ['orientation LPS→RAS 122×101×112', () => orientation(lps, 'RAS')],
      ['spacing 3→1.5 mm bilinear 122×101×112 → 243×201×223', () => spacing(ct, [1.5, 1.5, 1.5])],
      ['spacing 3→1.5 mm nearest (label, uint8)', () => spacing(label, [1.5, 1.5, 1.5], 'nearest')],
      ['spacing 3→1.5 mm bilinear, sheared affine (per-voxel path)', () => spacing({ ...ct, affine: shear }, [1.5, 1.5, 1.5])],
      ['scale_intensity_range 243×201×223', () => scaleIntensityRange({ ...ct, data: new Float32Array(243 * 201 * 223), shape: [1, 243, 201, 223] }, { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true })],
      ['crop_foreground 122×101×112', () => cropForeground(ct, { threshold: 0.3 })],
      ['resize trilinear 122×96×112 → 384×384×96', () => resize(crop, [384, 384, 96], { alignCorners: true })],
      ['resize nearest (label) → 384×384×96', () => resize(label, [384, 384, 96], { mode: 'nearest' })],
      ['spatial_pad 241×191×59 → 241×191×96', () => spatialPad({ ...crop, data: new Float32Array(241 * 191 * 59), shape: [1, 241, 191, 59] }, [96, 96, 96])],
    ];
    const lines: string[] = [];
    for (const [name, fn] of rows) {
      const t = time(fn);
      lines.push(`${name.padEnd(62)} median ${t.median.toFixed(1).padStart(7)} ms  (runs ${t.all.map((x) => x.toFixed(0)).join(', ')})`);
    }
    console.log(`transform timings (Node ${process.version}):\n  ${lines.join('\n  ')}`);
    expect(lines.length).toBe(rows.length);
  });
});
