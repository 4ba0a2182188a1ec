/**
 * VoCo losses (src/voco/losses.ts): values against the PyTorch reference fixture
 * (test/fixtures/swinunetr/voco/loss_*, voco_reference.json), the batched v1/v2 compositions
 * against an independent float64 implementation written below from spec/REFERENCE.md §1.6/§2.3,
 * and the TF.js gradients against central differences of that float64 implementation (so the
 * differences are free of float32 rounding). Detached inputs (teacher rows, the second base of
 * each regularisation pair) are held fixed in the differences and must get zero gradients.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  assignLogits,
  cosineSimilarityMatrix,
  regularizationLoss,
  stopGradient,
  vocoCeLoss,
  vocoV1Loss,
  vocoV2CeLoss,
  vocoV2Loss,
  withoutGradient,
  type VocoProjections,
} from '../../src/voco/losses.ts';
import { createRng } from '../../src/util/rng.ts';
import { FIXTURES, readFixture, setupBackend } from '../models/swinunetr/helpers.ts';

let backend = '';
beforeAll(async () => {
  backend = await setupBackend();
});

// ---------------------------------------------------------------------------------------------
// float64 reference, rows as number[][]

type M = number[][];

const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
const norm = (a: number[]) => Math.sqrt(dot(a, a));
const relu = (x: number) => Math.max(x, 0);
function cos(a: number[], b: number[]): number {
  return dot(a, b) / (Math.max(norm(a), 1e-8) * Math.max(norm(b), 1e-8));
}
function assign64(f: M, b: M): M {
  return f.map((x) => b.map((y) => relu(cos(x, y))));
}
function pos64(y: M, p: M): number {
  let num = 0;
  let den = 0;
  y.forEach((row, r) => row.forEach((l, k) => {
    num += -l * Math.log(1 - Math.abs(l - p[r]![k]!) + 1e-6);
    den += l;
  }));
  return num / (den + 1e-6);
}
function neg64(y: M, p: M, f: (p: number) => number): number {
  let num = 0;
  let zeros = 0;
  y.forEach((row, r) => row.forEach((l, k) => {
    if (l === 0) {
      num += f(p[r]![k]!);
      zeros++;
    }
  }));
  return num / (zeros + 1e-6);
}
const ce1 = (y: M, p: M) => ({ pos: pos64(y, p), neg: neg64(y, p, (q) => q * q) });
const ce2 = (y: M, p: M) => pos64(y, p) + neg64(y, p, (q) => -Math.log(1 - q + 1e-6));
/** mean over i < j of relu(cos(bases_i, detached_j))². */
function reg64(bases: M, detached: M): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < bases.length; i++)
    for (let j = i + 1; j < bases.length; j++) {
      s += relu(cos(bases[i]!, detached[j]!)) ** 2;
      n++;
    }
  return s / n;
}

interface Rows {
  xs: M;
  bs: M;
  xt: M;
  bt: M;
  labels: M[];
  /** The student bases as seen by the stop-gradient side of the regulariser. */
  bsDetached: M;
}

const chunk = (m: M, b: number) => Array.from({ length: b }, (_, i) => m.slice((i * m.length) / b, ((i + 1) * m.length) / b));

function v1Loss64(r: Rows): { pos: number; neg: number; reg: number; total: number } {
  const b = r.labels.length;
  const [xs, bs, xt, bt, bd] = [r.xs, r.bs, r.xt, r.bt, r.bsDetached].map((m) => chunk(m, b)) as [M[], M[], M[], M[], M[]];
  let pos = 0;
  let neg = 0;
  let reg = 0;
  for (let i = 0; i < b; i++) {
    const a1 = assign64(xs[i]!, bt[i]!);
    const a2 = assign64(xt[i]!, bs[i]!);
    const ce = ce1(r.labels[i]!, a1.map((row, q) => row.map((v, k) => 0.5 * (v + a2[q]![k]!))));
    pos += ce.pos / b;
    neg += ce.neg / b;
    reg += reg64(bs[i]!, bd[i]!) / b;
  }
  return { pos, neg, reg, total: pos + neg + reg };
}

