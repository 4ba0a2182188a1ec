/**
 * VoCo crop sampler and prefetching crop loader throughput.
 *
 *   node bin/run-ts.js bench/crop-loader.bench.ts [--batches N]
 *
 * Volumes are synthetic (smooth structure plus noise in [0, 1], encoded with the cache codec),
 * written to a temp dir. Rows:
 * - sampler: VocoSampler.draw on an in-memory volume, this thread (cut + resize + augment only);
 * - loader: VocoCropLoader over the records (read + checksum + decode + sample + pack), batches of
 *   2 volumes, prefetch 2, timed from the first batch received (worker start-up excluded) over
 *   --batches batches (default 12).
 * crops/s counts every crop a model sees: per volume numRandom + gx·gy (v1: 18, v2: 11).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createRng } from '../src/util/rng.ts';
import { VOCO_V1_AUGMENTATION, VOCO_V2_AUGMENTATION, type CropAugmentation } from '../src/voco/augment.ts';
import { VOCO_V1_GEOMETRY, VOCO_V2_GEOMETRY, type VocoGeometry } from '../src/voco/geometry.ts';
import { createVocoLoader } from '../src/voco/loader.ts';
import { VocoSampler, allocateSampleBuffers } from '../src/voco/sample.ts';
import { encodeVolume } from '../src/volume/codec.ts';
import { identityAffine } from '../src/volume/volume.ts';
import { printTable, type BenchRow } from './table.ts';

function syntheticVolume(g: VocoGeometry, seed: number): Float32Array {
  const [X, Y, Z] = g.region;
  const rng = createRng(seed, 'crop-loader-bench');
  const data = new Float32Array(X * Y * Z);
  let i = 0;
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      for (let z = 0; z < Z; z++) {
        const v = 0.5 + 0.3 * Math.sin(x * 0.05 + seed) * Math.cos(y * 0.07) + 0.1 * Math.sin(z * 0.2) + 0.05 * (rng.float() - 0.5);
        data[i++] = Math.min(1, Math.max(0, v));
      }
    }
  }
  return data;
}

const cropsPerVolume = (g: VocoGeometry) => g.numRandom + g.grid[0] * g.grid[1];

function benchSampler(name: string, g: VocoGeometry, a: CropAugmentation): BenchRow {
  const vol = syntheticVolume(g, 1);
  const sampler = new VocoSampler(g, a);
  const out = allocateSampleBuffers(g);
  for (let i = 0; i < 3; i++) sampler.draw(vol, g.region, createRng(i), out);
  const reps = 10;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) sampler.draw(vol, g.region, createRng(i), out);
  const msPerVolume = (performance.now() - t0) / reps;
  return { bench: 'crop-loader', case: `${name} sampler (1 thread)`, value: (cropsPerVolume(g) * 1000) / msPerVolume, unit: 'crops/s', note: `${msPerVolume.toFixed(1)} ms/volume` };
}

async function benchLoader(name: string, g: VocoGeometry, a: CropAugmentation, paths: string[], workers: number, batches: number): Promise<BenchRow> {
  const loader = createVocoLoader({
    items: paths.map((path, i) => ({ id: `v${i}`, path })),
    geometry: g,
    augmentation: a,
    seed: 1,
    batchVolumes: 2,
    epochOrder: 'shuffle',
    workers,
    prefetch: 2,
  });
  try {
    await loader.nextBatch(); // workers started and warm
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) await loader.nextBatch();
    const s = (performance.now() - t0) / 1000;
    return { bench: 'crop-loader', case: `${name} loader, ${workers} worker${workers === 1 ? '' : 's'}`, value: (batches * 2 * cropsPerVolume(g)) / s, unit: 'crops/s', note: `${((batches * 2) / s).toFixed(1)} volumes/s` };
  } finally {
    await loader.close();
  }
}

export async function benchCropLoader(batches = 12): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'voco-crop-bench-'));
  try {
    for (const [name, g, a] of [['v1', VOCO_V1_GEOMETRY, VOCO_V1_AUGMENTATION], ['v2', VOCO_V2_GEOMETRY, VOCO_V2_AUGMENTATION]] as const) {
      rows.push(benchSampler(name, g, a));
      const paths = [0, 1, 2, 3].map((i) => {
        const path = join(dir, `${name}-${i}.voco`);
        writeFileSync(path, encodeVolume({ data: syntheticVolume(g, i), shape: [1, ...g.region], affine: identityAffine() }, { kind: 'image' }).bytes);
        return path;
      });
      for (const workers of [0, 1, 2]) rows.push(await benchLoader(name, g, a, paths, workers, batches));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv.some((a) => a.endsWith('crop-loader.bench.ts'))) {
  const batchesArg = process.argv.indexOf('--batches');
  printTable(await benchCropLoader(batchesArg > 0 ? Number(process.argv[batchesArg + 1]) : 12));
}
