/**
 * AdamW (src/train/adamw.ts) against torch.optim.AdamW's update written out in float64:
 * a closed-form first step, several steps against a scalar reference, state round trips,
 * zero and missing gradients, and memory stability.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, type AdamWState } from '../../src/train/adamw.ts';
import { setupTestBackend } from '../models/ops/grad-check.ts';

beforeAll(async () => {
  await setupTestBackend();
});

const f32 = (xs: number[]): number[] => xs.map((x) => Math.fround(x));

/**
 * |actual − expected| ≤ rel·scaleᵢ + abs, scaleᵢ = |expectedᵢ| unless given (for a difference of
 * two terms, the size of the terms: float32 cannot resolve a cancellation better than that).
 */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, abs = 0, what = '', scale?: number[]): void {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = rel * (scale?.[i] ?? Math.abs(e)) + abs;
    if (!(Math.abs(a - e) <= tol)) {
      throw new Error(`${what}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${tol})`);
    }
  }
}

interface RefOptions {
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
  amsgrad: boolean;
}

/** Scalar float64 AdamW, element by element, as torch.optim.AdamW. */
class RefAdamW {
  m: number[];
  v: number[];
  vmax: number[];
  t = 0;
  constructor(
    public theta: number[],
    private readonly o: RefOptions,
  ) {
    this.m = theta.map(() => 0);
    this.v = theta.map(() => 0);
    this.vmax = theta.map(() => 0);
  }
  step(g: number[], lr: number): void {
    const { beta1, beta2, eps, wd, amsgrad } = this.o;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    for (let i = 0; i < this.theta.length; i++) {
      const gi = g[i]!;
      let th = this.theta[i]! * (1 - lr * wd);
      this.m[i] = beta1 * this.m[i]! + (1 - beta1) * gi;
      this.v[i] = beta2 * this.v[i]! + (1 - beta2) * gi * gi;
      this.vmax[i] = Math.max(this.vmax[i]!, this.v[i]!);
      const second = amsgrad ? this.vmax[i]! : this.v[i]!;
      const denom = Math.sqrt(second) / Math.sqrt(bc2) + eps;
      th -= (lr / bc1) * (this.m[i]! / denom);
      this.theta[i] = th;
    }
  }
}

function variable(values: number[], shape?: number[]): tf.Variable {
  const t = tf.tensor(values, shape ?? [values.length], 'float32');
  const v = tf.variable(t);
  t.dispose();
  return v;
}

/** Seeded pseudo-random numbers in [-1, 1) (deterministic, float32-representable). */
function randoms(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround(s / 2 ** 31 - 1);
  });
}

async function stateOf(opt: AdamW, key: string): Promise<Float32Array> {
  const st = await opt.getState();
  const e = st.tensors.get(key);
  if (e === undefined) throw new Error(`no state ${key}`);
  return e.data;
}

