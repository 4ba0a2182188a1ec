/**
 * Functional building blocks of voco's 3-D networks, channels-last ([N, D0, D1, D2, C]).
 *
 * Each is a pure function of tensors (parameters are passed in), written only with ops whose
 * gradients ./gradients.ts provides and verified against finite differences in
 * test/models/ops/layers.test.ts. Importing this module registers those gradients.
 *
 * Conventions (PyTorch-compatible, see spec/REFERENCE.md §5.9):
 * - conv3d filter [kd, kh, kw, in, out]; conv3dTranspose filter [kd, kh, kw, out, in];
 * - linear weight [in, out] (PyTorch's (out, in) transposed);
 * - normalisation eps defaults to 1e-5 and uses the biased variance, like torch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerMissingGradients } from './gradients.ts';

registerMissingGradients();

export type Pad3 = 'same' | 'valid';
export type Triple = [number, number, number];

export interface ConvOptions {
  strides?: number | Triple;
  pad?: Pad3;
}

function asTriple(v: number | Triple): Triple {
  return typeof v === 'number' ? [v, v, v] : v;
}

function addBias<T extends tf.Tensor>(y: T, bias: tf.Tensor1D | null | undefined): T {
  return bias ? (tf.add(y, bias) as T) : y;
}

/** 3-D convolution (+ bias). Filter [kd, kh, kw, in, out]; default stride 1, padding 'same'. */
export function conv3d(x: tf.Tensor5D, filter: tf.Tensor5D, bias?: tf.Tensor1D | null, opts: ConvOptions = {}): tf.Tensor5D {
  return addBias(tf.conv3d(x, filter, opts.strides ?? 1, opts.pad ?? 'same'), bias);
}

/**
 * Transposed 3-D convolution (+ bias), PyTorch ConvTranspose3d with padding 0 when pad is
 * 'valid' (output (n − 1)·s + k per axis) — the decoders' kernel 2 stride 2 case doubles each
 * axis. Filter [kd, kh, kw, out, in]. Its gradient (kernel Conv3DBackpropInputV2) is voco's.
 */
export function conv3dTranspose(
  x: tf.Tensor5D,
  filter: tf.Tensor5D,
  bias?: tf.Tensor1D | null,
  opts: ConvOptions = {},
): tf.Tensor5D {
  registerMissingGradients();
  const strides = asTriple(opts.strides ?? 2);
  const pad = opts.pad ?? 'valid';
  const [n, d0, d1, d2] = x.shape;
  const k = filter.shape;
  const spatial = [d0, d1, d2].map((d, i) =>
    pad === 'valid' ? (d - 1) * strides[i]! + k[i]! : d * strides[i]!,
  ) as Triple;
  const outShape: [number, number, number, number, number] = [n, ...spatial, filter.shape[3]];
  return addBias(tf.conv3dTranspose(x, filter, outShape, strides, pad), bias);
}

/**
 * Linear layer on the last axis: y = x·W + b with W [in, out]. Any leading shape; computed as a
 * 2-D matMul so that it never needs the broadcast batch-matMul gradient.
 */
export function linear<T extends tf.Tensor>(x: T, weight: tf.Tensor2D, bias?: tf.Tensor1D | null): T {
  const inF = weight.shape[0];
  const outF = weight.shape[1];
  if (x.shape[x.rank - 1] !== inF) throw new Error(`linear: input has ${x.shape[x.rank - 1]} features, weight expects ${inF}`);
  const lead = x.shape.slice(0, -1);
  const y = tf.matMul(tf.reshape(x, [-1, inF]), weight);
  return tf.reshape(addBias(y, bias), [...lead, outF]) as T;
}

export interface NormOptions {
  gamma?: tf.Tensor1D | null;
  beta?: tf.Tensor1D | null;
  eps?: number;
}

function normalize(x: tf.Tensor, axes: number[], opts: NormOptions): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const { mean, variance } = tf.moments(x, axes, true);
  let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, tf.scalar(opts.eps ?? 1e-5))));
  if (opts.gamma) y = tf.mul(y, opts.gamma);
  if (opts.beta) y = tf.add(y, opts.beta);
  return { y, mean, variance };
}

/** InstanceNorm3d: per sample and channel, moments over the three spatial axes (biased variance). */
export function instanceNorm(x: tf.Tensor5D, opts: NormOptions = {}): tf.Tensor5D {
  return normalize(x, [1, 2, 3], opts).y as tf.Tensor5D;
}

