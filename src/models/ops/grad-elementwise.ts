/**
 * Gradients of element-wise kernels (unary and broadcasting binary), derived from their
 * derivatives. Binary kernels broadcast, so each operand's gradient is reduced back to the
 * operand's shape with `sumToShape` (the adjoint of broadcasting).
 */
import * as tf from '@tensorflow/tfjs-core';
import { mask, saved, single, sumToShape, zerosFor } from './grad-util.ts';

type G = tf.GradConfig;

/** A unary kernel whose gradient is dy ⊙ f'(x) (x saved). */
function unaryX(kernelName: string, dydx: (x: tf.Tensor) => tf.Tensor): G {
  return {
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, s) => ({ x: () => tf.mul(single(dy), dydx(saved(s, 0))) }),
  };
}

/** A unary kernel whose gradient is dy ⊙ g(y), y the saved output. */
function unaryY(kernelName: string, dydx: (y: tf.Tensor) => tf.Tensor): G {
  return {
    kernelName,
    outputsToSave: [true],
    gradFunc: (dy, s) => ({ x: () => tf.mul(single(dy), dydx(saved(s, 0))) }),
  };
}

/** A kernel with no useful derivative (piecewise constant, comparisons): zero gradients. */
function zeroGrad(kernelName: string, inputs: string[]): G {
  return {
    kernelName,
    saveAllInputs: false,
    inputsToSave: inputs,
    gradFunc: (_dy, s) => Object.fromEntries(inputs.map((name, i) => [name, () => zerosFor(saved(s, i))])),
  };
}

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

