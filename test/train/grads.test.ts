/** Gradient utilities (src/train/grads.ts): global norm, clipping, finiteness, accumulation. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  GradientAccumulator,
  allFinite,
  clipByGlobalNorm,
  globalNorm,
  globalNormTensor,
  nonFiniteNames,
} from '../../src/train/grads.ts';
import { setupTestBackend } from '../models/ops/grad-check.ts';

beforeAll(async () => {
  await setupTestBackend();
});

const values = (t: tf.Tensor | undefined): number[] => Array.from(t!.dataSync());

describe('globalNorm', () => {
  it('is the L2 norm over all tensors together', () => {
    const grads = { a: tf.tensor([3, 4]), b: tf.tensor([[12]]) };
    expect(globalNorm(grads)).toBe(13);
    expect(globalNorm(new Map(Object.entries(grads)))).toBe(13);
    const t = globalNormTensor(grads);
    expect(t.shape).toEqual([]);
    expect(t.dataSync()[0]).toBe(13);
    t.dispose();
    expect(globalNorm({})).toBe(0);
    tf.dispose(Object.values(grads));
  });
});

describe('clipByGlobalNorm', () => {
  it('scales by maxNorm / (norm + 1e-6) when that is below 1, and returns the pre-clip norm', () => {
    const grads = { a: tf.tensor([3, 4]), b: tf.tensor([12]) };
    const r = clipByGlobalNorm(grads, 6.5);
    const scale = 6.5 / (13 + 1e-6);
    expect(r.norm).toBe(13);
    expect(r.clipped).toBe(true);
    expect(r.scale).toBeCloseTo(scale, 15);
    values(r.grads.get('a')).forEach((v, i) => expect(v).toBeCloseTo([3, 4][i]! * scale, 6));
    expect(values(r.grads.get('b'))[0]).toBeCloseTo(12 * scale, 5);
    expect(globalNorm(r.grads)).toBeCloseTo(6.5, 5);
    // inputs untouched
    expect(values(grads.a)).toEqual([3, 4]);
    tf.dispose([...r.grads.values()]);

    // norm exactly at the limit: clip_coef = 13 / (13 + 1e-6) < 1 still scales (as PyTorch)
    const at = clipByGlobalNorm(grads, 13);
    expect(at.clipped).toBe(true);
    expect(values(at.grads.get('b'))[0]).toBeCloseTo(12 * (13 / (13 + 1e-6)), 5);
    tf.dispose([...at.grads.values()]);
    tf.dispose(Object.values(grads));
  });

  it('leaves gradients below the limit unchanged', () => {
    const grads = new Map([['w', tf.tensor([[0.1, -0.2], [0.3, 0.4]])]]);
    const r = clipByGlobalNorm(grads, 1);
    expect(r.clipped).toBe(false);
    expect(r.scale).toBe(1);
    expect(r.norm).toBeCloseTo(Math.sqrt(0.3), 6);
    expect(values(r.grads.get('w'))).toEqual(values(grads.get('w')));
    expect(r.grads.get('w')!.shape).toEqual([2, 2]);
    tf.dispose([...r.grads.values(), ...grads.values()]);
  });

  it('propagates a non-finite norm as PyTorch does, and validates maxNorm', () => {
    const grads = { a: tf.tensor([1, Number.NaN]) };
    const r = clipByGlobalNorm(grads, 1);
    expect(Number.isNaN(r.norm)).toBe(true);
    expect(values(r.grads.get('a')).every(Number.isNaN)).toBe(true);
    tf.dispose([...r.grads.values(), grads.a]);
    expect(() => clipByGlobalNorm({}, 0)).toThrow(/maxNorm/);
  });
});

describe('allFinite / nonFiniteNames', () => {
  it('detects NaN and ±Inf (huge finite values, whose squares overflow, pass)', () => {
    const ok = { a: tf.tensor([1, -2]), big: tf.tensor([3e38, -3e38]) };
    expect(allFinite(ok)).toBe(true);
    expect(allFinite({})).toBe(true);
    const bad = new Map<string, tf.Tensor>([
      ['a', tf.tensor([1, 2])],
      ['n', tf.tensor([0, Number.NaN])],
      ['i', tf.tensor([[Number.NEGATIVE_INFINITY]])],
    ]);
    expect(allFinite(bad)).toBe(false);
    expect(nonFiniteNames(bad)).toEqual(['n', 'i']);
    expect(nonFiniteNames(ok)).toEqual([]);
    tf.dispose([...Object.values(ok), ...bad.values()]);
  });
});

describe('GradientAccumulator', () => {
  it('yields the mean over micro-batches; a name missing from some counts as zero there', () => {
    const acc = new GradientAccumulator();
    const batches: Array<Record<string, tf.Tensor>> = [
      { w: tf.tensor([1, 2]), b: tf.tensor([10]) },
      { w: tf.tensor([3, -4]) },
      { w: tf.tensor([5, 8]), b: tf.tensor([-1]) },
    ];
    for (const g of batches) acc.add(g);
    expect(acc.count).toBe(3);
    const mean = acc.mean();
    expect(values(mean.get('w'))).toEqual([3, 2]);
    expect(values(mean.get('b'))).toEqual([3]);
    const sum = acc.sum();
    expect(values(sum.get('w'))).toEqual([9, 6]);
    // the inputs are not disposed or changed
    expect(values(batches[0]!['w'])).toEqual([1, 2]);
    tf.dispose([...mean.values(), ...sum.values()]);
    batches.forEach((g) => tf.dispose(Object.values(g)));

    // next cycle reuses the sums; names absent this cycle are absent from its mean
    acc.reset();
    const g = { w: tf.tensor([2, 2]) };
    acc.add(g);
    const m2 = acc.takeMean();
    expect([...m2.keys()]).toEqual(['w']);
    expect(values(m2.get('w'))).toEqual([2, 2]);
    expect(acc.count).toBe(0);
    expect(() => acc.mean()).toThrow(/no micro-batch/);
    tf.dispose([...m2.values(), g.w]);
    acc.dispose();
  });

  it('rejects a shape change within a cycle', () => {
    const acc = new GradientAccumulator();
    const a = tf.tensor([1, 2]);
    const b = tf.tensor([1, 2, 3]);
    acc.add({ w: a });
    expect(() => acc.add({ w: b })).toThrow(/shape \[3\].*\[2\]/);
    tf.dispose([a, b]);
    acc.dispose();
  });

  it('keeps its sums when the caller adds inside tf.tidy', () => {
    const acc = new GradientAccumulator();
    tf.tidy(() => acc.add({ w: tf.tensor([1, 1]) }));
    tf.tidy(() => acc.add({ w: tf.tensor([2, 3]) }));
    const m = acc.mean();
    expect(values(m.get('w'))).toEqual([1.5, 2]);
    tf.dispose([...m.values()]);
    acc.dispose();
  });
});

describe('memory', () => {
  it('repeated norm / clip / finiteness / accumulation cycles leak no tensors', () => {
    const grads = { a: tf.tensor([[0.5, -1.5], [2, 0.25]]), b: tf.tensor([3, -4, 1]) };
    const acc = new GradientAccumulator();
    const cycle = (): void => {
      globalNorm(grads);
      allFinite(grads);
      nonFiniteNames(grads);
      acc.add(grads);
      acc.add(grads);
      const mean = acc.takeMean();
      const r = clipByGlobalNorm(mean, 1);
      tf.dispose([...mean.values(), ...r.grads.values()]);
      const r2 = clipByGlobalNorm(grads, 100);
      tf.dispose([...r2.grads.values()]);
    };
    cycle();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) cycle();
    expect(tf.memory().numTensors).toBe(before);
    acc.dispose();
    tf.dispose(Object.values(grads));
  });
});
