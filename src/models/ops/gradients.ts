/**
 * Gradient registration for TensorFlow.js as voco uses it: `@tensorflow/tfjs-core` 4.22 plus a
 * backend (cpu, tensorflow, webgpu).
 *
 * Why this module exists
 * ----------------------
 * 1. In Node, `@tensorflow/tfjs-core`'s entry point (dist/tf-core.node.js) registers **no**
 *    gradients at all: tfjs-core ships them in `dist/register_all_gradients.js`, an ES module
 *    with extension-less imports that only the `@tensorflow/tfjs` union bundle wires in. With
 *    tfjs-core + tfjs-backend-cpu alone, `tf.grad(x => tf.sum(x))` throws "gradient function
 *    not found for Sum". So every kernel our models differentiate through needs a gradient
 *    from us.
 * 2. The gradients tfjs 4.22 itself has (loaded with `@tensorflow/tfjs`, e.g. by
 *    `@tensorflow/tfjs-node`) lack or get wrong several that we need — measured against
 *    finite differences in test/models/ops/gradients.test.ts:
 *    - `Conv3DBackpropInputV2` (tf.conv3dTranspose): no gradient. RELIED ON by UNet3D (the
 *      three `up_tr*.up_conv`) and by SwinUNETR (every `decoder*.transp_conv`).
 *    - `Tile`: rank ≤ 4 only. tf.broadcastTo and the broadcasting inside tf.where run the Tile
 *      kernel, so a rank-5 broadcastTo/where/tile on the gradient path relies on ours (e.g. a
 *      window mask broadcast with tf.where). ./layers.ts broadcasts implicitly in add/mul and
 *      does not need it.
 *    - `StridedSlice`: no gradient. Relied on by code that slices with steps, e.g. patch merging
 *      written as x[:, 0::2, 1::2, 0::2]; UNet3D does not use it. (Pass `strides` explicitly:
 *      tfjs-node's forward StridedSlice kernel throws when they are omitted.)
 *    - `BatchMatMul`: broadcast batch dimensions are not reduced, so tf.matMul of a rank-4 by a
 *      rank-2 tensor fails in its gradient. `linear()` in ./layers.ts also avoids the case by
 *      reshaping to 2-D, so Linear layers do not rely on the fix. (The cpu backend's *forward*
 *      is wrong for two-sided batch broadcasting, [2,1,…]×[1,3,…]; avoid that.)
 *    - `SquaredDifference`: broadcasting not reduced (shape error). tf.moments does not use it.
 *    - `Cumsum`: wrong on an axis other than the last (shape error).
 *    - `AvgPool3D`: the backend's AvgPool3DGrad kernel in tfjs-backend-cpu divides by the full
 *      window even where 'same' padding cut it (the forward divides by the entries inside;
 *      0.296 instead of 0.579 at a corner for k3 s1). Neither model uses average pooling.
 *    - `Einsum`: no gradient; ours covers two-operand equations. Neither model uses einsum.
 *    So voco registers its own gradient for every kernel it covers and overrides tfjs's: one
 *    set, checked against finite differences, on every backend.
 *
 * Not provided (the models do not use them): 2-D convolutions and pools, resize, MirrorPad,
 * Prod, trigonometric inverses, and `FusedBatchNorm` (tf.batchNorm) — the engine cannot save
 * its optional scale/offset inputs when they are absent; normalise with ./layers.ts
 * (batchNorm, instanceNorm, layerNorm: tf.moments + arithmetic) instead.
 *
 * Call `registerMissingGradients()` after importing tfjs-core and any tfjs backend package (the
 * model constructors, forwards and ./layers.ts call it too). It is idempotent and cheap (one map
 * lookup per kernel).
 */
import * as tf from '@tensorflow/tfjs-core';
import { elementwiseGradients } from './grad-elementwise.ts';
import { nnGradients } from './grad-nn.ts';
import { reduceGradients } from './grad-reduce.ts';
import { shapeGradients } from './grad-shape.ts';

/** Kernels whose upstream (tfjs 4.22) gradient is missing or measured wrong; see above. */
export const FIXED_GRADIENT_KERNELS = [
  'Conv3DBackpropInputV2',
  'StridedSlice',
  'Tile',
  'BatchMatMul',
  'SquaredDifference',
  'Cumsum',
  'AvgPool3D',
  'Einsum',
] as const;

const ALL: tf.GradConfig[] = [...elementwiseGradients, ...shapeGradients, ...reduceGradients, ...nnGradients];

/** Every kernel name voco provides a gradient for. */
export const VOCO_GRADIENT_KERNELS: readonly string[] = ALL.map((g) => g.kernelName);

export interface GradientRegistration {
  /** Kernels that had no gradient and now have voco's. */
  registered: string[];
  /** Kernels whose gradient from elsewhere (tfjs's own, or a stale copy) voco's replaced. */
  replaced: string[];
}

/**
 * Registers voco's gradient for every kernel it covers, replacing any other registration
 * (tfjs's own are loaded by `@tensorflow/tfjs` / tfjs-node). Idempotent: a call finds its own
 * configs in place and does nothing; calling it after another copy of tfjs registered its
 * gradients puts voco's back.
 */
export function registerMissingGradients(): GradientRegistration {
  const registered: string[] = [];
  const replaced: string[] = [];
  for (const config of ALL) {
    const current = tf.getGradient(config.kernelName) as tf.GradConfig | undefined;
    if (current === config) continue;
    tf.registerGradient(config);
    (current ? replaced : registered).push(config.kernelName);
  }
  return { registered, replaced };
}

/** The kernels among `kernelNames` that have no registered gradient (after registration). */
export function kernelsWithoutGradient(kernelNames: Iterable<string>): string[] {
  const missing = new Set<string>();
  for (const k of kernelNames) if (!tf.getGradient(k)) missing.add(k);
  return [...missing].sort();
}
