/**
 * MONAI `BasicLayer` (3D): `depth` Swin blocks alternating shift 0 and window//2, sharing one
 * shifted-window mask computed on the padded dims, then PatchMerging.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { ParamCollector } from './params.ts';
import { definePatchMergingParams, patchMerging } from './patch-merging.ts';
import { defineSwinBlockParams, swinBlock } from './swin-block.ts';
import { clipWindow, shiftedWindowMaskTensor, type Vec3 } from './window-attention.ts';

export function defineBasicLayerParams(c: ParamCollector, prefix: string, dim: number, depth: number, numHeads: number, window: Vec3): void {
  for (let b = 0; b < depth; b++) defineSwinBlockParams(c, `${prefix}.blocks.${b}`, dim, numHeads, window);
  definePatchMergingParams(c, `${prefix}.downsample`, dim);
}

export interface BasicLayerArgs {
  depth: number;
  numHeads: number;
  window: Vec3;
}

/** The per-axis window and shift a stage uses for input dims `size` (MONAI `get_window_size`). */
export function stageWindow(size: Vec3, window: Vec3): { window: [number, number, number]; shift: [number, number, number] } {
  const half: Vec3 = [Math.floor(window[0] / 2), Math.floor(window[1] / 2), Math.floor(window[2] / 2)];
  return clipWindow(size, window, half);
}

/** x: [B, D, H, W, C] → [B, D/2, H/2, W/2, 2C]. */
export function basicLayer(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor, a: BasicLayerArgs): tf.Tensor {
  const size: Vec3 = [x.shape[1]!, x.shape[2]!, x.shape[3]!];
  const { window, shift } = stageWindow(size, a.window);
  const padded: Vec3 = [Math.ceil(size[0] / window[0]) * window[0], Math.ceil(size[1] / window[1]) * window[1], Math.ceil(size[2] / window[2]) * window[2]];
  const anyShift = shift.some((s) => s > 0);
  const mask = anyShift ? shiftedWindowMaskTensor(padded, window, shift, a.numHeads) : null;
  const noShift: Vec3 = [0, 0, 0];
  for (let b = 0; b < a.depth; b++) {
    const blockShift = b % 2 === 0 ? noShift : shift;
    x = swinBlock(vars, `${prefix}.blocks.${b}`, x, { numHeads: a.numHeads, fullWindow: a.window, window, shift: blockShift, mask });
  }
  return patchMerging(vars, `${prefix}.downsample`, x);
}