describe('AdamW', () => {
  it('has VoCo defaults', () => {
    const opt = new AdamW();
    expect([opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weightDecay, opt.amsgrad]).toEqual([1e-4, 0.9, 0.999, 1e-8, 0.01, true]);
  });

  it('first step matches the closed form θ(1 − lr·λ) − lr·g/(|g| + ε)', async () => {
    for (const amsgrad of [true, false]) {
      const theta0 = f32([1.5, -2, 0.25, 3, 0, -0.75, 0.125]);
      const g = f32([0.3, -1.2, 1e-8, 0, 2.5, -1e-3, 7]);
      const lr = 0.5;
      const wd = 0.01;
      const p = variable(theta0);
      const opt = new AdamW({ weightDecay: wd, amsgrad });
      const gt = tf.tensor(g, [g.length], 'float32');
      opt.step({ p: gt }, new Map([['p', p]]), lr);
      // m̂ = g, v̂ = g² after one step, so the update is lr·g/(|g| + ε) exactly.
      const decayed = theta0.map((th) => th * (1 - lr * wd));
      const update = g.map((gi) => (lr * gi) / (Math.abs(gi) + 1e-8));
      const expected = decayed.map((d, i) => d - update[i]!);
      const scale = decayed.map((d, i) => Math.abs(d) + Math.abs(update[i]!));
      expectClose(p.dataSync(), expected, 2e-7, 0, `theta amsgrad=${amsgrad}`, scale);
      // The ε at work: g = 1e-8 moves by lr·½, g = 0 only by the decay.
      expect(p.dataSync()[2]).toBeCloseTo(0.25 * (1 - lr * wd) - 0.25, 6);
      expectClose(await stateOf(opt, 'p.exp_avg'), g.map((x) => 0.1 * x), 2e-7, 0, 'exp_avg');
      expectClose(await stateOf(opt, 'p.exp_avg_sq'), g.map((x) => 0.001 * x * x), 3e-7, 0, 'exp_avg_sq');
      if (amsgrad) expectClose(await stateOf(opt, 'p.max_exp_avg_sq'), g.map((x) => 0.001 * x * x), 3e-7, 0, 'max');
      else expect((await opt.getState()).tensors.has('p.max_exp_avg_sq')).toBe(false);
      expect(await stateOf(opt, 'p.step')).toEqual(Float32Array.of(1));
      gt.dispose();
      p.dispose();
      opt.dispose();
    }
  });

  it('first step of a 2-D variable with non-default betas and eps matches the float64 reference', () => {
    const theta0 = randoms(12, 7).map((x) => Math.fround(3 * x));
    const g = randoms(12, 8);
    const o = { beta1: 0.8, beta2: 0.99, eps: 1e-3, wd: 0.1, amsgrad: true };
    const ref = new RefAdamW([...theta0], o);
    ref.step(g, 0.25);
    const p = variable(theta0, [3, 4]);
    const opt = new AdamW({ betas: [o.beta1, o.beta2], eps: o.eps, weightDecay: o.wd, amsgrad: true });
    const gt = tf.tensor(g, [3, 4], 'float32');
    opt.step(new Map([['w', gt]]), new Map([['w', p]]), 0.25);
    expectClose(p.dataSync(), ref.theta, 3e-7, 1e-7, 'theta');
    tf.dispose([p, gt]);
    opt.dispose();
  });

  for (const amsgrad of [true, false]) {
    for (const wd of [0, 0.05]) {
      for (const beta2 of [0.999, 0.9]) {
        it(`10 steps match the scalar float64 reference (amsgrad ${amsgrad}, weight decay ${wd}, β₂ ${beta2})`, async () => {
          const n = 16;
          const theta0 = randoms(n, 1);
          const o = { beta1: 0.9, beta2, eps: 1e-8, wd, amsgrad };
          const ref = new RefAdamW([...theta0], o);
          const p = variable(theta0);
          const opt = new AdamW({ weightDecay: wd, amsgrad, betas: [0.9, beta2] });
          const vars = new Map([['p', p]]);
          for (let s = 0; s < 10; s++) {
            // Large gradients first, then small ones: v decays below its maximum, so amsgrad matters.
            const scale = s < 3 ? 2 : 0.05;
            const g = randoms(n, 100 + s).map((x) => Math.fround(x * scale));
            const lr = 0.01 * (s + 1);
            ref.step(g, lr);
            const gt = tf.tensor(g, [n], 'float32');
            opt.step({ p: gt }, vars, lr);
            gt.dispose();
          }
          expectClose(p.dataSync(), ref.theta, 2e-6, 1e-7, 'theta');
          expectClose(await stateOf(opt, 'p.exp_avg'), ref.m, 1e-5, 1e-9, 'exp_avg');
          expectClose(await stateOf(opt, 'p.exp_avg_sq'), ref.v, 1e-5, 1e-12, 'exp_avg_sq');
          if (amsgrad) expectClose(await stateOf(opt, 'p.max_exp_avg_sq'), ref.vmax, 1e-5, 1e-12, 'max_exp_avg_sq');
          expect(opt.stepCount).toBe(10);
          expect(opt.variableStep('p')).toBe(10);
          p.dispose();
          opt.dispose();
        });
      }
    }
  }

  it('amsgrad changes the result once v falls below its maximum', () => {
    const run = (amsgrad: boolean): Float32Array => {
      const p = variable([1, -1]);
      const opt = new AdamW({ amsgrad, betas: [0.9, 0.9] });
      for (const g of [[1, 1], [0.01, -0.01], [0.01, 0.01]]) {
        const gt = tf.tensor(g, [2], 'float32');
        opt.step({ p: gt }, new Map([['p', p]]), 0.1);
        gt.dispose();
      }
      const out = p.dataSync() as Float32Array;
      p.dispose();
      opt.dispose();
      return out;
    };
    const a = run(true);
    const b = run(false);
    expect(Math.abs(a[0]! - b[0]!)).toBeGreaterThan(1e-4);
  });

  it('a zero gradient still decays the weights and the moments', async () => {
    const theta0 = f32([2, -3, 0.5]);
    const p = variable(theta0);
    const opt = new AdamW({ weightDecay: 0.1 });
    const ref = new RefAdamW([...theta0], { beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.1, amsgrad: true });
    const zero = tf.zeros([3]);
    opt.step({ p: zero }, new Map([['p', p]]), 0.5);
    ref.step([0, 0, 0], 0.5);
    expectClose(p.dataSync(), theta0.map((x) => x * (1 - 0.05)), 1.5e-7, 0, 'decay only');
    expect(Array.from(await stateOf(opt, 'p.exp_avg'))).toEqual([0, 0, 0]);
    const g = tf.tensor([1, -2, 0.5]);
    opt.step({ p: g }, new Map([['p', p]]), 0.5);
    ref.step([1, -2, 0.5], 0.5);
    opt.step({ p: zero }, new Map([['p', p]]), 0.5);
    ref.step([0, 0, 0], 0.5);
    expectClose(p.dataSync(), ref.theta, 1e-6, 1e-7, 'after zero step');
    expectClose(await stateOf(opt, 'p.exp_avg'), ref.m, 1e-6, 0, 'm');
    expect(opt.variableStep('p')).toBe(3);
    tf.dispose([zero, g, p]);
    opt.dispose();
  });

  it('skips a variable without a gradient (no decay, no state, step count unchanged)', async () => {
    const a = variable([1, 2]);
    const b = variable([3, -4]);
    const vars = new Map([
      ['a', a],
      ['b', b],
    ]);
    const opt = new AdamW({ weightDecay: 0.2 });
    const ga = tf.tensor([0.5, -0.5]);
    const gb = tf.tensor([2, 0.25]);
    const r = opt.step({ a: ga }, vars, 0.1);
    expect(r).toEqual({ updated: ['a'], skipped: ['b'] });
    expect(Array.from(b.dataSync())).toEqual([3, -4]);
    expect(opt.variableStep('b')).toBe(0);
    expect((await opt.getState()).tensors.has('b.exp_avg')).toBe(false);
    // b's first update, at the optimiser's second step, uses bias corrections for t = 1.
    opt.step({ a: ga, b: gb }, vars, 0.1);
    expect(opt.variableStep('a')).toBe(2);
    expect(opt.variableStep('b')).toBe(1);
    expectClose(b.dataSync(), [3 * 0.98 - 0.1, -4 * 0.98 - 0.1], 2e-7, 0, 'b');
    tf.dispose([a, b, ga, gb]);
    opt.dispose();
  });

  it('state round trip: a restored optimiser makes the identical next step', async () => {
    for (const amsgrad of [true, false]) {
      const init = { w: randoms(6, 11), 'layer.0.bias': randoms(3, 12) };
      const shapes = { w: [2, 3], 'layer.0.bias': [3] };
      const mk = (): Map<string, tf.Variable> =>
        new Map(Object.entries(init).map(([k, v]) => [k, variable(v, shapes[k as keyof typeof shapes])]));
      const varsA = mk();
      const optA = new AdamW({ amsgrad, noDecay: (n) => n.endsWith('.bias') });
      const grads = (s: number): Record<string, tf.Tensor> => ({
        w: tf.tensor(randoms(6, 20 + s), [2, 3]),
        'layer.0.bias': tf.tensor(randoms(3, 40 + s), [3]),
      });
      for (let s = 0; s < 3; s++) {
        const g = grads(s);
        optA.step(g, varsA, 0.01);
        tf.dispose(Object.values(g));
      }
      const state: AdamWState = await optA.getState();
      expect(state.step).toBe(3);
      expect([...state.tensors.keys()].sort()).toEqual(
        (amsgrad
          ? ['w.step', 'w.exp_avg', 'w.exp_avg_sq', 'w.max_exp_avg_sq', 'layer.0.bias.step', 'layer.0.bias.exp_avg', 'layer.0.bias.exp_avg_sq', 'layer.0.bias.max_exp_avg_sq']
          : ['w.step', 'w.exp_avg', 'w.exp_avg_sq', 'layer.0.bias.step', 'layer.0.bias.exp_avg', 'layer.0.bias.exp_avg_sq']
        ).sort(),
      );
      const varsB = new Map([...varsA].map(([k, v]) => [k, tf.variable(v.clone())]));
      const optB = new AdamW({ amsgrad, noDecay: (n) => n.endsWith('.bias') });
      optB.setState(state);
      expect(optB.stepCount).toBe(3);
      const g = grads(3);
      optA.step(g, varsA, 0.02);
      optB.step(g, varsB, 0.02);
      tf.dispose(Object.values(g));
      for (const [k, v] of varsA) expect(Array.from(varsB.get(k)!.dataSync()), k).toEqual(Array.from(v.dataSync()));
      const sa = await optA.getState();
      const sb = await optB.getState();
      for (const [k, e] of sa.tensors) expect(Array.from(sb.tensors.get(k)!.data), k).toEqual(Array.from(e.data));
      tf.dispose([...varsA.values(), ...varsB.values()]);
      optA.dispose();
      optB.dispose();
    }
  });

  it('noDecay exempts matching variables from weight decay', () => {
    const w = variable([1]);
    const bias = variable([1]);
    const opt = new AdamW({ weightDecay: 0.5, noDecay: (n) => n === 'bias' });
    const z = tf.zeros([1]);
    opt.step({ w: z, bias: z }, new Map([['w', w], ['bias', bias]]), 0.1);
    expect(w.dataSync()[0]).toBeCloseTo(0.95, 7);
    expect(bias.dataSync()[0]).toBe(1);
    expect(opt.weightDecayFor('bias')).toBe(0);
    tf.dispose([w, bias, z]);
    opt.dispose();
  });

  it('leaks no tensors across repeated steps and frees its state on dispose', () => {
    const before = tf.memory().numTensors;
    const vars = new Map([
      ['a', variable(randoms(8, 1), [2, 4])],
      ['b', variable(randoms(3, 2))],
    ]);
    const ga = tf.tensor(randoms(8, 3), [2, 4]);
    const gb = tf.tensor(randoms(3, 4));
    const opt = new AdamW();
    opt.step({ a: ga, b: gb }, vars, 1e-3);
    const after1 = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) opt.step({ a: ga, b: gb }, vars, 1e-3);
    opt.step({ a: ga }, vars, 0);
    expect(tf.memory().numTensors).toBe(after1);
    opt.dispose();
    tf.dispose([ga, gb, ...vars.values()]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options, shapes, names and state with clear errors', () => {
    expect(() => new AdamW({ betas: [1, 0.999] })).toThrow(/betas\[0\]/);
    expect(() => new AdamW({ eps: -1 })).toThrow(/eps/);
    expect(() => new AdamW({ weightDecay: Number.NaN })).toThrow(/weightDecay/);
    const p = variable([1, 2]);
    const g3 = tf.tensor([1, 2, 3]);
    const g2 = tf.tensor([1, 2]);
    const opt = new AdamW();
    expect(() => opt.step({ p: g3 }, new Map([['p', p]]), 1e-3)).toThrow(/shape \[3\].*\[2\]/);
    expect(() => opt.step({ q: g2 }, new Map([['p', p]]), 1e-3)).toThrow(/"q" has no variable/);
    expect(() => opt.step({ p: g2 }, new Map([['p', p]]), -1)).toThrow(/learning rate/);
    expect(opt.stepCount).toBe(0);
    const state = (extra: Record<string, { shape: number[]; data: Float32Array }>): AdamWState => ({
      step: 1,
      tensors: new Map(Object.entries(extra)),
    });
    const d = { shape: [2], data: new Float32Array(2) };
    expect(() => opt.setState(state({ 'p.exp_avg': d, 'p.exp_avg_sq': d }))).toThrow(/max_exp_avg_sq" is missing/);
    expect(() => opt.setState(state({ 'p.exp_avg': d }))).toThrow(/exp_avg_sq" is missing/);
    expect(() => opt.setState(state({ 'p.momentum': d }))).toThrow(/unknown state entry/);
    expect(() => opt.setState(state({ 'p.exp_avg': d, 'p.exp_avg_sq': d, 'p.max_exp_avg_sq': { shape: [3], data: new Float32Array(3) } }))).toThrow(
      /shape/,
    );
    opt.setState(state({ 'p.exp_avg': d, 'p.exp_avg_sq': d, 'p.max_exp_avg_sq': d }));
    expect(() => opt.step({ p: g3 }, new Map([['p', variable([1, 2, 3])]]), 1e-3)).toThrow(/state of "p" has shape \[2\]/);
    tf.dispose([p, g3, g2]);
    opt.dispose();
  });
});