export const elementwiseGradients: G[] = [
  // ---- binary, broadcasting -------------------------------------------------------------
  {
    // y = a + b
    kernelName: 'Add',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => ({
      a: () => sumToShape(single(dy), saved(s, 0).shape),
      b: () => sumToShape(single(dy), saved(s, 1).shape),
    }),
  },
  {
    // y = a − b
    kernelName: 'Sub',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => ({
      a: () => sumToShape(single(dy), saved(s, 0).shape),
      b: () => tf.neg(sumToShape(single(dy), saved(s, 1).shape)),
    }),
  },
  {
    // y = a·b: ∂a = dy·b, ∂b = dy·a
    kernelName: 'Multiply',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      return {
        a: () => sumToShape(tf.mul(single(dy), tf.cast(b, 'float32')), a.shape),
        b: () => sumToShape(tf.mul(single(dy), tf.cast(a, 'float32')), b.shape),
      };
    },
  },
  {
    // y = a / b: ∂a = dy / b, ∂b = −dy·a / b²
    kernelName: 'RealDiv',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      return {
        a: () => sumToShape(tf.div(single(dy), b), a.shape),
        b: () => sumToShape(tf.neg(tf.div(tf.mul(single(dy), a), tf.square(b))), b.shape),
      };
    },
  },
  {
    // y = max(a, b); a tie goes to a
    kernelName: 'Maximum',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      return {
        a: () => sumToShape(tf.mul(single(dy), mask(tf.greaterEqual(a, b))), a.shape),
        b: () => sumToShape(tf.mul(single(dy), mask(tf.less(a, b))), b.shape),
      };
    },
  },
  {
    // y = min(a, b); a tie goes to a
    kernelName: 'Minimum',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      return {
        a: () => sumToShape(tf.mul(single(dy), mask(tf.lessEqual(a, b))), a.shape),
        b: () => sumToShape(tf.mul(single(dy), mask(tf.greater(a, b))), b.shape),
      };
    },
  },
  {
    // y = (a − b)²: ∂a = 2(a − b)·dy, ∂b = −∂a
    kernelName: 'SquaredDifference',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      const g = () => tf.mul(single(dy), tf.mul(tf.scalar(2), tf.sub(a, b)));
      return { a: () => sumToShape(g(), a.shape), b: () => sumToShape(tf.neg(g()), b.shape) };
    },
  },
  {
    // y = a^b: ∂a = dy·b·a^(b−1), ∂b = dy·y·ln a (taken as 0 where a ≤ 0)
    kernelName: 'Pow',
    inputsToSave: ['a', 'b'],
    outputsToSave: [true],
    gradFunc: (dy, s) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      const y = saved(s, 2);
      return {
        a: () => {
          const bf = tf.cast(b, 'float32');
          return sumToShape(tf.mul(single(dy), tf.mul(bf, tf.pow(a, tf.sub(bf, tf.scalar(1))))), a.shape);
        },
        b: () => {
          const positive = tf.greater(a, 0);
          const logA = tf.where(positive, tf.log(a), tf.zerosLike(a));
          return sumToShape(tf.mul(single(dy), tf.mul(y, logA)), b.shape);
        },
      };
    },
  },
  {
    // y = x for x > 0, αx otherwise; α may broadcast
    kernelName: 'Prelu',
    inputsToSave: ['x', 'alpha'],
    gradFunc: (dy, s) => {
      const x = saved(s, 0);
      const alpha = saved(s, 1);
      const pos = tf.greater(x, 0);
      return {
        x: () => tf.mul(single(dy), tf.where(pos, tf.onesLike(x), tf.mul(tf.onesLike(x), alpha))),
        alpha: () => sumToShape(tf.mul(single(dy), tf.where(pos, tf.zerosLike(x), x)), alpha.shape),
      };
    },
  },
  {
    // y = condition ? t : e (the op broadcasts all three to one shape before the kernel)
    kernelName: 'Select',
    inputsToSave: ['condition', 't', 'e'],
    gradFunc: (dy, s) => {
      const c = saved(s, 0);
      const t = saved(s, 1);
      const e = saved(s, 2);
      const g = single(dy);
      const zero = tf.zerosLike(g);
      return {
        condition: () => zerosFor(c),
        t: () => sumToShape(tf.where(c, g, zero), t.shape),
        e: () => sumToShape(tf.where(c, zero, g), e.shape),
      };
    },
  },
  {
    // y = Σ inputs
    kernelName: 'AddN',
    saveAllInputs: true,
    gradFunc: (dy, s) => Object.fromEntries(s.map((_, i) => [String(i), () => tf.clone(single(dy))])),
  },

  // ---- unary ------------------------------------------------------------------------------
  { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(single(dy)) }) },
  { kernelName: 'Identity', gradFunc: (dy) => ({ x: () => tf.clone(single(dy)) }) },
  {
    // a cast between float types passes the gradient through; the engine requires float32
    kernelName: 'Cast',
    gradFunc: (dy) => ({ x: () => tf.cast(single(dy), 'float32') }),
  },
  unaryX('Square', (x) => tf.mul(tf.scalar(2), x)), // (x²)' = 2x
  unaryY('Sqrt', (y) => tf.div(tf.scalar(0.5), y)), // (√x)' = 1 / (2√x)
  unaryY('Rsqrt', (y) => tf.mul(tf.scalar(-0.5), tf.mul(y, tf.square(y)))), // (x^−½)' = −½ x^−3/2
  unaryY('Exp', (y) => y),
  unaryX('Log', (x) => tf.reciprocal(x)),
  unaryX('Log1p', (x) => tf.reciprocal(tf.add(x, tf.scalar(1)))),
  unaryX('Expm1', (x) => tf.exp(x)),
  unaryX('Reciprocal', (x) => tf.neg(tf.reciprocal(tf.square(x)))), // (1/x)' = −1/x²
  unaryX('Abs', (x) => tf.sign(x)),
  unaryX('Sin', (x) => tf.cos(x)),
  unaryX('Cos', (x) => tf.neg(tf.sin(x))),
  unaryY('Sigmoid', (y) => tf.mul(y, tf.sub(tf.scalar(1), y))), // σ' = σ(1 − σ)
  unaryY('Tanh', (y) => tf.sub(tf.scalar(1), tf.square(y))), // tanh' = 1 − tanh²
  unaryX('Softplus', (x) => tf.sigmoid(x)), // ln(1 + eˣ)' = σ(x)
  unaryX('Erf', (x) => tf.mul(tf.scalar(TWO_OVER_SQRT_PI), tf.exp(tf.neg(tf.square(x))))), // erf' = 2/√π e^(−x²)
  unaryX('Relu', (x) => mask(tf.greater(x, 0))),
  unaryX('Relu6', (x) => mask(tf.logicalAnd(tf.greater(x, 0), tf.less(x, 6)))),
  unaryY('Elu', (y) => tf.where(tf.greater(y, 0), tf.onesLike(y), tf.add(y, tf.scalar(1)))), // x<0: eˣ = y + 1
  {
    // y = x for x > 0, αx otherwise
    kernelName: 'LeakyRelu',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const alpha = attrs['alpha'] as number;
      return { x: () => tf.mul(single(dy), tf.where(tf.greater(x, 0), tf.onesLike(x), tf.fill(x.shape, alpha))) };
    },
  },
  {
    // y = clip(x, lo, hi): passes dy where lo ≤ x ≤ hi
    kernelName: 'ClipByValue',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const lo = attrs['clipValueMin'] as number;
      const hi = attrs['clipValueMax'] as number;
      return {
        x: () => tf.mul(single(dy), mask(tf.logicalAnd(tf.greaterEqual(x, lo), tf.lessEqual(x, hi)))),
      };
    },
  },

  // ---- piecewise constant: zero gradient -------------------------------------------------
  ...['Floor', 'Ceil', 'Round', 'Sign', 'Step', 'ZerosLike', 'OnesLike', 'IsNan', 'IsInf', 'IsFinite', 'LogicalNot'].map((k) =>
    zeroGrad(k, ['x']),
  ),
  ...['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual', 'LogicalAnd', 'LogicalOr', 'FloorDiv'].map((k) =>
    zeroGrad(k, ['a', 'b']),
  ),
];