function v2Loss64(r: Rows): { intra: number; inter: number; reg: number; total: number } {
  const b = r.labels.length;
  const [xs, bs, xt, bt, bd] = [r.xs, r.bs, r.xt, r.bt, r.bsDetached].map((m) => chunk(m, b)) as [M[], M[], M[], M[], M[]];
  let intra = 0;
  let inter = 0;
  let reg = 0;
  for (let i = 0; i < b; i++) {
    const j = (i + 1) % b;
    intra += ce2(r.labels[i]!, assign64(xs[i]!, bt[i]!)) / b;
    inter += ce2(assign64(xt[i]!, bt[j]!), assign64(xs[i]!, bs[j]!)) / b;
    reg += reg64(bs[i]!, bd[i]!) / b;
  }
  return { intra, inter, reg, total: intra + inter + reg };
}

// ---------------------------------------------------------------------------------------------
// helpers

const toRows = (t: tf.Tensor): M => t.arraySync() as M;

function randomRows(rows: number, d: number, seed: string): M {
  const rng = createRng(7, seed);
  return Array.from({ length: rows }, () => Array.from({ length: d }, () => rng.normal()));
}

/** Labels [B][R][K] like VoCo's: ≤ 4 non-zeros per row, summing to 1, the rest exactly 0. */
function randomLabels(b: number, r: number, k: number, seed: string): M[] {
  const rng = createRng(7, seed);
  return Array.from({ length: b }, () =>
    Array.from({ length: r }, () => {
      const row = new Array<number>(k).fill(0);
      const idx = rng.shuffle(Array.from({ length: k }, (_, i) => i)).slice(0, Math.min(2, k));
      const w = idx.map(() => 0.2 + rng.float());
      const s = w.reduce((a, c) => a + c, 0);
      idx.forEach((i, q) => (row[i] = Math.fround(w[q]! / s)));
      return row;
    }),
  );
}

/** Rounds to float32 (what the TF.js side sees), so both sides start from the same numbers. */
const f32 = (m: M): M => m.map((row) => row.map(Math.fround));

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** Central differences of a float64 function of one matrix. */
function numericGrad(f: (m: M) => number, m: M, h = 1e-6): M {
  return m.map((row, i) =>
    row.map((_, j) => {
      const plus = m.map((r) => [...r]);
      const minus = m.map((r) => [...r]);
      plus[i]![j]! += h;
      minus[i]![j]! -= h;
      return (f(plus) - f(minus)) / (2 * h);
    }),
  );
}

/** max |a − n| / max |n|: the gradient error relative to the gradient's size. */
function gradError(analytic: M, numeric: M): number {
  let diff = 0;
  let scale = 0;
  analytic.forEach((row, i) => row.forEach((a, j) => {
    const n = numeric[i]![j]!;
    diff = Math.max(diff, Math.abs(a - n));
    scale = Math.max(scale, Math.abs(n));
  }));
  return scale > 0 ? diff / scale : diff;
}

const maxAbs = (m: M) => Math.max(...m.flat().map(Math.abs));

// ---------------------------------------------------------------------------------------------

