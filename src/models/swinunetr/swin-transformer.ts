/**
 * MONAI `SwinTransformer` (the `swinViT` of SwinUNETR), 3D, patch 2, "merging" downsample,
 * normalize=True, optional use_v2 residual conv blocks (`layers{k}c`) before each stage.
 *
 *   x0 = patch_embed(x); out0 = LN(x0)
 *   x0 = layers1c(x0) [v2]; x1 = layers1(x0); out1 = LN(x1)
 *   …                        x4 = layers4(x3); out4 = LN(x4)
 * where LN is a parameter-free layer norm over channels (eps 1e-5).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { basicLayer, defineBasicLayerParams } from './basic-layer.ts';
import { layerNorm } from './ops.ts';
import type { ParamCollector } from './params.ts';
import { definePatchEmbedParams, patchEmbed } from './patch-embed.ts';
import { defineUnetrBasicBlockParams, unetrBasicBlock } from './unetr-blocks.ts';
import type { Vec3 } from './window-attention.ts';

export interface SwinViTConfig {
  inChannels: number;
  /** embed_dim = feature_size. */
  featureSize: number;
  depths: readonly number[];
  numHeads: readonly number[];
  window: Vec3;
  useV2: boolean;
}

/** Receives named intermediate outputs (channels-last); names follow the fixture files. */
export type Capture = (name: string, t: tf.Tensor) => void;

export const SWIN_PREFIX = 'swinViT';

export function defineSwinViTParams(c: ParamCollector, cfg: SwinViTConfig): void {
  const p = SWIN_PREFIX;
  definePatchEmbedParams(c, `${p}.patch_embed`, cfg.inChannels, cfg.featureSize);
  cfg.depths.forEach((depth, i) => {
    defineBasicLayerParams(c, `${p}.layers${i + 1}.0`, cfg.featureSize * 2 ** i, depth, cfg.numHeads[i]!, cfg.window);
  });
  if (cfg.useV2) {
    cfg.depths.forEach((_, i) => {
      const dim = cfg.featureSize * 2 ** i;
      defineUnetrBasicBlockParams(c, `${p}.layers${i + 1}c.0`, dim, dim);
    });
  }
}

/** Parameter-free layer norm over channels (MONAI `proj_out` with normalize=True). */
export function projOut(x: tf.Tensor): tf.Tensor {
  return layerNorm(x);
}

/** x: [N, D0, D1, D2, Cin] → hidden states out0..out4 (channels-last, normalised). */
export function swinViT(vars: Map<string, tf.Variable>, x: tf.Tensor, cfg: SwinViTConfig, capture?: Capture): tf.Tensor[] {
  const p = SWIN_PREFIX;
  let h = patchEmbed(vars, `${p}.patch_embed`, x);
  capture?.('swinViT_patch_embed', h);
  const outs: tf.Tensor[] = [projOut(h)];
  cfg.depths.forEach((depth, i) => {
    const k = i + 1;
    if (cfg.useV2) {
      h = unetrBasicBlock(vars, `${p}.layers${k}c.0`, h);
      capture?.(`swinViT_layers${k}c_0`, h);
    }
    h = basicLayer(vars, `${p}.layers${k}.0`, h, { depth, numHeads: cfg.numHeads[i]!, window: cfg.window });
    capture?.(`swinViT_layers${k}_0`, h);
    outs.push(projOut(h));
  });
  outs.forEach((t, i) => capture?.(`hidden_states_out_${i}`, t));
  return outs;
}
