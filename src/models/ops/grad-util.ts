/**
 * Small helpers shared by the gradient definitions in this folder. Every gradient here is
 * derived from the math of its forward op (see the comment on each config); none is taken from
 * another code base.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Normalises an axis attribute (number, list, negative, or null = all axes) to sorted axes. */
export function normalizeAxes(axis: number | number[] | null | undefined, rank: number): number[] {
  if (axis === null || axis === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = Array.isArray(axis) ? axis : [axis];
  const out = list.map((a) => {
    const n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank) throw new Error(`axis ${a} is out of range for rank ${rank}`);
    return n;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Normalises a single axis. */
export function normalizeAxis(axis: number, rank: number): number {
  return normalizeAxes(axis, rank)[0]!;
}

/** The shape with the reduced axes kept as size 1. */
export function keepDimsShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/**
 * Reduces a gradient that has a broadcast shape back to the shape of the operand that was
 * broadcast: sum over leading axes the operand did not have and over axes where it had size 1.
 * This is the adjoint of implicit broadcasting.
 */
export function sumToShape(grad: tf.Tensor, shape: readonly number[]): tf.Tensor {
  if (arraysEqual(grad.shape, shape)) return grad;
  const lead = grad.rank - shape.length;
  if (lead < 0) throw new Error(`sumToShape: gradient rank ${grad.rank} < target rank ${shape.length}`);
  const axes: number[] = [];
  for (let i = 0; i < grad.rank; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && grad.shape[i] !== 1) axes.push(i);
  }
  const reduced = axes.length > 0 ? tf.sum(grad, axes, true) : grad;
  return tf.reshape(reduced, [...shape]);
}

export function arraysEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function product(values: readonly number[]): number {
  let p = 1;
  for (const v of values) p *= v;
  return p;
}

/** Float32 zeros shaped like `x` (gradients must be float32 even for integer inputs). */
export function zerosFor(x: tf.Tensor): tf.Tensor {
  return tf.zeros(x.shape, 'float32');
}

/** A 0/1 float mask from a boolean tensor. */
export function mask(b: tf.Tensor): tf.Tensor {
  return tf.cast(b, 'float32');
}

/** Takes the single dy of a one-output kernel (the engine passes an array only for several). */
export function single(dy: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (Array.isArray(dy)) {
    if (dy.length !== 1) throw new Error(`expected one output gradient, got ${dy.length}`);
    return dy[0]!;
  }
  return dy;
}

/** All dys of a kernel with any number of outputs. */
export function many(dy: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
  return Array.isArray(dy) ? dy : [dy];
}

/** Reads saved tensor i, failing loudly if the engine did not save it. */
export function saved(list: tf.Tensor[], i: number): tf.Tensor {
  const t = list[i];
  if (!t) throw new Error(`gradient: saved tensor ${i} is missing`);
  return t;
}

/** Expands a scalar-or-triple attribute (strides, filter sizes) to a triple. */
export function triple(v: number | readonly number[]): [number, number, number] {
  if (typeof v === 'number') return [v, v, v];
  if (v.length !== 3) throw new Error(`expected 3 values, got ${v.length}`);
  return [v[0]!, v[1]!, v[2]!];
}
