/**
 * The work of the VoCo crop loader (loader.ts) for one batch: for each of its volumes, read the
 * cached record, decode it, and draw its sample with the volume's own Rng straight into the
 * batch's packed arrays — so the main thread receives finished batches (transferred, not copied)
 * and never touches voxel data. Runs in a worker thread, or in the calling thread when the loader
 * has `workers: 0`.
 *
 * Module state (kept per thread): one file buffer, one decode buffer and one sampler, reused.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRng, type Rng } from '../util/rng.ts';
import { createDecodeBuffer, decodeVolume, readEncodedInfo } from '../volume/codec.ts';
import type { CropAugmentation } from './augment.ts';
import { baseCropCount, cropOutputShape, type VocoGeometry } from './geometry.ts';
import { VocoSampler, type VocoBatchArrays } from './sample.ts';

export interface VocoBatchTask {
  /** The batch's volumes in order; `slot` is the volume's position in the epoch's order. */
  volumes: { id: string; path: string; slot: number }[];
  geometry: VocoGeometry;
  augmentation: CropAugmentation;
  seed: number | string;
  epoch: number;
  /** Check each record's checksum (default true). */
  verify?: boolean;
}

/** The Rng of one volume's sample: depends on (seed, epoch, id, slot) only, never on which thread runs it. */
export function volumeRng(seed: number | string, epoch: number, id: string, slot: number): Rng {
  return createRng(seed, 'crop', epoch, id, slot);
}

/** An error about one loader item, naming its id and file. */
export class VocoItemError extends Error {
  override name = 'VocoItemError';
  constructor(
    readonly itemId: string,
    readonly file: string,
    message: string,
  ) {
    super(`voco crop loader: item "${itemId}" (${file}): ${message}`);
  }
}

let fileBuffer = Buffer.alloc(0);
let decodeOut: Float32Array | undefined;
let sampler: VocoSampler | undefined;
let samplerKey = '';

/** Reads a whole file into the reused buffer; the view is valid until the next call. */
function readWhole(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (fileBuffer.length < size) fileBuffer = Buffer.allocUnsafe(Math.ceil(size * 1.1));
    let at = 0;
    while (at < size) {
      const n = readSync(fd, fileBuffer, at, size - at, at);
      if (n === 0) throw new Error(`the file ended after ${at} of ${size} bytes`);
      at += n;
    }
    return fileBuffer.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

function decodeBufferFor(voxels: number): Float32Array {
  if (decodeOut?.length === voxels) return decodeOut;
  try {
    decodeOut = createDecodeBuffer(voxels, 'float32');
  } catch {
    decodeOut = new Float32Array(voxels); // WebAssembly codec unavailable: decode into an ordinary array
  }
  return decodeOut;
}

function samplerFor(geometry: VocoGeometry, augmentation: CropAugmentation): VocoSampler {
  const key = JSON.stringify([geometry, augmentation]);
  if (!sampler || key !== samplerKey) {
    sampler = new VocoSampler(geometry, augmentation);
    samplerKey = key;
  }
  return sampler;
}

/** Reads and decodes one region-shaped image record into this thread's decode buffer. */
function readRegionVolume(path: string, geometry: VocoGeometry, verify: boolean): Float32Array {
  const bytes = readWhole(path);
  const info = readEncodedInfo(bytes, { verify });
  const [C, X, Y, Z] = info.shape;
  const [RX, RY, RZ] = geometry.region;
  if (info.kind !== 'image') throw new Error(`the record holds a ${info.kind} volume, not an image`);
  if (C !== 1 || X !== RX || Y !== RY || Z !== RZ) {
    throw new Error(`the volume has shape [${info.shape.join(', ')}] but the geometry needs [1, ${RX}, ${RY}, ${RZ}]`);
  }
  return decodeVolume(bytes, { out: decodeBufferFor(info.voxels), verify: false }).data as Float32Array; // checked just above
}

/**
 * Produces one packed batch (layout of `packVocoBatch`). Throws a {@link VocoItemError} naming
 * the first volume that could not be read, decoded or sampled.
 */
export function loadVocoBatch(task: VocoBatchTask): VocoBatchArrays {
  const { geometry: g, volumes } = task;
  const s = samplerFor(g, task.augmentation);
  const [ox, oy, oz] = cropOutputShape(g);
  const n = ox * oy * oz;
  const R = g.numRandom;
  const K = baseCropCount(g);
  const B = volumes.length;
  const batch: VocoBatchArrays = {
    randomCrops: new Float32Array(B * R * n),
    randomCropsShape: [B * R, ox, oy, oz, 1],
    baseCrops: new Float32Array(B * K * n),
    baseCropsShape: [B * K, ox, oy, oz, 1],
    labels: new Float32Array(B * R * K),
    labelsShape: [B, R, K],
    centres: new Int32Array(B * R * 2),
  };
  volumes.forEach(({ id, path, slot }, b) => {
    try {
      const volume = readRegionVolume(path, g, task.verify ?? true);
      const sample = s.draw(volume, g.region, volumeRng(task.seed, task.epoch, id, slot), {
        randomCrops: batch.randomCrops.subarray(b * R * n, (b + 1) * R * n),
        baseCrops: batch.baseCrops.subarray(b * K * n, (b + 1) * K * n),
        labels: batch.labels.subarray(b * R * K, (b + 1) * R * K),
      });
      batch.centres.set(sample.centres.flat(), b * R * 2);
    } catch (e) {
      throw new VocoItemError(id, path, (e as Error)?.message ?? String(e));
    }
  });
  return batch;
}