/** LayerNorm over the last axis (channels). */
export function layerNorm<T extends tf.Tensor>(x: T, opts: NormOptions = {}): T {
  return normalize(x, [x.rank - 1], opts).y as T;
}

/**
 * BatchNorm3d with batch statistics (PyTorch training mode; Models Genesis' ContBatchNorm3d
 * always uses them): per channel, moments over batch and space. Returns the batch mean and the
 * biased variance as [C] too, for running-statistics updates.
 */
export function batchNorm(
  x: tf.Tensor5D,
  opts: NormOptions = {},
): { y: tf.Tensor5D; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const c = x.shape[4];
  const { y, mean, variance } = normalize(x, [0, 1, 2, 3], opts);
  return { y: y as tf.Tensor5D, mean: tf.reshape(mean, [c]) as tf.Tensor1D, variance: tf.reshape(variance, [c]) as tf.Tensor1D };
}

/** Exact GELU (PyTorch nn.GELU default): x·Φ(x) = ½·x·(1 + erf(x/√2)). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, tf.scalar(0.5)), tf.add(tf.scalar(1), tf.erf(tf.mul(x, tf.scalar(Math.SQRT1_2))))) as T;
}

export function relu<T extends tf.Tensor>(x: T): T {
  return tf.relu(x);
}

/** LeakyReLU, PyTorch default slope 0.01. */
export function leakyRelu<T extends tf.Tensor>(x: T, alpha = 0.01): T {
  return tf.leakyRelu(x, alpha);
}

export function maxPool3d(x: tf.Tensor5D, size: number | Triple = 2, strides: number | Triple = size, pad: Pad3 = 'valid'): tf.Tensor5D {
  return tf.maxPool3d(x, size, strides, pad);
}

export function avgPool3d(x: tf.Tensor5D, size: number | Triple = 2, strides: number | Triple = size, pad: Pad3 = 'valid'): tf.Tensor5D {
  return tf.avgPool3d(x, size, strides, pad);
}

/** Global average pooling over the three spatial axes: [N, D0, D1, D2, C] → [N, C]. */
export function globalAvgPool3d(x: tf.Tensor5D): tf.Tensor2D {
  return tf.mean(x, [1, 2, 3]) as tf.Tensor2D;
}

/**
 * torch.roll on the spatial axes of [N, D0, D1, D2, C]: out[i] = x[(i − shift) mod n] per axis
 * (a negative shift moves entries towards index 0, as in the Swin cyclic shift by −shift).
 * Two slices and a concat per rolled axis.
 */
export function roll3d(x: tf.Tensor5D, shifts: Triple): tf.Tensor5D {
  let y: tf.Tensor5D = x;
  shifts.forEach((shift, i) => {
    const axis = i + 1;
    const n = y.shape[axis]!;
    const s = ((shift % n) + n) % n;
    if (s === 0) return;
    const size = [...y.shape];
    const head = tf.slice(y, y.shape.map((_, k) => (k === axis ? n - s : 0)), size.map((d, k) => (k === axis ? s : d)));
    const tail = tf.slice(y, [0, 0, 0, 0, 0], size.map((d, k) => (k === axis ? n - s : d)));
    y = tf.concat([head, tail], axis) as tf.Tensor5D;
  });
  return y;
}

export interface AttentionOptions {
  /** Multiplies q (Swin: head_dim^−½). */
  scale: number;
  /** Added to the logits, broadcast against [B, heads, N, N] (e.g. a relative position bias [heads, N, N]). */
  bias?: tf.Tensor | null;
  /** Added after the bias (e.g. the shifted-window mask, 0 / −100), broadcast likewise. */
  mask?: tf.Tensor | null;
}

/**
 * Scaled dot-product attention with additive bias: softmax((q·scale)·kᵀ + bias + mask)·v for
 * q, k, v [B, heads, N, d]. Returns [B, heads, N, d].
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: AttentionOptions): tf.Tensor4D {
  let logits: tf.Tensor = tf.matMul(tf.mul(q, tf.scalar(opts.scale)), k, false, true);
  if (opts.bias) logits = tf.add(logits, opts.bias);
  if (opts.mask) logits = tf.add(logits, opts.mask);
  return tf.matMul(tf.softmax(logits), v) as tf.Tensor4D;
}
