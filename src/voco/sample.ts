/**
 * One VoCo training sample from one region-sized volume (REFERENCE §1.3, §2.1): numRandom random
 * crops with their position labels and gx·gy base crops, each cut, resized to `cropOut`
 * (trilinear, align_corners=True, bit-identical to `resize()` of the cut-out crop) and augmented.
 *
 * Random draws, in this order, from the one Rng passed in:
 * 1. the random crop centres: cx then cy for r = 0 … numRandom − 1 (rng.int over randomCentreRange);
 * 2. 7 augmentation draws per random crop, r = 0 … numRandom − 1 (see augment.ts);
 * 3. 7 augmentation draws per base crop, k = 0 … gx·gy − 1.
 *
 * Crops are cut and resized in one pass over the volume (no intermediate copy of the crop), with
 * reusable scratch held by a {@link VocoSampler}; results can go into caller-owned buffers.
 */
import type { Rng } from '../util/rng.ts';
import { torchLinearTable } from '../volume/transforms/resize.ts';
import type { LinearAxisTableF32 } from '../volume/transforms/resample.ts';
import { augmentCrop, validateAugmentation, type CropAugmentation } from './augment.ts';
import {
  baseCropBoxes,
  baseCropCount,
  cropOutputShape,
  drawRandomCentre,
  positionLabels,
  randomCropBox,
  validateGeometry,
  type CropBox,
  type Vec3,
  type VocoGeometry,
} from './geometry.ts';

export interface VocoSample {
  /** numRandom crops, each cropOut voxels in C order [ox, oy, oz]. */
  randomCrops: Float32Array[];
  /** gx·gy crops in order k = gy·i + j. */
  baseCrops: Float32Array[];
  /** numRandom × gx·gy, row-major. */
  labels: Float32Array;
  /** The random crops' in-plane centres. */
  centres: [number, number][];
}

/** Caller-owned outputs for one sample: crops packed one after another. */
export interface VocoSampleBuffers {
  /** numRandom · cropVoxels */
  randomCrops: Float32Array;
  /** gx·gy · cropVoxels */
  baseCrops: Float32Array;
  /** numRandom · gx·gy */
  labels: Float32Array;
}

// ---------------------------------------------------------------------------------------------
// Crop + resize in one pass

function isIdentity(t: LinearAxisTableF32, nIn: number): boolean {
  if (t.i0.length !== nIn) return false;
  for (let o = 0; o < nIn; o++) if (t.i0[o] !== o || t.w1[o] !== 0 || t.w0[o] !== 1) return false;
  return true;
}

/** A strided view of [nx, ny, nz] voxels, z contiguous. */
interface View {
  data: Float32Array;
  offset: number;
  sx: number;
  sy: number;
}

/**
 * Cuts a box of `cropSize` out of a [X, Y, Z] volume and resizes it to `outSize` with torch's
 * trilinear align_corners=True weights, evaluated exactly as `separableLinearF32` does (passes Z,
 * then Y, then X; each value fround(a·w0 + fround(b·w1)); identity axes skipped), so the result
 * is bit-identical to `resize()` of the cut-out crop. Holds its own scratch; not reentrant.
 */
export class CropResizer {
  readonly cropSize: [number, number, number];
  readonly outSize: [number, number, number];
  private readonly tables: [LinearAxisTableF32 | null, LinearAxisTableF32 | null, LinearAxisTableF32 | null];
  private readonly scratch: [Float32Array, Float32Array];

  constructor(cropSize: Vec3, outSize: Vec3) {
    this.cropSize = [cropSize[0], cropSize[1], cropSize[2]];
    this.outSize = [outSize[0], outSize[1], outSize[2]];
    const t = [0, 1, 2].map((a) => {
      const table = torchLinearTable(cropSize[a]!, outSize[a]!, true);
      return isIdentity(table, cropSize[a]!) ? null : table;
    });
    this.tables = [t[0]!, t[1]!, t[2]!];
    const [cx, cy] = this.cropSize;
    const [, oy, oz] = this.outSize;
    // pass Z writes [cx, cy, oz], pass Y [cx, oy, oz] (or [cx, oy, cz] when Z is skipped)
    const a = cx * cy * Math.max(oz, this.cropSize[2]);
    const b = cx * oy * Math.max(oz, this.cropSize[2]);
    this.scratch = [new Float32Array(this.tables[2] ? a : 0), new Float32Array(this.tables[1] ? b : 0)];
  }