describe('VoCo losses vs the PyTorch reference fixture', () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'voco', 'voco_reference.json'), 'utf8')) as {
    losses: { pos_loss: number; neg_loss: number; reg_loss: number; total: number };
  };
  const load = (name: string) => {
    const f = readFixture(`voco/${name}`);
    return tf.tensor2d(f.data, [f.shape[0]!, f.shape[1]!]);
  };

  it('assignLogits = relu(cos) within 1e-6; pos/neg/reg/total within 1e-5 relative', () => {
    const feats = load('loss_feats');
    const bases = load('loss_bases');
    const labels = load('loss_labels');
    const expected = readFixture('voco/loss_assign_logits').data;
    const logits = assignLogits(feats, bases);
    const ours = logits.dataSync();
    let assignErr = 0;
    for (let i = 0; i < expected.length; i++) assignErr = Math.max(assignErr, Math.abs(ours[i]! - expected[i]!));

    const { pos, neg } = vocoCeLoss(labels, logits);
    const reg = regularizationLoss(bases);
    const [p, n, r] = [pos, neg, reg].map((t) => t.dataSync()[0]!) as [number, number, number];
    // The batched v1 loss with one volume and teacher = student reduces to the same numbers
    // (½·(a + a) = a exactly).
    const v1 = vocoV1Loss({
      studentRandom: feats,
      studentBases: bases,
      teacherRandom: feats,
      teacherBases: bases,
      labels: tf.expandDims(labels, 0) as tf.Tensor3D,
    });
    const errors = {
      assign: assignErr,
      pos: relErr(p, ref.losses.pos_loss),
      neg: relErr(n, ref.losses.neg_loss),
      reg: relErr(r, ref.losses.reg_loss),
      total: relErr(p + n + r, ref.losses.total),
      v1Total: relErr(v1.total.dataSync()[0]!, ref.losses.total),
      v1Pos: relErr(v1.terms.pos.dataSync()[0]!, ref.losses.pos_loss),
      v1Neg: relErr(v1.terms.neg.dataSync()[0]!, ref.losses.neg_loss),
      v1Reg: relErr(v1.terms.reg.dataSync()[0]!, ref.losses.reg_loss),
    };
    console.log(`[${backend}] loss parity (assign: max abs; others: relative): ${JSON.stringify(errors)}`);
    expect(errors.assign).toBeLessThanOrEqual(1e-6);
    for (const [name, e] of Object.entries(errors)) if (name !== 'assign') expect(e, name).toBeLessThanOrEqual(1e-5);
    tf.dispose([feats, bases, labels, logits, pos, neg, reg, v1.total, ...Object.values(v1.terms)]);
  });

  it('the fixture inputs agree with the float64 reference too', () => {
    const feats = toRows(load('loss_feats'));
    const bases = toRows(load('loss_bases'));
    const labels = toRows(load('loss_labels'));
    const a = assign64(feats, bases);
    const ce = ce1(labels, a);
    expect(relErr(ce.pos, ref.losses.pos_loss)).toBeLessThan(1e-6);
    expect(relErr(ce.neg, ref.losses.neg_loss)).toBeLessThan(1e-6);
    expect(relErr(reg64(bases, bases), ref.losses.reg_loss)).toBeLessThan(1e-6);
  });
});

describe('cosine similarity', () => {
  it('matches the definition, and an all-zero row gives 0 (not NaN) with a finite gradient', () => {
    const a = tf.tensor2d([[3, 4, 0], [0, 0, 0]]);
    const b = tf.tensor2d([[1, 0, 0], [0, 0, 2]]);
    expect(Array.from(cosineSimilarityMatrix(a, b).dataSync())).toEqual([Math.fround(0.6), 0, 0, 0]);
    const g = tf.grad((x: tf.Tensor) => tf.sum(cosineSimilarityMatrix(x as tf.Tensor2D, b)))(a);
    expect(Array.from(g.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([a, b, g]);
  });
});

describe('stopGradient / withoutGradient', () => {
  it('pass values through and give zero gradients', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const [gs] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(stopGradient(t), t)))([x]);
    expect(Array.from(gs!.dataSync())).toEqual([1, 2, 3]); // d/dt (sg(t)·t) = sg(t)
    const [gw] = tf.grads((t: tf.Tensor) => tf.add(tf.sum(withoutGradient(() => tf.square(t), [t])), tf.sum(t)))([x]);
    expect(Array.from(gw!.dataSync())).toEqual([1, 1, 1]);
    tf.dispose([x, gs!, gw!]);
  });
});

