import { describe, expect, it } from 'vitest';
import { createRng } from '../../src/util/rng.ts';
import { NO_AUGMENTATION, VOCO_V1_AUGMENTATION, VOCO_V2_AUGMENTATION, augmentCrop } from '../../src/voco/augment.ts';
import {
  VOCO_V1_GEOMETRY,
  VOCO_V2_GEOMETRY,
  baseCropBoxes,
  drawRandomCentre,
  positionLabels,
  randomCropBox,
  type CropBox,
  type VocoGeometry,
} from '../../src/voco/geometry.ts';
import { CropResizer, VocoSampler, allocateSampleBuffers, drawVocoSample, extractCrop, packVocoBatch } from '../../src/voco/sample.ts';
import { resize } from '../../src/volume/transforms/resize.ts';
import { identityAffine } from '../../src/volume/volume.ts';
import { SMALL } from './small-geometry.ts';

const SMALL_NO_RESIZE: VocoGeometry = { ...SMALL, cropOut: null };

function randomVolume(shape: readonly [number, number, number], seed: number): Float32Array {
  const rng = createRng(seed, 'volume');
  return Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, () => rng.float());
}

/** The box copied voxel by voxel (reference for crop extraction). */
function cutBox(vol: Float32Array, shape: readonly [number, number, number], box: CropBox): Float32Array {
  const [, Y, Z] = shape;
  const out = new Float32Array(box.size[0] * box.size[1] * box.size[2]);
  let i = 0;
  for (let x = 0; x < box.size[0]; x++) {
    for (let y = 0; y < box.size[1]; y++) {
      for (let z = 0; z < box.size[2]; z++) out[i++] = vol[((box.start[0] + x) * Y + box.start[1] + y) * Z + box.start[2] + z]!;
    }
  }
  return out;
}

