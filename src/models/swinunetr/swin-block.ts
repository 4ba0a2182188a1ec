/**
 * MONAI `SwinTransformerBlock` (3D): LN1 → pad to window multiples → cyclic shift → window
 * attention → reverse → unshift → crop → residual; then LN2 → MLP(GELU) → residual.
 * Dropout and stochastic depth are identity (VoCo and the fixtures use rate 0).
 */
import * as tf from '@tensorflow/tfjs-core';
import { recomputeInBackward } from '../ops/recompute.ts';
import { getVar, type ParamCollector } from './params.ts';
import { cropTo3, gelu, layerNorm, linear, padEnd3, roll } from './ops.ts';
import {
  biasTableSize,
  relativePositionIndex,
  windowAttention,
  windowPartition,
  windowReverse,
  type Vec3,
} from './window-attention.ts';

/** Parameters of one block, in MONAI state-dict order. */
export function defineSwinBlockParams(c: ParamCollector, prefix: string, dim: number, numHeads: number, window: Vec3, mlpRatio = 4): void {
  c.layerNorm(`${prefix}.norm1`, dim);
  c.add({
    name: `${prefix}.attn.relative_position_bias_table`,
    layout: 'plain',
    shape: [biasTableSize(window), numHeads],
    trainable: true,
    init: { kind: 'truncNormal', std: 0.02 },
  });
  const n = window[0] * window[1] * window[2];
  c.add({
    name: `${prefix}.attn.relative_position_index`,
    layout: 'plain',
    shape: [n, n],
    trainable: false,
    dtype: 'int32',
    init: { kind: 'computed', values: () => relativePositionIndex(window) },
  });
  c.linear(`${prefix}.attn.qkv`, dim, 3 * dim);
  c.linear(`${prefix}.attn.proj`, dim, dim);
  c.layerNorm(`${prefix}.norm2`, dim);
  c.linear(`${prefix}.mlp.linear1`, dim, mlpRatio * dim);
  c.linear(`${prefix}.mlp.linear2`, mlpRatio * dim, dim);
}

export interface SwinBlockArgs {
  numHeads: number;
  /** Configured window (7,7,7); the index buffer and bias table are built for it. */
  fullWindow: Vec3;
  /** Window and shift after per-axis clipping for this input. */
  window: Vec3;
  shift: Vec3;
  /** [nW, 1 or heads, n·n] shifted-window mask (used only when some shift is > 0). */
  mask: tf.Tensor | null;
}

let checkpointing = true;

/** Gradient checkpointing of Swin blocks (default on, as VoCo's `use_checkpoint=True`). */
export function setSwinCheckpointing(on: boolean): void {
  checkpointing = on;
}

/**
 * x: [B, D, H, W, C] → same shape. The attention maps ([windows·heads, n, n], hundreds of MB at
 * 64³) live only while the block runs: its forward is one tidy scope, and under a gradient tape
 * the block is recomputed in the backward pass instead of keeping its activations.
 */
export function swinBlock(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor, a: SwinBlockArgs): tf.Tensor {
  if (!checkpointing) return tf.tidy(() => swinBlockUntidied(vars, prefix, x, a));
  const weights = [...vars.keys()].filter((n) => n.startsWith(`${prefix}.`) && vars.get(n)!.dtype === 'float32').map((n) => vars.get(n)!);
  const mask = a.mask;
  if (!mask) return recomputeInBackward((input) => swinBlockUntidied(vars, prefix, input, a), x, weights);
  return recomputeInBackward((input, [m]) => swinBlockUntidied(vars, prefix, input, { ...a, mask: m! }), x, weights, [mask]);
}

function swinBlockUntidied(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor, a: SwinBlockArgs): tf.Tensor {
  const v = (name: string) => getVar(vars, `${prefix}.${name}`);
  const [B, D, H, W] = x.shape as [number, number, number, number, number];
  const { window: ws, shift } = a;
  const shortcut = x;
  let h = layerNorm(x, v('norm1.weight'), v('norm1.bias'));
  const pad: [number, number, number] = [(ws[0] - (D % ws[0])) % ws[0], (ws[1] - (H % ws[1])) % ws[1], (ws[2] - (W % ws[2])) % ws[2]];
  h = padEnd3(h, pad);
  const Dp = D + pad[0];
  const Hp = H + pad[1];
  const Wp = W + pad[2];
  const shifted = shift[0] > 0 || shift[1] > 0 || shift[2] > 0;
  if (shifted) for (let i = 0; i < 3; i++) h = roll(h, -shift[i]!, i + 1);
  const windows = windowPartition(h, ws);
  const attn = windowAttention(
    windows,
    {
      qkvWeight: v('attn.qkv.weight'),
      qkvBias: v('attn.qkv.bias'),
      projWeight: v('attn.proj.weight'),
      projBias: v('attn.proj.bias'),
      biasTable: v('attn.relative_position_bias_table'),
      numHeads: a.numHeads,
      fullWindow: a.fullWindow,
    },
    shifted ? a.mask : null,
  );
  h = windowReverse(attn, ws, [B, Dp, Hp, Wp]);
  if (shifted) for (let i = 0; i < 3; i++) h = roll(h, shift[i]!, i + 1);
  h = cropTo3(h, [D, H, W]);
  const x1 = tf.add(shortcut, h);
  const m = layerNorm(x1, v('norm2.weight'), v('norm2.bias'));
  const mlp = linear(gelu(linear(m, v('mlp.linear1.weight'), v('mlp.linear1.bias'))), v('mlp.linear2.weight'), v('mlp.linear2.bias'));
  return tf.add(x1, mlp);
}