describe('batched v1 / v2 losses vs float64 and their gradients vs central differences', () => {
  const B = 2;
  const R = 2;
  const K = 4;
  const D = 6;
  const rows: Rows = {
    xs: f32(randomRows(B * R, D, 'xs')),
    bs: f32(randomRows(B * K, D, 'bs')),
    xt: f32(randomRows(B * R, D, 'xt')),
    bt: f32(randomRows(B * K, D, 'bt')),
    labels: randomLabels(B, R, K, 'labels'),
    bsDetached: [],
  };
  rows.bsDetached = rows.bs;
  // Make teacher rows correlated with the student's so that fewer logits sit at relu's zero.
  rows.xt = f32(rows.xt.map((r, i) => r.map((v, j) => 0.5 * v + rows.xs[i]![j]!)));
  rows.bt = f32(rows.bt.map((r, i) => r.map((v, j) => 0.5 * v + rows.bs[i]![j]!)));

  const tensors = (): VocoProjections => ({
    studentRandom: tf.tensor2d(rows.xs),
    studentBases: tf.tensor2d(rows.bs),
    teacherRandom: tf.tensor2d(rows.xt),
    teacherBases: tf.tensor2d(rows.bt),
    labels: tf.tensor3d(rows.labels),
  });

  function check(version: 'v1' | 'v2'): void {
    const p = tensors();
    const lossFn = version === 'v1' ? vocoV1Loss : vocoV2Loss;
    const ref64 = version === 'v1' ? v1Loss64 : v2Loss64;
    const res = lossFn(p);
    const expected = ref64(rows) as Record<string, number>;
    const valueErrors: Record<string, number> = { total: relErr(res.total.dataSync()[0]!, expected['total']!) };
    for (const [k, t] of Object.entries(res.terms)) valueErrors[k] = relErr((t as tf.Tensor).dataSync()[0]!, expected[k]!);

    const inputs = [p.studentRandom, p.studentBases, p.teacherRandom, p.teacherBases];
    const grads = tf.grads((xs: tf.Tensor, bs: tf.Tensor, xt: tf.Tensor, bt: tf.Tensor) =>
      lossFn({ studentRandom: xs as tf.Tensor2D, studentBases: bs as tf.Tensor2D, teacherRandom: xt as tf.Tensor2D, teacherBases: bt as tf.Tensor2D, labels: p.labels }).total,
    )(inputs).map(toRows);
    const [gxs, gbs, gxt, gbt] = grads as [M, M, M, M];
    // Differences over the student inputs; the regulariser's detached side and the teacher stay put.
    const nxs = numericGrad((m) => ref64({ ...rows, xs: m }).total, rows.xs);
    const nbs = numericGrad((m) => ref64({ ...rows, bs: m }).total, rows.bs);
    const gradErrors = { xs: gradError(gxs, nxs), bs: gradError(gbs, nbs) };
    console.log(`[${backend}] ${version}: value rel. errors ${JSON.stringify(valueErrors)}; gradient errors (max|Δ|/max|g|) ${JSON.stringify(gradErrors)}; max|g| xs ${maxAbs(nxs).toExponential(2)} bs ${maxAbs(nbs).toExponential(2)}`);
    for (const [k, e] of Object.entries(valueErrors)) expect(e, k).toBeLessThan(1e-5);
    expect(maxAbs(nxs)).toBeGreaterThan(1e-3);
    expect(maxAbs(nbs)).toBeGreaterThan(1e-3);
    expect(gradErrors.xs).toBeLessThan(1e-4);
    expect(gradErrors.bs).toBeLessThan(1e-4);
    expect(maxAbs(gxt)).toBe(0);
    expect(maxAbs(gbt)).toBe(0);
    tf.dispose([...inputs, p.labels, res.total, ...Object.values(res.terms)]);
  }

  it('v1: pos/neg/reg/total and gradients', () => check('v1'));
  it('v2: intra/inter/reg/total and gradients', () => check('v2'));

  it('regularizationLoss: the gradient reaches only the first base of each pair', () => {
    const bases = rows.bs.slice(0, K);
    const t = tf.tensor2d(bases);
    const g = toRows(tf.grad((x: tf.Tensor) => regularizationLoss(x as tf.Tensor2D))(t));
    const n = numericGrad((m) => reg64(m, bases), bases);
    // The last base is never first in a pair: no gradient at all (a plain cos² would give one).
    expect(maxAbs(g.slice(K - 1))).toBe(0);
    expect(gradError(g, n)).toBeLessThan(1e-4);
    t.dispose();
  });

  it('vocoV2CeLoss with soft targets: value and gradient vs float64', () => {
    const y = rows.labels[0]!;
    const logits = assign64(rows.xs.slice(0, R), rows.bs.slice(0, K)).map((r) => r.map((v) => Math.fround(0.9 * v)));
    const yT = tf.tensor2d(y);
    const pT = tf.tensor2d(logits);
    expect(relErr(vocoV2CeLoss(yT, pT).dataSync()[0]!, ce2(y, logits))).toBeLessThan(1e-5);
    const g = toRows(tf.grad((p: tf.Tensor) => vocoV2CeLoss(yT, p))(pT));
    expect(gradError(g, numericGrad((m) => ce2(y, m), logits))).toBeLessThan(1e-4);
    tf.dispose([yT, pT]);
  });

  it('rejects mismatched shapes', () => {
    const p = tensors();
    expect(() => vocoV1Loss({ ...p, studentBases: tf.zeros([3, D]) as tf.Tensor2D })).toThrow(/studentBases/);
    expect(() => vocoCeLoss(tf.zeros([2, 3]), tf.zeros([3, 2]))).toThrow(/shape/);
    tf.dispose(Object.values(p));
  });
});
