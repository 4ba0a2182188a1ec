/**
 * MONAI CNN blocks as SwinUNETR uses them (3D, kernel 3, stride 1, instance norm without affine,
 * LeakyReLU 0.01):
 * - UnetResBlock: conv1 → IN → lrelu → conv2 → IN, + (conv3 1³ → IN when in ≠ out), → lrelu.
 *   Convs have no bias. Keys: `<p>.conv{1,2,3}.conv.weight`.
 * - UnetrBasicBlock(res_block=True) = one UnetResBlock at `<name>.layer`.
 * - UnetrUpBlock: ConvTranspose3d(k2, s2, no bias) at `<name>.transp_conv.conv`, concat
 *   [up, skip] on channels, UnetResBlock(2·out → out) at `<name>.conv_block`.
 * - UnetOutBlock: Conv3d 1³ with bias at `<name>.conv.conv`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { getVar, type ParamCollector } from './params.ts';
import { concatAxis, conv3d, convTranspose2, instanceNorm, leakyRelu } from './ops.ts';

export function defineResBlockParams(c: ParamCollector, prefix: string, inC: number, outC: number, k = 3): void {
  c.conv3d(`${prefix}.conv1.conv`, inC, outC, k, false);
  c.conv3d(`${prefix}.conv2.conv`, outC, outC, k, false);
  if (inC !== outC) c.conv3d(`${prefix}.conv3.conv`, inC, outC, 1, false);
}

export function unetResBlock(vars: Map<string, tf.Variable>, prefix: string, x: tf.Tensor): tf.Tensor {
  const v = (name: string) => getVar(vars, `${prefix}.${name}`);
  let out = leakyRelu(instanceNorm(conv3d(x, v('conv1.conv.weight'))));
  out = instanceNorm(conv3d(out, v('conv2.conv.weight')));
  const conv3 = vars.get(`${prefix}.conv3.conv.weight`);
  const residual = conv3 ? instanceNorm(conv3d(x, conv3)) : x;
  return leakyRelu(tf.add(out, residual));
}

export function defineUnetrBasicBlockParams(c: ParamCollector, name: string, inC: number, outC: number): void {
  defineResBlockParams(c, `${name}.layer`, inC, outC);
}

export function unetrBasicBlock(vars: Map<string, tf.Variable>, name: string, x: tf.Tensor): tf.Tensor {
  return unetResBlock(vars, `${name}.layer`, x);
}

export function defineUnetrUpBlockParams(c: ParamCollector, name: string, inC: number, outC: number): void {
  c.conv3dTranspose(`${name}.transp_conv.conv`, inC, outC, 2);
  defineResBlockParams(c, `${name}.conv_block`, 2 * outC, outC);
}

export function unetrUpBlock(vars: Map<string, tf.Variable>, name: string, x: tf.Tensor, skip: tf.Tensor): tf.Tensor {
  const up = convTranspose2(x, getVar(vars, `${name}.transp_conv.conv.weight`));
  return unetResBlock(vars, `${name}.conv_block`, concatAxis([up, skip], 4));
}

export function defineOutBlockParams(c: ParamCollector, name: string, inC: number, outC: number): void {
  c.conv3d(`${name}.conv.conv`, inC, outC, 1, true);
}

export function unetOutBlock(vars: Map<string, tf.Variable>, name: string, x: tf.Tensor): tf.Tensor {
  return conv3d(x, getVar(vars, `${name}.conv.conv.weight`), getVar(vars, `${name}.conv.conv.bias`));
}