  get outVoxels(): number {
    return this.outSize[0] * this.outSize[1] * this.outSize[2];
  }

  /** Writes the resized crop whose box starts at `start` into `out` (outVoxels long). */
  resizeInto(volume: Float32Array, shape: Vec3, start: readonly [number, number, number], out: Float32Array): Float32Array {
    const [X, Y, Z] = shape;
    const [cx, cy, cz] = this.cropSize;
    const [x0, y0, z0] = start;
    if (volume.length !== X * Y * Z) throw new Error(`CropResizer: volume has ${volume.length} voxels but shape [${shape.join(', ')}] needs ${X * Y * Z}`);
    if (x0 < 0 || y0 < 0 || z0 < 0 || x0 + cx > X || y0 + cy > Y || z0 + cz > Z) {
      throw new Error(`CropResizer: box [${start.join(', ')}] + [${this.cropSize.join(', ')}] is outside the volume [${shape.join(', ')}]`);
    }
    if (out.length !== this.outVoxels) throw new Error(`CropResizer: out has ${out.length} voxels, needs ${this.outVoxels}`);
    let cur: View = { data: volume, offset: (x0 * Y + y0) * Z + z0, sx: Y * Z, sy: Z };
    const dims = [cx, cy, cz];
    const [tx, ty, tz] = this.tables;
    const last = tx ? 0 : ty ? 1 : tz ? 2 : -1;
    if (last === -1) {
      copyView(cur, dims, out);
      return out;
    }
    if (tz) {
      const dst = last === 2 ? out : this.scratch[0].subarray(0, dims[0]! * dims[1]! * this.outSize[2]);
      passZ(cur, dims, tz, dst);
      dims[2] = this.outSize[2];
      cur = { data: dst, offset: 0, sx: dims[1]! * dims[2]!, sy: dims[2]! };
    }
    if (ty) {
      const dst = last === 1 ? out : this.scratch[1].subarray(0, dims[0]! * this.outSize[1] * dims[2]!);
      passY(cur, dims, ty, dst);
      dims[1] = this.outSize[1];
      cur = { data: dst, offset: 0, sx: dims[1]! * dims[2]!, sy: dims[2]! };
    }
    if (tx) passX(cur, dims, tx, out);
    return out;
  }
}

function copyView(v: View, dims: number[], out: Float32Array): void {
  const [nx, ny, nz] = dims as [number, number, number];
  let d = 0;
  for (let x = 0; x < nx; x++) {
    for (let y = 0; y < ny; y++) {
      const s = v.offset + x * v.sx + y * v.sy;
      out.set(v.data.subarray(s, s + nz), d);
      d += nz;
    }
  }
}

function passZ(v: View, dims: number[], t: LinearAxisTableF32, dst: Float32Array): void {
  const f = Math.fround;
  const [nx, ny] = dims as [number, number, number];
  const { i0, i1, w0, w1 } = t;
  const nOut = i0.length;
  const src = v.data;
  let d = 0;
  for (let x = 0; x < nx; x++) {
    for (let y = 0; y < ny; y++) {
      const s = v.offset + x * v.sx + y * v.sy;
      for (let o = 0; o < nOut; o++) dst[d++] = (src[s + i0[o]!]! * w0[o]!) + f(src[s + i1[o]!]! * w1[o]!);
    }
  }
}

function passY(v: View, dims: number[], t: LinearAxisTableF32, dst: Float32Array): void {
  const f = Math.fround;
  const [nx, , nz] = dims as [number, number, number];
  const { i0, i1, w0, w1 } = t;
  const nOut = i0.length;
  const src = v.data;
  let d = 0;
  for (let x = 0; x < nx; x++) {
    const base = v.offset + x * v.sx;
    for (let o = 0; o < nOut; o++) {
      const a = base + i0[o]! * v.sy;
      const b = base + i1[o]! * v.sy;
      const wa = w0[o]!;
      const wb = w1[o]!;
      for (let q = 0; q < nz; q++) dst[d++] = src[a + q]! * wa + f(src[b + q]! * wb);
    }
  }
}

