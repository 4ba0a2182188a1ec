/**
 * MONAI `PatchMerging` ("merging", the SwinUNETR default): pad odd dims, gather 8 (d,h,w) parity
 * sub-volumes in MONAI's order, concatenate on channels (8C), LayerNorm(8C),
 * Linear(8C → 2C, no bias). Implemented with reshape/transpose/gather (no strided slices).
 */
import * as tf from '@tensorflow/tfjs-core';
import { getVar, type ParamCollector } from './params.ts';
import { layerNorm, linear, padEnd3 } from './ops.ts';

/**
 * (d, h, w) parity offsets of the 8 channel groups of MONAI's "merging", in concatenation order,
 * as MONAI 1.4.0 actually computes them (established against the fixtures: max |Δ| 2.7e-6 after
 * stage 1, while every order without repeats is off by > 1). Groups 5 and 6 repeat (0,1,0) and
 * (0,0,1), so the (1,1,0) and (0,1,1) sub-volumes are never used. REFERENCE.md §5.4 lists
 * (1,1,0),(1,0,1),(0,1,1) for groups 4–6; that order does NOT reproduce MONAI's outputs.
 */
export const MERGING_OFFSETS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0],
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
  [1, 0, 1],
  [0, 1, 0],
  [0, 0, 1],
  [1, 1, 1],
];

/** "mergingv2" order (itertools.product). */
export const MERGING_V2_OFFSETS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0],
  [0, 0, 1],
  [0, 1, 0],
  [0, 1, 1],
  [1, 0, 0],
  [1, 0, 1],
  [1, 1, 0],
  [1, 1, 1],
];

export function definePatchMergingParams(c: ParamCollector, prefix: string, dim: number): void {
  c.linear(`${prefix}.reduction`, 8 * dim, 2 * dim, false);
  c.layerNorm(`${prefix}.norm`, 8 * dim);
}

/** Channel-concatenation of the parity sub-volumes named by `offsets` (repeats allowed): [B, D, H, W, C] → [B, D/2, H/2, W/2, 8C]. */
export function gatherParities(x: tf.Tensor, offsets: ReadonlyArray<readonly [number, number, number]> = MERGING_OFFSETS): tf.Tensor {
  const s = x.shape as [number, number, number, number, number];
  x = padEnd3(x, [s[1] % 2, s[2] % 2, s[3] % 2]);
  const [B, D, H, W, C] = x.shape as [number, number, number, number, number];
  const d2 = D / 2;
  const h2 = H / 2;
  const w2 = W / 2;
  // [B, d2, a, h2, b, w2, c, C] → [B, d2, a, h2, w2, b, c, C]
  let t = tf.transpose(tf.reshape(x, [B * d2 * 2 * h2, 2, w2, 2 * C]), [0, 2, 1, 3]);
  // → [B, d2, h2, w2, a, b, c, C]
  t = tf.transpose(tf.reshape(t, [B * d2, 2, h2 * w2, 4 * C]), [0, 2, 1, 3]);
  t = tf.reshape(t, [B * d2 * h2 * w2, 8, C]);
  const order = tf.tensor1d(
    offsets.map(([a, b, c]) => a * 4 + b * 2 + c),
    'int32',
  );
  t = tf.gather(t, order, 1);
  return tf.reshape(t, [B, d2, h2, w2, 8 * C]);
}

/** [B, D, H, W, C] → [B, ⌈D/2⌉, ⌈H/2⌉, ⌈W/2⌉, 2C]. */
export function patchMerging(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor, offsets = MERGING_OFFSETS): tf.Tensor {
  const v = (name: string) => getVar(vars, `${prefix}.${name}`);
  const g = gatherParities(x, offsets);
  return linear(layerNorm(g, v('norm.weight'), v('norm.bias')), v('reduction.weight'));
}
