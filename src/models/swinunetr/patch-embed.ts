/**
 * MONAI `PatchEmbed` (3D, patch 2, no norm): right-pad odd dims, Conv3d(in → C, kernel 2,
 * stride 2, bias). Position dropout is identity (rate 0).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { getVar, type ParamCollector } from './params.ts';
import { conv3d, padEnd3 } from './ops.ts';

export const PATCH_SIZE = 2;

export function definePatchEmbedParams(c: ParamCollector, prefix: string, inChannels: number, embedDim: number): void {
  c.conv3d(`${prefix}.proj`, inChannels, embedDim, PATCH_SIZE, true);
}

/** [B, D, H, W, Cin] → [B, ⌈D/2⌉, ⌈H/2⌉, ⌈W/2⌉, C]. */
export function patchEmbed(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor): tf.Tensor {
  const s = x.shape;
  const p = (n: number) => (PATCH_SIZE - (n % PATCH_SIZE)) % PATCH_SIZE;
  x = padEnd3(x, [p(s[1]!), p(s[2]!), p(s[3]!)]);
  return conv3d(x, getVar(vars, `${prefix}.proj.weight`), getVar(vars, `${prefix}.proj.bias`), PATCH_SIZE);
}
