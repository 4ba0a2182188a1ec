import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../../src/util/rng.ts';
import { NO_AUGMENTATION, VOCO_V1_AUGMENTATION } from '../../src/voco/augment.ts';
import { VOCO_V1_GEOMETRY, baseCropBoxes, type VocoGeometry } from '../../src/voco/geometry.ts';
import { batchesPerEpoch, createVocoLoader, epochItemOrder, type VocoBatch, type VocoLoaderItem, type VocoLoaderOptions } from '../../src/voco/loader.ts';
import { volumeRng } from '../../src/voco/loader-worker.ts';
import { drawVocoSample, extractCrop, packVocoBatch } from '../../src/voco/sample.ts';
import { decodeVolume, encodeVolume } from '../../src/volume/codec.ts';
import { identityAffine } from '../../src/volume/volume.ts';
import { tempDir } from '../helpers.ts';
import { SMALL } from './small-geometry.ts';


let dir: string;
let items: VocoLoaderItem[];

function writeVolume(path: string, shape: [number, number, number, number], seed: number): void {
  const rng = createRng(seed, 'loader-volume');
  const data = Float32Array.from({ length: shape[0] * shape[1] * shape[2] * shape[3] }, () => rng.float());
  writeFileSync(path, encodeVolume({ data, shape, affine: identityAffine() }, { kind: 'image' }).bytes);
}

