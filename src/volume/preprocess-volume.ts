import { basename } from 'node:path';
import { encodeVolume, type EncodedInfo } from './codec.ts';
import { readNifti } from './nifti-read.ts';
import { NiftiError } from './nifti-errors.ts';
import { applyTransformChain, type TransformStep } from './transforms/index.ts';
import type { Volume } from './volume.ts';

export interface PreprocessRequest {
  image: string;
  label?: string;
  chain: TransformStep[];
  maxAbsError: number;
  maxVoxels?: number;
  /** Cast applied to the loaded image before the chain (MONAI LoadImaged's dtype); default float32. */
  loadDtype?: 'float32' | 'int16';
}

export interface EncodedVolume {
  bytes: Uint8Array;
  info: EncodedInfo;
}

export interface PreprocessResult {
  image: EncodedVolume;
  label?: EncodedVolume;
  sourceShape: number[];
  steps: Array<{ kind: string; shape: number[]; ms: number; box?: unknown; skipped?: boolean }>;
}

/** Checks a label map against its image: same grid, whole non-negative values. */
export function checkLabel(label: Volume, image: Volume, labelPath: string, imagePath: string): void {
  const [, lx, ly, lz] = label.shape;
  const [, ix, iy, iz] = image.shape;
  if (lx !== ix || ly !== iy || lz !== iz) {
    throw new NiftiError(labelPath, 'dim', `label map is ${lx}×${ly}×${lz} but its image ${basename(imagePath)} is ${ix}×${iy}×${iz}`);
  }
  if (label.shape[0] !== 1) throw new NiftiError(labelPath, 'dim', `label map has ${label.shape[0]} channels; expected 1`);
  const d = label.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v < 0 || v !== Math.floor(v) || v > 65535) {
      throw new NiftiError(labelPath, 'data', `label map holds ${v} at voxel ${i}: labels must be whole numbers in 0..65535`);
    }
  }
}

/**
 * numpy's `astype(int16)` for in-range values (truncation toward zero), done in place; values
 * outside int16's range have no defined cast, so they are refused.
 */
export function castToInt16(image: Volume<Float32Array>, path: string): void {
  const d = image.data;
  for (let i = 0; i < d.length; i++) {
    const t = Math.trunc(d[i]!);
    if (t < -32768 || t > 32767) {
      throw new NiftiError(path, 'data', `voxel ${i} holds ${d[i]}, outside int16's range −32768..32767 (load_dtype: int16)`);
    }
    d[i] = t;
  }
}

/**
 * One volume through the pipeline's data path: read (and check) the NIfTI image and label, apply
 * the transform chain like MONAI's dictionary transforms, and encode both for the cache. Runs in
 * a worker thread; the encoded bytes are transferred back, not copied.
 */
export async function preprocessVolume(req: PreprocessRequest): Promise<PreprocessResult> {
  const img = await readNifti(req.image, { maxVoxels: req.maxVoxels });
  const image = img.toVolume({ dtype: 'float32' });
  if (req.loadDtype === 'int16') castToInt16(image, req.image);
  let label: Volume | undefined;
  if (req.label) {
    label = (await readNifti(req.label, { maxVoxels: req.maxVoxels })).toVolume({ dtype: 'raw' });
    checkLabel(label, image, req.label, req.image);
  }
  const out = applyTransformChain(req.chain, { image, label });
  const encodedImage = encodeVolume(out.image, { kind: 'image', maxAbsError: req.maxAbsError });
  const encodedLabel = out.label ? encodeVolume(out.label, { kind: 'label' }) : undefined;
  return {
    image: encodedImage,
    label: encodedLabel,
    sourceShape: img.shape,
    steps: out.steps.map((s) => ({ kind: s.kind, shape: s.shape, ms: Math.round(s.ms), box: s.box, skipped: s.skipped })),
  };
}