function passX(v: View, dims: number[], t: LinearAxisTableF32, dst: Float32Array): void {
  const f = Math.fround;
  const [, ny, nz] = dims as [number, number, number];
  const { i0, i1, w0, w1 } = t;
  const nOut = i0.length;
  const src = v.data;
  let d = 0;
  for (let o = 0; o < nOut; o++) {
    const pa = v.offset + i0[o]! * v.sx;
    const pb = v.offset + i1[o]! * v.sx;
    const wa = w0[o]!;
    const wb = w1[o]!;
    for (let y = 0; y < ny; y++) {
      const a = pa + y * v.sy;
      const b = pb + y * v.sy;
      for (let q = 0; q < nz; q++) dst[d++] = src[a + q]! * wa + f(src[b + q]! * wb);
    }
  }
}

/** Cuts `box` out of a [X, Y, Z] volume, resized to `outSize` when given (allocates; for one-offs and tests). */
export function extractCrop(volume: Float32Array, shape: Vec3, box: CropBox, outSize?: Vec3): Float32Array {
  const r = new CropResizer(box.size, outSize ?? box.size);
  return r.resizeInto(volume, shape, box.start, new Float32Array(r.outVoxels));
}

// ---------------------------------------------------------------------------------------------
// Sampler

function checkVolume(volume: Float32Array, shape: readonly number[], g: VocoGeometry): void {
  const [X, Y, Z] = g.region;
  if (shape.length !== 3 || shape[0] !== X || shape[1] !== Y || shape[2] !== Z) {
    throw new Error(`drawVocoSample: the volume must have the geometry's region shape [${X}, ${Y}, ${Z}], got [${shape.join(', ')}]`);
  }
  if (!(volume instanceof Float32Array)) throw new Error(`drawVocoSample: the volume must be a Float32Array, got ${(volume as object)?.constructor?.name}`);
  if (volume.length !== X * Y * Z) throw new Error(`drawVocoSample: the volume has ${volume.length} voxels but shape [${X}, ${Y}, ${Z}] needs ${X * Y * Z}`);
}

/** Allocates the packed outputs of one sample. */
export function allocateSampleBuffers(g: VocoGeometry): VocoSampleBuffers {
  const n = cropOutputShape(g).reduce((a, b) => a * b, 1);
  const k = baseCropCount(g);
  return { randomCrops: new Float32Array(g.numRandom * n), baseCrops: new Float32Array(k * n), labels: new Float32Array(g.numRandom * k) };
}

/** Draws VoCo samples for one geometry and augmentation, reusing its resize scratch between calls. */
export class VocoSampler {
  readonly cropShape: [number, number, number];
  readonly cropVoxels: number;
  private readonly randomResizer: CropResizer;
  private readonly baseResizer: CropResizer;
  private readonly baseBoxes: CropBox[];

  constructor(
    readonly geometry: VocoGeometry,
    readonly augmentation: CropAugmentation,
  ) {
    validateGeometry(geometry);
    validateAugmentation(augmentation);
    this.cropShape = cropOutputShape(geometry);
    this.cropVoxels = this.cropShape[0] * this.cropShape[1] * this.cropShape[2];
    if (augmentation.rotate90Prob > 0 && this.cropShape[0] !== this.cropShape[1]) {
      throw new Error(`VoCo sampler: rotate90Prob > 0 needs square crops in x–y, but crops are [${this.cropShape.join(', ')}]`);
    }
    this.randomResizer = new CropResizer(geometry.randomCrop, this.cropShape);
    const sameSize = geometry.baseCrop.every((v, a) => v === geometry.randomCrop[a]);
    this.baseResizer = sameSize ? this.randomResizer : new CropResizer(geometry.baseCrop, this.cropShape);
    this.baseBoxes = baseCropBoxes(geometry);
  }