beforeAll(() => {
  dir = tempDir('voco-loader-');
  items = Array.from({ length: 7 }, (_, i) => ({ id: `case${i}`, path: join(dir, `case${i}.voco`) }));
  items.forEach((it, i) => writeVolume(it.path, [1, 32, 32, 8], i));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = (): VocoLoaderOptions => ({
  items,
  geometry: SMALL,
  augmentation: VOCO_V1_AUGMENTATION,
  seed: 1234,
  batchVolumes: 2,
  epochOrder: 'shuffle',
  workers: 0,
  prefetch: 2,
});

async function take(opts: VocoLoaderOptions, n: number): Promise<VocoBatch[]> {
  const loader = createVocoLoader(opts);
  try {
    const out: VocoBatch[] = [];
    for (let i = 0; i < n; i++) out.push(await loader.nextBatch());
    return out;
  } finally {
    await loader.close();
  }
}

/** Everything that must be identical, as comparable bytes. */
const fingerprint = (b: VocoBatch) => ({
  batchIndex: b.batchIndex,
  epoch: b.epoch,
  itemIds: b.itemIds,
  random: Buffer.from(b.randomCrops.buffer, b.randomCrops.byteOffset, b.randomCrops.byteLength).toString('base64'),
  base: Buffer.from(b.baseCrops.buffer, b.baseCrops.byteOffset, b.baseCrops.byteLength).toString('base64'),
  labels: Array.from(b.labels),
  centres: Array.from(b.centres),
});

describe('VoCo crop loader: order and content', () => {
  it('visits each epoch in its Fisher–Yates order with drop_last, and samples each volume with its own (seed, epoch, id, slot) Rng', async () => {
    const batches = await take(base(), 7);
    expect(batchesPerEpoch(7, 2)).toBe(3);
    for (const b of batches) {
      const epoch = Math.floor(b.batchIndex / 3);
      const order = epochItemOrder(7, 1234, epoch, 'shuffle');
      expect(order).toEqual(createRng(1234, 'order', epoch).shuffle([0, 1, 2, 3, 4, 5, 6]));
      const slots = [2 * (b.batchIndex % 3), 2 * (b.batchIndex % 3) + 1];
      expect(b.epoch).toBe(epoch);
      expect(b.batchInEpoch).toBe(b.batchIndex % 3);
      expect(b.itemIds).toEqual(slots.map((s) => `case${order[s]}`));
      const samples = slots.map((slot, v) => {
        const vol = decodeVolume(readFileSync(join(dir, `${b.itemIds[v]}.voco`)));
        return drawVocoSample(vol.data as Float32Array, [32, 32, 8], SMALL, VOCO_V1_AUGMENTATION, volumeRng(1234, epoch, b.itemIds[v]!, slot));
      });
      const expected = packVocoBatch(samples, SMALL);
      expect(fingerprint(b)).toEqual(fingerprint({ ...b, ...expected }));
      expect(b.randomCropsShape).toEqual([4, 8, 8, 4, 1]);
      expect(b.baseCropsShape).toEqual([8, 8, 8, 4, 1]);
      expect(b.labelsShape).toEqual([2, 2, 4]);
    }
    expect(batches.map((b) => b.batchIndex)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // each epoch leaves out exactly one item (7 items, batches of 2)
    const epoch0 = batches.slice(0, 3).flatMap((b) => b.itemIds);
    expect(new Set(epoch0).size).toBe(6);
    expect(epoch0).not.toEqual(batches.slice(3, 6).flatMap((b) => b.itemIds));
  });

  it("'sequential' keeps list order every epoch", async () => {
    const batches = await take({ ...base(), epochOrder: 'sequential', batchVolumes: 3 }, 4);
    expect(batches.map((b) => b.itemIds)).toEqual([
      ['case0', 'case1', 'case2'],
      ['case3', 'case4', 'case5'],
      ['case0', 'case1', 'case2'],
      ['case3', 'case4', 'case5'],
    ]);
    // same items, different epoch: different crops
    expect(fingerprint(batches[0]!).base).not.toEqual(fingerprint(batches[2]!).base);
  });

  it('gives the same bytes with 0, 1 and 2 workers and any prefetch', async () => {
    const ref = (await take(base(), 5)).map(fingerprint);
    expect((await take({ ...base(), workers: 1, prefetch: 1 }, 5)).map(fingerprint)).toEqual(ref);
    expect((await take({ ...base(), workers: 2, prefetch: 3 }, 5)).map(fingerprint)).toEqual(ref);
  });

  it('startBatch resumes exactly where an uninterrupted run would be', async () => {
    const full = (await take(base(), 8)).map(fingerprint);
    expect((await take({ ...base(), startBatch: 4 }, 4)).map(fingerprint)).toEqual(full.slice(4));
    expect((await take({ ...base(), startBatch: 2, workers: 2 }, 6)).map(fingerprint)).toEqual(full.slice(2));
  });

  it('stops at endBatch and works as an async iterable', async () => {
    const loader = createVocoLoader({ ...base(), startBatch: 1, endBatch: 4, workers: 1 });
    const seen: number[] = [];
    for await (const b of loader) seen.push(b.batchIndex);
    expect(seen).toEqual([1, 2, 3]);
    expect(await loader.next()).toEqual({ done: true, value: undefined });
    await loader.close();
  });

  it('a single-volume batch with the real v1 geometry: 2 + 16 crops of 64³ (synthetic 384×384×96)', async () => {
    const path = join(dir, 'v1.voco');
    const shape = VOCO_V1_GEOMETRY.region;
    const data = new Float32Array(shape[0] * shape[1] * shape[2]);
    for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.5 * Math.sin(i * 0.0007);
    writeFileSync(path, encodeVolume({ data, shape: [1, ...shape], affine: identityAffine() }, { kind: 'image' }).bytes);
    const t0 = performance.now();
    const [b] = await take({ ...base(), items: [{ id: 'v1', path }], geometry: VOCO_V1_GEOMETRY, augmentation: NO_AUGMENTATION, batchVolumes: 1 }, 1);
    const ms = performance.now() - t0;
    expect(b!.randomCropsShape).toEqual([2, 64, 64, 64, 1]);
    expect(b!.baseCropsShape).toEqual([16, 64, 64, 64, 1]);
    expect(b!.labelsShape).toEqual([1, 2, 16]);
    const decoded = decodeVolume(readFileSync(path)).data as Float32Array;
    const k = 5;
    const expected = extractCrop(decoded, shape, baseCropBoxes(VOCO_V1_GEOMETRY)[k]!, [64, 64, 64]);
    expect(b!.baseCrops.subarray(k * 64 ** 3, (k + 1) * 64 ** 3)).toEqual(expected);
    expect(ms).toBeLessThan(3000);
  });
});

describe('VoCo crop loader: errors and lifecycle', () => {
  it('rejects next() with the item id and file when a record is missing or corrupt, then carries on', async () => {
    const corrupt = join(dir, 'corrupt.voco');
    const bytes = readFileSync(items[0]!.path);
    bytes[bytes.length - 5]! ^= 0xff;
    writeFileSync(corrupt, bytes);
    const missing = join(dir, 'missing.voco');
    for (const workers of [0, 1]) {
      for (const [id, path, why] of [['bad', corrupt, /checksum|crc/i], ['gone', missing, /ENOENT/]] as const) {
        const loader = createVocoLoader({ ...base(), workers, items: [{ id, path }, items[1]!, items[2]!, items[3]!], epochOrder: 'sequential' });
        try {
          const err = await loader.next().then(
            () => null,
            (e: Error) => e,
          );
          expect(err).toBeInstanceOf(Error);
          expect(err!.message).toContain(`item "${id}"`);
          expect(err!.message).toContain(path);
          expect(err!.message).toMatch(why);
          expect((await loader.nextBatch()).itemIds).toEqual(['case2', 'case3']);
        } finally {
          await loader.close();
        }
      }
    }
  });

  it('rejects a record whose shape is not the region', async () => {
    const path = join(dir, 'wrong-shape.voco');
    writeVolume(path, [1, 32, 32, 9], 99);
    const loader = createVocoLoader({ ...base(), items: [{ id: 'odd', path }], batchVolumes: 1 });
    await expect(loader.next()).rejects.toThrow(/item "odd" .*shape \[1, 32, 32, 9\] but the geometry needs \[1, 32, 32, 8\]/);
    await loader.close();
  });

  it('validates its options', () => {
    expect(() => createVocoLoader({ ...base(), batchVolumes: 8 })).toThrow(/batchVolumes 8 is more than the 7 items/);
    expect(() => createVocoLoader({ ...base(), workers: -1, prefetch: 0 })).toThrow(/workers must be an integer ≥ 0[\s\S]*prefetch must be a positive integer/);
    expect(() => createVocoLoader({ ...base(), items: [] })).toThrow(/items must be a non-empty list/);
    expect(() => createVocoLoader({ ...base(), geometry: { ...SMALL, grid: [3, 2] } })).toThrow(/invalid VoCo geometry/);
  });

  it('close() stops the workers; a pending next() rejects and next() after close throws', async () => {
    const loader = createVocoLoader({ ...base(), workers: 2, prefetch: 2 });
    const pending = expect(loader.next()).rejects.toThrow(/closed/);
    await loader.close();
    await pending;
    await expect(loader.next()).rejects.toThrow(/after close/);
  });
});