/** resize() (MONAI Resize, trilinear, align_corners=True) of the cut-out box. */
function resizeReference(vol: Float32Array, shape: readonly [number, number, number], box: CropBox, out: readonly number[]): Float32Array {
  const crop = cutBox(vol, shape, box);
  const r = resize({ data: crop, shape: [1, ...box.size], affine: identityAffine() }, out, { mode: 'trilinear', alignCorners: true });
  return r.volume.data;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('CropResizer', () => {
  it('is bit-identical to resize() of the cut-out crop (down, up, identity axes)', () => {
    const shape = [40, 36, 20] as const;
    const vol = randomVolume(shape, 1);
    const cases: [CropBox, [number, number, number]][] = [
      [{ start: [3, 5, 2], size: [24, 20, 12] }, [16, 10, 7]],
      [{ start: [0, 0, 0], size: [40, 36, 20] }, [17, 36, 9]],
      [{ start: [10, 1, 4], size: [9, 7, 5] }, [20, 7, 11]],
      [{ start: [16, 16, 0], size: [24, 20, 20] }, [24, 20, 8]],
      [{ start: [7, 2, 3], size: [6, 6, 6] }, [6, 6, 6]],
    ];
    for (const [box, out] of cases) {
      const mine = new CropResizer(box.size, out).resizeInto(vol, shape, box.start, new Float32Array(out[0] * out[1] * out[2]));
      expect(bits(mine).equals(bits(resizeReference(vol, shape, box, out)))).toBe(true);
    }
  });

  it('v1: a 96³ crop of a 384×384×96 volume resized to 64³ equals resize() bit for bit', () => {
    const shape = VOCO_V1_GEOMETRY.region;
    const vol = randomVolume(shape, 2);
    for (const box of [baseCropBoxes(VOCO_V1_GEOMETRY)[6]!, randomCropBox([150, 200], VOCO_V1_GEOMETRY)]) {
      const mine = extractCrop(vol, shape, box, [64, 64, 64]);
      expect(bits(mine).equals(bits(resizeReference(vol, shape, box, [64, 64, 64])))).toBe(true);
    }
  });

  it('copies the box when there is nothing to resize, and rejects boxes outside the volume', () => {
    const shape = [10, 9, 8] as const;
    const vol = randomVolume(shape, 3);
    const box: CropBox = { start: [2, 3, 1], size: [5, 4, 6] };
    expect(extractCrop(vol, shape, box)).toEqual(cutBox(vol, shape, box));
    expect(() => extractCrop(vol, shape, { start: [6, 0, 0], size: [5, 4, 6] })).toThrow(/box \[6, 0, 0\] \+ \[5, 4, 6\] is outside the volume \[10, 9, 8\]/);
  });
});

describe('drawVocoSample', () => {
  it('without resize or augmentation, every crop is exactly its box of the volume', () => {
    const g = SMALL_NO_RESIZE;
    const vol = randomVolume(g.region, 4);
    const s = drawVocoSample(vol, g.region, g, NO_AUGMENTATION, createRng(9, 'sample'));
    expect(s.randomCrops).toHaveLength(2);
    expect(s.baseCrops).toHaveLength(4);
    s.centres.forEach((c, r) => {
      expect(c[0] >= 8 && c[0] < 25 && c[1] >= 8 && c[1] < 25).toBe(true);
      expect(s.randomCrops[r]).toEqual(cutBox(vol, g.region, randomCropBox(c, g)));
    });
    baseCropBoxes(g).forEach((box, k) => expect(s.baseCrops[k]).toEqual(cutBox(vol, g.region, box)));
    // base crop 1 is i = 0, j = 1: x ∈ [0, 16), y ∈ [16, 32)
    expect(s.baseCrops[1]![0]).toBe(vol[16 * 8]);
  });

  it('labels are the position labels of the drawn centres (float32), rows summing to 1', () => {
    const g = SMALL;
    const vol = randomVolume(g.region, 5);
    for (let t = 0; t < 20; t++) {
      const s = drawVocoSample(vol, g.region, g, VOCO_V1_AUGMENTATION, createRng(t, 'labels'));
      expect(s.labels).toHaveLength(2 * 4);
      s.centres.forEach((c, r) => {
        const row = s.labels.subarray(r * 4, r * 4 + 4);
        expect(row).toEqual(Float32Array.from(positionLabels(c, g)));
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      });
    }
  });

  it('follows the documented draw order: centres, then 7 draws per random crop, then per base crop', () => {
    const g = SMALL;
    const vol = randomVolume(g.region, 6);
    const aug = { flipProb: 0.5, rotate90Prob: 0.5, shiftProb: 0.5, shiftOffset: 0.1 };
    const s = drawVocoSample(vol, g.region, g, aug, createRng(42, 'order'));
    const rng = createRng(42, 'order');
    const centres = [drawRandomCentre(g, rng), drawRandomCentre(g, rng)];
    expect(s.centres).toEqual(centres);
    centres.forEach((c, r) => {
      const crop = resizeReference(vol, g.region, randomCropBox(c, g), [8, 8, 4]);
      augmentCrop(crop, [8, 8, 4], aug, rng);
      expect(s.randomCrops[r]).toEqual(crop);
    });
    baseCropBoxes(g).forEach((box, k) => {
      const crop = resizeReference(vol, g.region, box, [8, 8, 4]);
      augmentCrop(crop, [8, 8, 4], aug, rng);
      expect(s.baseCrops[k]).toEqual(crop);
    });
  });

  it('is deterministic for a seed, writes into caller buffers, and reuses a sampler', () => {
    const g = SMALL;
    const vol = randomVolume(g.region, 7);
    const a = drawVocoSample(vol, g.region, g, VOCO_V2_AUGMENTATION, createRng(1, 'x'));
    const sampler = new VocoSampler(g, VOCO_V2_AUGMENTATION);
    const bufs = allocateSampleBuffers(g);
    sampler.draw(randomVolume(g.region, 8), g.region, createRng(2, 'x'), bufs); // scratch reuse must not leak
    const b = sampler.draw(vol, g.region, createRng(1, 'x'), bufs);
    expect(b.randomCrops[1]!.buffer).toBe(bufs.randomCrops.buffer);
    expect(b.labels).toBe(bufs.labels);
    expect(b.centres).toEqual(a.centres);
    b.randomCrops.forEach((c, r) => expect(c).toEqual(a.randomCrops[r]));
    b.baseCrops.forEach((c, k) => expect(c).toEqual(a.baseCrops[k]));
    const c = drawVocoSample(vol, g.region, g, VOCO_V2_AUGMENTATION, createRng(2, 'x'));
    expect(c.baseCrops.map((x) => Array.from(x))).not.toEqual(a.baseCrops.map((x) => Array.from(x)));
  });

  it('rejects a volume of the wrong shape, naming expected and actual', () => {
    const vol = new Float32Array(32 * 32 * 9);
    expect(() => drawVocoSample(vol, [32, 32, 9], SMALL, NO_AUGMENTATION, createRng(1))).toThrow(/region shape \[32, 32, 8\], got \[32, 32, 9\]/);
    expect(() => drawVocoSample(new Float32Array(10), [32, 32, 8], SMALL, NO_AUGMENTATION, createRng(1))).toThrow(/has 10 voxels but shape \[32, 32, 8\] needs 8192/);
  });

  it('v1 geometry on a synthetic 384×384×96 volume: 2 + 16 crops of 64³ (time-boxed)', () => {
    const g = VOCO_V1_GEOMETRY;
    const vol = randomVolume(g.region, 9);
    const sampler = new VocoSampler(g, VOCO_V1_AUGMENTATION);
    const t0 = performance.now();
    const s = sampler.draw(vol, g.region, createRng(3, 'v1'));
    const ms = performance.now() - t0;
    expect(s.randomCrops.map((c) => c.length)).toEqual([64 ** 3, 64 ** 3]);
    expect(s.baseCrops).toHaveLength(16);
    expect(s.labels).toHaveLength(32);
    expect(ms).toBeLessThan(3000);
    const plain = drawVocoSample(vol, g.region, g, NO_AUGMENTATION, createRng(3, 'v1'));
    const k = 9;
    expect(bits(plain.baseCrops[k]!).equals(bits(resizeReference(vol, g.region, baseCropBoxes(g)[k]!, [64, 64, 64])))).toBe(true);
  });

  it('v2 geometry: 64³ crops without resize', () => {
    const g = VOCO_V2_GEOMETRY;
    const vol = randomVolume(g.region, 10);
    const s = drawVocoSample(vol, g.region, g, NO_AUGMENTATION, createRng(1, 'v2'));
    expect(s.baseCrops).toHaveLength(9);
    expect(bits(s.baseCrops[8]!).equals(bits(cutBox(vol, g.region, { start: [128, 128, 0], size: [64, 64, 64] })))).toBe(true);
    expect(s.labels).toHaveLength(18);
  });
});

describe('packVocoBatch', () => {
  it('packs channels-last, volume-major: b0r0, b0r1, b1r0 …; b0k0 … b0k3, b1k0 …; labels [B, R, K]', () => {
    const g = SMALL;
    const samples = [11, 12, 13].map((seed) => drawVocoSample(randomVolume(g.region, seed), g.region, g, VOCO_V1_AUGMENTATION, createRng(seed)));
    const batch = packVocoBatch(samples, g);
    const n = 8 * 8 * 4;
    expect(batch.randomCropsShape).toEqual([6, 8, 8, 4, 1]);
    expect(batch.baseCropsShape).toEqual([12, 8, 8, 4, 1]);
    expect(batch.labelsShape).toEqual([3, 2, 4]);
    expect(batch.randomCrops).toHaveLength(6 * n);
    expect(batch.baseCrops).toHaveLength(12 * n);
    samples.forEach((s, b) => {
      s.randomCrops.forEach((c, r) => expect(batch.randomCrops.subarray((2 * b + r) * n, (2 * b + r + 1) * n)).toEqual(c));
      s.baseCrops.forEach((c, k) => expect(batch.baseCrops.subarray((4 * b + k) * n, (4 * b + k + 1) * n)).toEqual(c));
      expect(batch.labels.subarray(8 * b, 8 * b + 8)).toEqual(s.labels);
      expect(Array.from(batch.centres.subarray(4 * b, 4 * b + 4))).toEqual(s.centres.flat());
    });
  });

  it('rejects samples that do not match the geometry', () => {
    const s = drawVocoSample(randomVolume(SMALL.region, 1), SMALL.region, SMALL, NO_AUGMENTATION, createRng(1));
    expect(() => packVocoBatch([s], { ...SMALL, numRandom: 3 })).toThrow(/sample 0 has 2 random crops/);
    expect(() => packVocoBatch([], SMALL)).toThrow(/no samples/);
  });
});
