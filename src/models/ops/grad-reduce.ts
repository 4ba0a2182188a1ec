/**
 * Gradients of reductions and softmax.
 *
 * - sum: every reduced entry contributes with weight 1, so dx = dy broadcast back;
 * - mean: the same divided by the number of reduced entries;
 * - max/min: dy goes to the entries equal to the extreme (all of them on a tie, as a
 *   subgradient; ties have measure zero for continuous inputs);
 * - softmax y = e^x / Σe^x along the last axis: J = diag(y) − y yᵀ, so dx = y ⊙ (dy − ⟨dy, y⟩).
 */
import * as tf from '@tensorflow/tfjs-core';
import { keepDimsShape, mask, normalizeAxes, product, saved, single } from './grad-util.ts';

type G = tf.GradConfig;

function spread(dy: tf.Tensor, x: tf.Tensor, axes: number[]): tf.Tensor {
  return tf.broadcastTo(tf.reshape(dy, keepDimsShape(x.shape, axes)), x.shape);
}

function extremeGrad(kernelName: string, axisAttr: string): G {
  return {
    kernelName,
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const y = saved(s, 1);
      const axes = normalizeAxes(attrs[axisAttr] as number | number[] | null, x.rank);
      return {
        x: () => {
          const keep = keepDimsShape(x.shape, axes);
          const isExtreme = mask(tf.equal(x, tf.reshape(y, keep)));
          return tf.mul(spread(single(dy), x, axes), isExtreme);
        },
      };
    },
  };
}

export const reduceGradients: G[] = [
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const axes = normalizeAxes(attrs['axis'] as number | number[] | null, x.rank);
      return { x: () => spread(single(dy), x, axes) };
    },
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const axes = normalizeAxes(attrs['axis'] as number | number[] | null, x.rank);
      const count = product(axes.map((a) => x.shape[a]!));
      return { x: () => tf.div(spread(single(dy), x, axes), tf.scalar(count)) };
    },
  },
  extremeGrad('Max', 'reductionIndices'),
  extremeGrad('Min', 'axis'),
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, s, attrs) => {
      const y = saved(s, 0);
      const dim = (attrs['dim'] as number | undefined) ?? -1;
      const axis = dim < 0 ? dim + y.rank : dim;
      return {
        logits: () => {
          const g = single(dy);
          return tf.mul(y, tf.sub(g, tf.sum(tf.mul(g, y), axis, true)));
        },
      };
    },
  },
];