  /**
   * One sample from a region-shaped volume. With `out`, crops and labels are written there and
   * the returned arrays are views into it.
   */
  draw(volume: Float32Array, shape: readonly [number, number, number], rng: Rng, out?: VocoSampleBuffers): VocoSample {
    const g = this.geometry;
    checkVolume(volume, shape, g);
    const n = this.cropVoxels;
    const K = this.baseBoxes.length;
    const bufs = out ?? allocateSampleBuffers(g);
    if (bufs.randomCrops.length !== g.numRandom * n || bufs.baseCrops.length !== K * n || bufs.labels.length !== g.numRandom * K) {
      throw new Error(`drawVocoSample: output buffers must hold ${g.numRandom}·${n}, ${K}·${n} and ${g.numRandom}·${K} values`);
    }
    const centres: [number, number][] = [];
    for (let r = 0; r < g.numRandom; r++) centres.push(drawRandomCentre(g, rng));
    for (let r = 0; r < g.numRandom; r++) bufs.labels.set(positionLabels(centres[r]!, g), r * K);
    const randomCrops: Float32Array[] = [];
    for (let r = 0; r < g.numRandom; r++) {
      const crop = bufs.randomCrops.subarray(r * n, (r + 1) * n);
      this.randomResizer.resizeInto(volume, g.region, randomCropBox(centres[r]!, g).start, crop);
      augmentCrop(crop, this.cropShape, this.augmentation, rng);
      randomCrops.push(crop);
    }
    const baseCrops: Float32Array[] = [];
    for (let k = 0; k < K; k++) {
      const crop = bufs.baseCrops.subarray(k * n, (k + 1) * n);
      this.baseResizer.resizeInto(volume, g.region, this.baseBoxes[k]!.start, crop);
      augmentCrop(crop, this.cropShape, this.augmentation, rng);
      baseCrops.push(crop);
    }
    return { randomCrops, baseCrops, labels: bufs.labels, centres };
  }
}

/** One sample (see the module comment for the draw order). Builds a sampler per call; reuse a {@link VocoSampler} in loops. */
export function drawVocoSample(
  volume: Float32Array,
  shape: readonly [number, number, number],
  geometry: VocoGeometry,
  augmentation: CropAugmentation,
  rng: Rng,
  out?: VocoSampleBuffers,
): VocoSample {
  return new VocoSampler(geometry, augmentation).draw(volume, shape, rng, out);
}

// ---------------------------------------------------------------------------------------------
// Batch packing

/** A batch in the layout the trainer feeds a model (channels-last, volume-major). */
export interface VocoBatchArrays {
  /** [B·numRandom, ox, oy, oz, 1]: b0r0, b0r1, b1r0, … */
  randomCrops: Float32Array;
  randomCropsShape: [number, number, number, number, number];
  /** [B·gx·gy, ox, oy, oz, 1]: b0k0 … b0k(K−1), b1k0, … */
  baseCrops: Float32Array;
  baseCropsShape: [number, number, number, number, number];
  /** [B, numRandom, gx·gy] */
  labels: Float32Array;
  labelsShape: [number, number, number];
  /** [B, numRandom, 2]: (cx, cy) of each random crop. */
  centres: Int32Array;
}

/** Packs samples (all drawn with `geometry`) into one batch; copies. */
export function packVocoBatch(samples: readonly VocoSample[], geometry: VocoGeometry): VocoBatchArrays {
  const [ox, oy, oz] = cropOutputShape(geometry);
  const n = ox * oy * oz;
  const R = geometry.numRandom;
  const K = baseCropCount(geometry);
  const B = samples.length;
  if (B === 0) throw new Error('packVocoBatch: no samples');
  const randomCrops = new Float32Array(B * R * n);
  const baseCrops = new Float32Array(B * K * n);
  const labels = new Float32Array(B * R * K);
  const centres = new Int32Array(B * R * 2);
  samples.forEach((s, b) => {
    if (s.randomCrops.length !== R || s.baseCrops.length !== K || s.labels.length !== R * K || s.centres.length !== R) {
      throw new Error(`packVocoBatch: sample ${b} has ${s.randomCrops.length} random crops, ${s.baseCrops.length} base crops and ${s.labels.length} labels; the geometry needs ${R}, ${K} and ${R * K}`);
    }
    const place = (crops: Float32Array[], dst: Float32Array, first: number, what: string) =>
      crops.forEach((c, i) => {
        if (c.length !== n) throw new Error(`packVocoBatch: sample ${b} ${what} crop ${i} has ${c.length} voxels, expected ${n}`);
        dst.set(c, (first + i) * n);
      });
    place(s.randomCrops, randomCrops, b * R, 'random');
    place(s.baseCrops, baseCrops, b * K, 'base');
    labels.set(s.labels, b * R * K);
    s.centres.forEach(([cx, cy], r) => centres.set([cx, cy], (b * R + r) * 2));
  });
  return {
    randomCrops,
    randomCropsShape: [B * R, ox, oy, oz, 1],
    baseCrops,
    baseCropsShape: [B * K, ox, oy, oz, 1],
    labels,
    labelsShape: [B, R, K],
    centres,
  };
}
