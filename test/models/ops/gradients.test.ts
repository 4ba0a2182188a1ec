/**
 * voco's gradient registrations (src/models/ops/gradients.ts), each checked against central
 * finite differences, kernel by kernel. Layer-level checks live in layers.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FIXED_GRADIENT_KERNELS,
  VOCO_GRADIENT_KERNELS,
  kernelsWithoutGradient,
  registerMissingGradients,
} from '../../../src/models/ops/gradients.ts';
import { gradCheck, randomTensor, separatedTensor, setupTestBackend, type GradCheckOptions } from './grad-check.ts';

const TOL = 1e-2;
const results: Array<[string, number, number]> = [];

beforeAll(async () => {
  await setupTestBackend();
});

afterAll(() => {
  const width = Math.max(...results.map((r) => r[0].length));
  console.log(
    `finite differences (${tf.getBackend()}), max per-coordinate / norm-wise relative error:\n` +
      results.map(([n, m, r]) => `  ${n.padEnd(width)}  ${m.toExponential(2)}  ${r.toExponential(2)}`).join('\n'),
  );
});

function check(name: string, fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], opts: GradCheckOptions = {}): void {
  const report = gradCheck(fn, inputs, opts);
  results.push([name, report.maxRelError, report.normRelError]);
  for (const r of report.inputs) {
    expect(r.maxAbsGradient, `${name}: input ${r.input} has an all-zero gradient`).toBeGreaterThan(0);
  }
  expect(report.maxRelError, `${name}: ${JSON.stringify(report.inputs)}`).toBeLessThan(TOL);
  expect(report.normRelError, name).toBeLessThan(TOL);
  inputs.forEach((t) => t.dispose());
}

const r = (shape: number[], seed: number | string, lo = -1, hi = 1) => randomTensor(shape, seed, lo, hi);
const sep = (shape: number[], seed: number | string, gap = 0.05) => separatedTensor(shape, seed, gap);
const T5 = (t: tf.Tensor) => t as tf.Tensor5D;

describe('registration', () => {
  it('is idempotent and covers the kernels tfjs gets wrong', () => {
    registerMissingGradients();
    const again = registerMissingGradients();
    expect(again).toEqual({ registered: [], replaced: [] });
    for (const k of FIXED_GRADIENT_KERNELS) expect(tf.getGradient(k), k).toBeDefined();
    expect(kernelsWithoutGradient(VOCO_GRADIENT_KERNELS)).toEqual([]);
  });

  it('puts voco’s gradient back when something else overwrote it', () => {
    const ours = tf.getGradient('Tile');
    tf.registerGradient({ kernelName: 'Tile', gradFunc: () => ({}) });
    expect(tf.getGradient('Tile')).not.toBe(ours);
    expect(registerMissingGradients()).toEqual({ registered: [], replaced: ['Tile'] });
    expect(tf.getGradient('Tile')).toBe(ours);
  });
});

describe('Conv3DBackpropInputV2 (tf.conv3dTranspose)', () => {
  const cases: Array<{ name: string; x: number[]; k: number[]; cout: number; strides: [number, number, number]; pad: 'same' | 'valid' }> = [
    { name: 'k2 s2 valid (decoder)', x: [2, 2, 3, 2, 3], k: [2, 2, 2], cout: 4, strides: [2, 2, 2], pad: 'valid' },
    { name: 'k3 s2 same', x: [1, 2, 3, 2, 2], k: [3, 3, 3], cout: 3, strides: [2, 2, 2], pad: 'same' },
    { name: 'k3 s1 same', x: [1, 3, 3, 2, 2], k: [3, 3, 3], cout: 2, strides: [1, 1, 1], pad: 'same' },
    { name: 'k3 s1 valid', x: [1, 2, 2, 2, 2], k: [3, 3, 3], cout: 2, strides: [1, 1, 1], pad: 'valid' },
    { name: 'k(2,3,1) s(2,1,1) valid', x: [1, 2, 2, 3, 2], k: [2, 3, 1], cout: 3, strides: [2, 1, 1], pad: 'valid' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const [n, d0, d1, d2, cin] = c.x as [number, number, number, number, number];
      const out = [d0, d1, d2].map((d, i) =>
        c.pad === 'valid' ? (d - 1) * c.strides[i]! + c.k[i]! : d * c.strides[i]!,
      ) as [number, number, number];
      const outShape: [number, number, number, number, number] = [n, ...out, c.cout];
      check(
        `conv3dTranspose ${c.name}`,
        (x, w) => tf.conv3dTranspose(T5(x), T5(w), outShape, c.strides, c.pad),
        [r(c.x, 1), r([...c.k, c.cout, cin], 2)],
      );
    });
  }

  it('is the adjoint of conv3d: ⟨conv3d(y, W), x⟩ = ⟨y, conv3dTranspose(x, W)⟩', () => {
    const y = r([1, 4, 6, 4, 3], 'y') as tf.Tensor5D;
    const w = r([3, 3, 3, 3, 2], 'w') as tf.Tensor5D;
    const x = r([1, 2, 3, 2, 2], 'x') as tf.Tensor5D;
    const lhs = tf.sum(tf.mul(tf.conv3d(y, w, 2, 'same'), x)).dataSync()[0]!;
    const rhs = tf.sum(tf.mul(y, tf.conv3dTranspose(x, w, y.shape, 2, 'same'))).dataSync()[0]!;
    expect(Math.abs(lhs - rhs)).toBeLessThan(1e-4 * Math.max(1, Math.abs(lhs)));
  });
});

describe('Conv3D', () => {
  for (const [strides, pad] of [[1, 'same'], [1, 'valid'], [2, 'same'], [2, 'valid']] as const) {
    it(`stride ${strides} ${pad}`, () => {
      check(`conv3d k3 s${strides} ${pad}`, (x, w) => tf.conv3d(T5(x), T5(w), strides, pad), [r([2, 5, 4, 4, 2], 1), r([3, 3, 3, 2, 3], 2)]);
    });
  }
});

describe('StridedSlice', () => {
  const x = () => r([2, 5, 4, 3, 2], 'ss');
  // strides always explicit: tfjs-node's forward StridedSlice kernel throws without them
  const cases: Array<[string, (t: tf.Tensor) => tf.Tensor]> = [
    ['unit strides', (t) => tf.stridedSlice(t, [0, 1, 1, 0, 0], [2, 4, 3, 3, 2], [1, 1, 1, 1, 1])],
    ['begin/end masks', (t) => tf.stridedSlice(t, [1, 2, 0, 1, 0], [0, 0, 2, 0, 1], [1, 1, 1, 1, 1], 0b00101, 0b01011)],
    ['negative begin/end', (t) => tf.stridedSlice(t, [0, -4, 0, -2, 0], [2, -1, 4, 3, 2], [1, 1, 1, 1, 1])],
    ['stride 2 (patch merging x[:, 1::2, 0::2, 1::2])', (t) => tf.stridedSlice(t, [0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 2, 2, 2, 1], 0b11111, 0b11111)],
    ['stride 3 with end', (t) => tf.stridedSlice(t, [0, 0, 1, 0, 0], [2, 5, 4, 3, 2], [1, 3, 2, 1, 1])],
    ['negative strides', (t) => tf.stridedSlice(t, [0, 4, 0, 2, 0], [2, 0, 4, 0, 2], [1, -2, 1, -1, 1], 0, 0b01000)],
    ['shrink axis', (t) => tf.stridedSlice(t, [0, 2, 0, 0, 1], [2, 3, 4, 3, 2], [1, 1, 1, 1, 1], 0, 0, 0, 0, 0b10010)],
    ['new axis and ellipsis', (t) => tf.stridedSlice(t, [0, 0, 1], [0, 0, 3], [1, 1, 1], 0, 0, 0b001, 0b010)],
  ];
  for (const [name, f] of cases) {
    it(name, () => check(`stridedSlice ${name}`, f, [x()], { samples: 240 }));
  }
});

describe('Tile and broadcasting at rank 5', () => {
  it('tile', () => check('tile rank 5', (t) => tf.tile(t, [2, 1, 3, 1, 2]), [r([1, 2, 2, 2, 3], 1)]));
  it('broadcastTo', () => check('broadcastTo rank 5', (t) => tf.broadcastTo(t, [2, 2, 3, 2, 3]), [r([1, 2, 1, 2, 3], 1)]));
  it('where with broadcasting', () =>
    check(
      'where rank 5',
      (a, b) => tf.where(tf.greater(tf.tensor([1, 0, 1], [3]), 0), a, b),
      [r([2, 1, 2, 2, 3], 1), r([1, 2, 1, 1, 3], 2)],
    ));
});

describe('BatchMatMul', () => {
  it('rank 4 × rank 2 (failed upstream)', () => check('matMul [2,3,4,5]×[5,6]', (a, b) => tf.matMul(a, b), [r([2, 3, 4, 5], 1), r([5, 6], 2)]));
  it('rank 2 × rank 4', () => check('matMul [4,5]×[2,3,5,6]', (a, b) => tf.matMul(a, b), [r([4, 5], 1), r([2, 3, 5, 6], 2)]));
  // Only "leading" batch broadcasting: the cpu backend's BatchMatMul *forward* is wrong for
  // two-sided broadcasting such as [2,1,…]×[1,3,…] (it returns shape [2,3,…] holding 3 batches).
  it('broadcast batch dims, all transpose flags', () => {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const a = r(tA ? [2, 3, 4, 3] : [2, 3, 3, 4], 1);
      const b = r(tB ? [1, 3, 2, 4] : [1, 3, 4, 2], 2);
      check(`matMul [2,3]×[1,3] batch tA=${tA} tB=${tB}`, (x, y) => tf.matMul(x, y, tA, tB), [a, b]);
      const c = r(tA ? [3, 4, 3] : [3, 3, 4], 3);
      const d = r(tB ? [2, 3, 2, 4] : [2, 3, 4, 2], 4);
      check(`matMul [3]×[2,3] batch tA=${tA} tB=${tB}`, (x, y) => tf.matMul(x, y, tA, tB), [c, d]);
    }
  });
  it('same batch (attention)', () => check('matMul [2,3,5,4]×[2,3,4,5]', (a, b) => tf.matMul(a, b), [r([2, 3, 5, 4], 1), r([2, 3, 4, 5], 2)]));
});

describe('Einsum', () => {
  it('matrix product', () => check("einsum 'ij,jk->ik'", (a, b) => tf.einsum('ij,jk->ik', a, b), [r([2, 3], 1), r([3, 4], 2)]));
  it('batched', () => check("einsum 'bij,bjk->bik'", (a, b) => tf.einsum('bij,bjk->bik', a, b), [r([2, 2, 3], 1), r([2, 3, 4], 2)]));
  it('rejects an index summed inside one operand', () => {
    const a = r([2, 3], 1);
    const b = r([2], 2);
    expect(() => tf.grads((x, y) => tf.sum(tf.einsum('ij,i->i', x, y)))([a, b])).toThrow(/summed inside one operand/);
  });
});

describe('element-wise', () => {
  const unary: Array<[string, (t: tf.Tensor) => tf.Tensor, () => tf.Tensor]> = [
    ['neg', tf.neg, () => r([3, 4], 1)],
    ['square', tf.square, () => r([3, 4], 1)],
    ['sqrt', tf.sqrt, () => r([3, 4], 1, 0.5, 2)],
    ['rsqrt', tf.rsqrt, () => r([3, 4], 1, 0.5, 2)],
    ['exp', tf.exp, () => r([3, 4], 1)],
    ['log', tf.log, () => r([3, 4], 1, 0.5, 2)],
    ['log1p', tf.log1p, () => r([3, 4], 1)],
    ['expm1', tf.expm1, () => r([3, 4], 1)],
    ['reciprocal', tf.reciprocal, () => r([3, 4], 1, 0.5, 2)],
    ['abs', tf.abs, () => sep([3, 4], 1)],
    ['sin', tf.sin, () => r([3, 4], 1)],
    ['cos', tf.cos, () => r([3, 4], 1)],
    ['sigmoid', tf.sigmoid, () => r([3, 4], 1, -3, 3)],
    ['tanh', tf.tanh, () => r([3, 4], 1)],
    ['softplus', tf.softplus, () => r([3, 4], 1, -3, 3)],
    ['erf', tf.erf, () => r([3, 4], 1, -2, 2)],
    ['relu', tf.relu, () => sep([3, 4], 1)],
    ['relu6', tf.relu6, () => tf.mul(sep([3, 4], 1, 0.5), 2)],
    ['elu', tf.elu, () => sep([3, 4], 1)],
    ['leakyRelu 0.01', (t) => tf.leakyRelu(t, 0.01), () => sep([3, 4], 1)],
    ['clipByValue', (t) => tf.clipByValue(t, -0.2, 0.3), () => sep([3, 4], 1, 0.07)],
    ['cast float32', (t) => tf.cast(t, 'float32'), () => r([3, 4], 1)],
  ];
  for (const [name, f, input] of unary) it(name, () => check(name, f, [input()]));

  const binary: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, number, number]> = [
    ['add', tf.add, -1, 1],
    ['sub', tf.sub, -1, 1],
    ['mul', tf.mul, -1, 1],
    ['div', tf.div, 0.5, 2],
    ['squaredDifference', tf.squaredDifference, -1, 1],
    ['pow', tf.pow, 0.5, 2],
  ];
  for (const [name, f, lo, hi] of binary) {
    it(`${name} with broadcasting`, () => check(`${name} [2,3,4]∘[3,1]`, f, [r([2, 3, 4], 1, lo, hi), r([3, 1], 2, lo, hi)]));
  }
  it('maximum / minimum', () => {
    const a = () => tf.slice(sep([2, 3, 4], 1), [0, 0, 0], [2, 3, 4]);
    const b = () => tf.add(sep([2, 3, 4], 2), 0.012); // keeps a − b off zero
    check('maximum', tf.maximum, [a(), b()], { eps: 1e-3 });
    check('minimum', tf.minimum, [a(), b()], { eps: 1e-3 });
  });
  it('prelu', () => check('prelu', (x, a) => tf.prelu(x, a), [sep([2, 3, 4], 1), r([4], 2, 0.05, 0.3)]));
  it('addN', () => check('addN', (a, b, c) => tf.addN([a, b, c]), [r([2, 3], 1), r([2, 3], 2), r([2, 3], 3)]));
});

describe('reductions and softmax', () => {
  it('sum / mean over axes', () => {
    check('sum axes [1,3]', (t) => tf.sum(t, [1, 3]), [r([2, 3, 2, 4], 1)]);
    check('sum all', (t) => tf.sum(t), [r([2, 3, 2], 1)]);
    check('mean axes [-1] keepDims', (t) => tf.mean(t, -1, true), [r([2, 3, 4], 1)]);
    check('mean axes [1,2,3] (GAP)', (t) => tf.mean(t, [1, 2, 3]), [r([2, 3, 2, 2, 3], 1)]);
  });
  it('max / min', () => {
    check('max axis 1', (t) => tf.max(t, 1), [sep([2, 5, 3], 1)], { eps: 1e-3 });
    check('min axes [0,2] keepDims', (t) => tf.min(t, [0, 2], true), [sep([2, 5, 3], 2)], { eps: 1e-3 });
  });
  it('softmax / logSoftmax / logSumExp', () => {
    check('softmax', (t) => tf.softmax(t), [r([3, 5], 1, -2, 2)]);
    check('logSoftmax', (t) => tf.logSoftmax(t), [r([3, 5], 1, -2, 2)]);
    check('logSumExp', (t) => tf.logSumExp(t, 1), [r([3, 5], 1, -2, 2)]);
  });
  it('moments', () => {
    check('moments mean', (t) => tf.moments(t, [1, 2]).mean, [r([2, 3, 4, 2], 1)]);
    check('moments variance', (t) => tf.moments(t, [1, 2]).variance, [r([2, 3, 4, 2], 1)]);
  });
  it('cumsum', () => {
    check('cumsum', (t) => tf.cumsum(t, 1), [r([2, 4, 3], 1)]);
    check('cumsum exclusive reverse', (t) => tf.cumsum(t, 1, true, true), [r([2, 4, 3], 1)]);
  });
});

describe('data movement', () => {
  it('reshape / expandDims / squeeze / transpose (rank 5)', () => {
    check('reshape', (t) => tf.reshape(t, [6, 4]), [r([2, 3, 4], 1)]);
    check('expandDims + squeeze', (t) => tf.squeeze(tf.mul(tf.expandDims(t, 1), 2), [1]), [r([2, 3], 1)]);
    check('transpose rank 5', (t) => tf.transpose(t, [0, 4, 2, 1, 3]), [r([2, 3, 2, 4, 2], 1)]);
  });
  it('concat / slice / pad (rank 5)', () => {
    check('concat rank 5 axis −1', (a, b, c) => tf.concat([a, b, c], -1), [r([1, 2, 2, 2, 2], 1), r([1, 2, 2, 2, 1], 2), r([1, 2, 2, 2, 3], 3)]);
    check('concat rank 5 axis 2', (a, b) => tf.concat([a, b], 2), [r([1, 2, 1, 2, 2], 1), r([1, 2, 3, 2, 2], 2)]);
    check('slice rank 5', (t) => tf.slice(t, [0, 1, 0, 1, 0], [1, -1, 2, 2, 2]), [r([2, 3, 3, 3, 2], 1)]);
    check('pad rank 5', (t) => tf.pad(t, [[0, 0], [1, 2], [0, 1], [2, 0], [0, 0]], 0.5), [r([1, 2, 2, 2, 2], 1)]);
  });
  it('gather / stack / unstack / split / reverse', () => {
    const idx = tf.tensor2d([[2, 0], [2, 1]], [2, 2], 'int32');
    check('gather axis 0 (repeated indices)', (t) => tf.gather(t, idx, 0), [r([3, 4], 1)]);
    check('gather axis 1', (t) => tf.gather(t, tf.tensor1d([3, 0, 3], 'int32'), 1), [r([2, 4, 3], 1)]);
    check('stack', (a, b) => tf.stack([a, b], 1), [r([2, 3], 1), r([2, 3], 2)]);
    check('unstack', (t) => tf.add(tf.unstack(t, 1)[0]!, tf.mul(tf.unstack(t, 1)[2]!, 3)), [r([2, 3, 4], 1)]);
    check('split', (t) => {
      const [a, , c] = tf.split(t, [1, 2, 1], 1);
      return tf.concat([tf.mul(a!, 2), c!], 1);
    }, [r([2, 4, 3], 1)]);
    check('reverse', (t) => tf.reverse(t, [0, 2]), [r([2, 3, 4], 1)]);
  });
});
