/**
 * Every layer type the 3-D models use, checked against central finite differences on tiny
 * random inputs (float32, eps 1e-2 unless noted, relative error < 1e-2), plus a few forward
 * checks against direct definitions.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kernelsWithoutGradient } from '../../../src/models/ops/gradients.ts';
import * as L from '../../../src/models/ops/layers.ts';
import { gradCheck, randomTensor, separatedTensor, setupTestBackend, type GradCheckOptions } from './grad-check.ts';

const TOL = 1e-2;
const results: Array<[string, number, number, number]> = [];

beforeAll(async () => {
  await setupTestBackend();
});

afterAll(() => {
  const width = Math.max(...results.map((r) => r[0].length));
  console.log(
    `layer gradients vs finite differences (${tf.getBackend()}): max per-coordinate / norm-wise relative error, coordinates checked\n` +
      results.map(([n, m, r, c]) => `  ${n.padEnd(width)}  ${m.toExponential(2)}  ${r.toExponential(2)}  ${c}`).join('\n'),
  );
});

function check(name: string, fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], opts: GradCheckOptions = {}): void {
  const report = gradCheck(fn, inputs, { samples: 32, ...opts });
  results.push([name, report.maxRelError, report.normRelError, report.inputs.reduce((a, r) => a + r.checked, 0)]);
  for (const r of report.inputs) expect(r.maxAbsGradient, `${name}: input ${r.input} has an all-zero gradient`).toBeGreaterThan(0);
  expect(report.maxRelError, `${name}: ${JSON.stringify(report.inputs)}`).toBeLessThan(TOL);
  expect(report.normRelError, name).toBeLessThan(TOL);
  inputs.forEach((t) => t.dispose());
}

const r = (shape: number[], seed: number | string, lo = -1, hi = 1) => randomTensor(shape, seed, lo, hi);
const sep = (shape: number[], seed: number | string, gap = 0.05) => separatedTensor(shape, seed, gap);
const T5 = (t: tf.Tensor) => t as tf.Tensor5D;
const T4 = (t: tf.Tensor) => t as tf.Tensor4D;
const T2 = (t: tf.Tensor) => t as tf.Tensor2D;
const T1 = (t: tf.Tensor) => t as tf.Tensor1D;

describe('convolutions', () => {
  for (const [strides, pad] of [[1, 'same'], [2, 'same'], [1, 'valid'], [2, 'valid']] as const) {
    it(`conv3d k3 stride ${strides} ${pad} + bias`, () =>
      check(
        `conv3d k3 s${strides} ${pad} +bias`,
        (x, w, b) => L.conv3d(T5(x), T5(w), T1(b), { strides, pad }),
        [r([2, 5, 4, 4, 2], 1), r([3, 3, 3, 2, 3], 2), r([3], 3)],
      ));
  }
  it('conv3d k1 (output head) + bias', () =>
    check('conv3d k1 +bias', (x, w, b) => L.conv3d(T5(x), T5(w), T1(b)), [r([1, 2, 3, 2, 4], 1), r([1, 1, 1, 4, 2], 2), r([2], 3)]));
  it('conv3d k2 s2 (patch embedding)', () =>
    check('conv3d k2 s2 valid +bias', (x, w, b) => L.conv3d(T5(x), T5(w), T1(b), { strides: 2, pad: 'valid' }), [r([1, 4, 4, 2, 1], 1), r([2, 2, 2, 1, 3], 2), r([3], 3)]));
  it('conv3dTranspose k2 s2 + bias (the decoders)', () => {
    const x = r([2, 2, 3, 2, 3], 1);
    expect(L.conv3dTranspose(T5(x), T5(r([2, 2, 2, 4, 3], 2))).shape).toEqual([2, 4, 6, 4, 4]);
    check('conv3dTranspose k2 s2 +bias', (a, w, b) => L.conv3dTranspose(T5(a), T5(w), T1(b)), [x, r([2, 2, 2, 4, 3], 2), r([4], 3)]);
  });
});

describe('normalisation', () => {
  it('instance norm with affine', () => {
    const y = L.instanceNorm(T5(r([2, 3, 2, 2, 3], 9, -2, 3)));
    const { mean, variance } = tf.moments(y, [1, 2, 3]);
    expect(Math.max(...tf.abs(mean).dataSync())).toBeLessThan(1e-5);
    expect(Math.max(...tf.abs(tf.sub(variance, 1)).dataSync())).toBeLessThan(1e-3);
    check('instance norm (affine)', (x, g, b) => L.instanceNorm(T5(x), { gamma: T1(g), beta: T1(b) }), [r([2, 3, 2, 2, 3], 1), r([3], 2, 0.5, 1.5), r([3], 3)]);
  });
  it('instance norm without affine (UnetResBlock)', () =>
    check('instance norm (no affine)', (x) => L.instanceNorm(T5(x)), [r([1, 3, 2, 2, 2], 1)]));
  it('layer norm', () => {
    check('layer norm [2,3,4]', (x, g, b) => L.layerNorm(x, { gamma: T1(g), beta: T1(b) }), [r([2, 3, 4], 1), r([4], 2, 0.5, 1.5), r([4], 3)]);
    check('layer norm rank 5 (no affine)', (x) => L.layerNorm(x), [r([1, 2, 2, 2, 6], 1)]);
  });
  it('batch norm with batch statistics (ContBatchNorm3d)', () => {
    const out = L.batchNorm(T5(r([2, 2, 2, 2, 3], 9, -2, 3)));
    expect(out.mean.shape).toEqual([3]);
    const { mean } = tf.moments(out.y, [0, 1, 2, 3]);
    expect(Math.max(...tf.abs(mean).dataSync())).toBeLessThan(1e-5);
    check('batch norm (batch stats, affine)', (x, g, b) => L.batchNorm(T5(x), { gamma: T1(g), beta: T1(b) }).y, [r([2, 2, 3, 2, 3], 1), r([3], 2, 0.5, 1.5), r([3], 3)]);
  });
});

describe('linear and attention', () => {
  it('linear 2-D and on a rank-5 activation', () => {
    check('linear [4,5]·[5,3]+b', (x, w, b) => L.linear(x, T2(w), T1(b)), [r([4, 5], 1), r([5, 3], 2), r([3], 3)]);
    check('linear rank 5 [1,2,2,2,5]·[5,3]+b', (x, w, b) => L.linear(x, T2(w), T1(b)), [r([1, 2, 2, 2, 5], 1), r([5, 3], 2), r([3], 3)]);
  });
  it('batch matMul (q·kᵀ)', () =>
    check('batchMatMul [2,2,5,3]·[2,2,5,3]ᵀ', (q, k) => tf.matMul(q, k, false, true), [r([2, 2, 5, 3], 1), r([2, 2, 5, 3], 2)]));
  it('softmax attention with relative-position bias and window mask', () => {
    const mask = tf.tensor4d(
      Array.from({ length: 2 * 25 }, (_, i) => ((i * 7) % 3 === 0 ? -100 : 0)),
      [2, 1, 5, 5],
    );
    check(
      'attention (bias + mask)',
      (q, k, v, bias) => L.attention(T4(q), T4(k), T4(v), { scale: 3 ** -0.5, bias, mask }),
      [r([2, 2, 5, 3], 1), r([2, 2, 5, 3], 2), r([2, 2, 5, 3], 3), r([2, 5, 5], 4)],
    );
  });
});

describe('activations', () => {
  it('GELU (erf)', () => {
    const y = L.gelu(tf.tensor1d([-1, 0, 1, 2])).dataSync();
    const expected = [-0.15865525393145707, 0, 0.8413447460685429, 1.9544997361036416];
    expected.forEach((e, i) => expect(y[i]).toBeCloseTo(e, 6));
    check('GELU (erf)', (x) => L.gelu(x), [r([3, 5], 1, -3, 3)]);
  });
  it('ReLU / LeakyReLU / sigmoid', () => {
    check('ReLU', (x) => L.relu(x), [sep([2, 3, 4], 1)]);
    check('LeakyReLU 0.01', (x) => L.leakyRelu(x), [sep([2, 3, 4], 2)]);
    check('sigmoid', (x) => tf.sigmoid(x), [r([2, 3, 4], 3, -3, 3)]);
  });
});

describe('pooling', () => {
  it('max pool 3D', () => {
    check('maxPool3d k2 s2', (x) => L.maxPool3d(T5(x)), [sep([1, 4, 4, 2, 2], 1)], { eps: 1e-2 });
    check('maxPool3d k3 s2 same', (x) => L.maxPool3d(T5(x), 3, 2, 'same'), [sep([1, 5, 4, 3, 2], 2)], { eps: 1e-2 });
    check('maxPool3d k3 s1 same (overlapping)', (x) => L.maxPool3d(T5(x), 3, 1, 'same'), [sep([1, 3, 4, 3, 2], 3)], { eps: 1e-2 });
  });
  it('avg pool 3D', () => {
    check('avgPool3d k2 s2', (x) => L.avgPool3d(T5(x)), [r([1, 4, 4, 2, 2], 1)]);
    check('avgPool3d k3 s1 same', (x) => L.avgPool3d(T5(x), 3, 1, 'same'), [r([1, 3, 3, 3, 2], 2)]);
  });
  it('global average pooling', () => {
    const y = L.globalAvgPool3d(T5(r([2, 2, 3, 2, 4], 5)));
    expect(y.shape).toEqual([2, 4]);
    check('global average pool', (x) => L.globalAvgPool3d(T5(x)), [r([2, 2, 3, 2, 4], 1)]);
  });
});

describe('rank-5 data movement', () => {
  it('skip concat / slice / pad / transpose', () => {
    check('concat (up, skip) on channels', (a, b) => tf.concat([a, b], 4), [r([1, 2, 2, 2, 3], 1), r([1, 2, 2, 2, 2], 2)]);
    check('slice rank 5', (x) => tf.slice(x, [0, 1, 0, 2, 1], [2, 2, 3, 1, 2]), [r([2, 3, 3, 3, 3], 1)]);
    check('pad rank 5 (window padding)', (x) => tf.pad(x, [[0, 0], [0, 2], [0, 1], [0, 3], [0, 0]]), [r([1, 2, 3, 2, 2], 1)]);
    check('transpose rank 5 (NCDHW↔NDHWC)', (x) => tf.transpose(x, [0, 4, 1, 2, 3]), [r([1, 2, 3, 2, 2], 1)]);
  });
  it('roll (shifted windows) matches torch.roll and has the right gradient', () => {
    const shape = [1, 4, 3, 5, 2];
    const x = r(shape, 7);
    const shifts: [number, number, number] = [-3, 1, -7];
    const y = L.roll3d(T5(x), shifts).arraySync() as number[][][][][];
    const xa = x.arraySync() as number[][][][][];
    const mod = (a: number, n: number) => ((a % n) + n) % n;
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 3; j++)
        for (let k = 0; k < 5; k++)
          for (let c = 0; c < 2; c++) {
            // torch.roll: out[i] = x[(i − shift) mod n]
            expect(y[0]![i]![j]![k]![c]).toBe(xa[0]![mod(i - shifts[0], 4)]![mod(j - shifts[1], 3)]![mod(k - shifts[2], 5)]![c]);
          }
    check('roll3d (two slices + concat per axis)', (t) => L.roll3d(T5(t), shifts), [x]);
  });
});

describe('coverage', () => {
  it('every kernel the layers run has a gradient', async () => {
    const x = r([1, 4, 4, 4, 2], 1) as tf.Tensor5D;
    const w = r([3, 3, 3, 2, 2], 2) as tf.Tensor5D;
    const wt = r([2, 2, 2, 2, 2], 3) as tf.Tensor5D;
    const b = r([2], 4) as tf.Tensor1D;
    const lin = r([2, 2], 5) as tf.Tensor2D;
    const q = r([1, 2, 4, 3], 6) as tf.Tensor4D;
    const info = await tf.profile(() =>
      tf.tidy(() => {
        const y = L.batchNorm(L.instanceNorm(L.conv3d(x, w, b), { gamma: b, beta: b }), { gamma: b, beta: b }).y;
        const p = L.maxPool3d(L.leakyRelu(L.gelu(L.relu(y))));
        const u = L.conv3dTranspose(L.avgPool3d(p, 1), wt, b);
        const z = L.layerNorm(L.linear(L.roll3d(u, [1, -1, 2]), lin, b), { gamma: b, beta: b });
        const a = L.attention(q, q, q, { scale: 0.5, bias: tf.ones([2, 4, 4]), mask: tf.zeros([1, 1, 4, 4]) });
        return tf.add(tf.sum(L.globalAvgPool3d(z)), tf.sum(tf.sigmoid(a)));
      }),
    );
    const used = [...new Set(info.kernelNames)].sort();
    console.log(`kernels run by the layers: ${used.join(', ')}`);
    expect(kernelsWithoutGradient(used)).toEqual([]);
  });
});
