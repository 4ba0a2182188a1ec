/**
 * The VoCo training model (src/voco/model.ts): naming, independent teacher initialisation, exact
 * EMA arithmetic, one training step's gradients (finite and non-zero for the student, none for
 * the teacher), v2's dropout determinism, and tensor hygiene.
 *
 * SwinUNETR v1 runs on tiny 64×32×32 crops (fs 12): at 32³ encoder10's instance norm sees one
 * voxel, its output is identically 0 and its conv weights get no gradient. UNet3D (base width 2,
 * 16³ crops) covers v2 and the cheap checks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { swinUnetrVariableSpec } from '../../src/models/swinunetr/index.ts';
import { createRng } from '../../src/util/rng.ts';
import {
  allVariables,
  createVocoModel,
  disposeVocoModel,
  dropoutRows,
  emaPairs,
  emaUpdate,
  studentTrainableVariables,
  vocoGradients,
  vocoLossFn,
  type VocoBatch,
  type VocoModel,
} from '../../src/voco/model.ts';
import { randomTensor } from '../models/ops/grad-check.ts';
import { setupBackend } from '../models/swinunetr/helpers.ts';

let backend = '';
beforeAll(async () => {
  backend = await setupBackend();
});

/** Position labels [B, R, K] with rows summing to 1 and some exact zeros. */
function labels(b: number, r: number, k: number, seed: string): tf.Tensor3D {
  const rng = createRng(0, seed);
  const v = new Float32Array(b * r * k);
  for (let i = 0; i < b * r; i++) {
    const hit = rng.int(0, k);
    if (k === 2) {
      v[i * k + hit] = 1; // keep a zero so that the negative term is exercised
      continue;
    }
    const w = Math.fround(0.2 + 0.6 * rng.float());
    v[i * k + hit] = w;
    v[i * k + ((hit + 1) % k)] = 1 - w;
  }
  return tf.tensor3d(v, [b, r, k]);
}

function batchOf(b: number, r: number, k: number, spatial: number[], seed: string): VocoBatch {
  return {
    randomCrops: randomTensor([b * r, ...spatial, 1], `${seed}-random`, 0, 1),
    baseCrops: randomTensor([b * k, ...spatial, 1], `${seed}-base`, 0, 1),
    labels: labels(b, r, k, seed),
  };
}

const disposeBatch = (b: VocoBatch) => tf.dispose([b.randomCrops, b.baseCrops, b.labels]);

const values = (v: tf.Variable) => v.dataSync() as Float32Array;

/** What θ_t·m + θ_s·(1 − m) gives in float32, operation by operation. */
function emaExpected(teacher: Float32Array, student: Float32Array, m: number): Float32Array {
  const a = Math.fround(m);
  const b = Math.fround(1 - m);
  return teacher.map((t, i) => Math.fround(Math.fround(t * a) + Math.fround(student[i]! * b)));
}

/** Biases whose true gradient is exactly 0: each is followed by a batch-statistics norm. */
const STRUCTURALLY_ZERO = /(proj_head\.layer[12]\.0\.bias|ops\.\d\.conv1\.bias)$/;

interface GradSummary {
  missing: string[];
  bad: string[];
  zero: string[];
  smallest: number;
}

async function summarize(model: VocoModel, grads: Map<string, tf.Tensor>): Promise<GradSummary> {
  const names = new Map([...allVariables(model)].map(([n, v]) => [v, n]));
  const expected = studentTrainableVariables(model).map((v) => names.get(v)!);
  const out: GradSummary = { missing: expected.filter((n) => !grads.has(n)), bad: [], zero: [], smallest: Infinity };
  let largest = 0;
  const maxima = new Map<string, number>();
  for (const [name, g] of grads) {
    const [m, finite] = tf.tidy(() => [tf.max(tf.abs(g)).dataSync()[0]!, tf.all(tf.isFinite(g)).dataSync()[0]!]);
    if (!finite) out.bad.push(`${name}: not finite`);
    maxima.set(name, m!);
    largest = Math.max(largest, m!);
  }
  for (const [name, m] of maxima) {
    if (STRUCTURALLY_ZERO.test(name)) {
      out.zero.push(name);
      if (!(m <= 1e-4 * largest)) out.bad.push(`${name}: max|g| ${m} should be ~0`);
    } else {
      out.smallest = Math.min(out.smallest, m);
      if (!(m > 0)) out.bad.push(`${name}: zero gradient`);
    }
  }
  return out;
}

/** A teacher variable made trainable for a moment: the loss must have no path to it. */
function teacherIsDetached(model: VocoModel, teacherName: string, loss: () => tf.Scalar): boolean {
  const v = allVariables(model).get(teacherName)!;
  v.trainable = true;
  try {
    // In a tidy: variableGrads throws after the forward, which would leak the loss value.
    tf.tidy(() => {
      tf.variableGrads(loss, [v]);
    });
    return false;
  } catch (e) {
    return /Cannot find a connection/.test((e as Error).message);
  } finally {
    v.trainable = false;
  }
}

describe('VoCo v1, SwinUNETR fs 12 (64×32×32 crops, B=1, R=1, K=2)', () => {
  let model: VocoModel;
  let batch: VocoBatch;
  beforeAll(() => {
    model = createVocoModel({ version: 'v1', backbone: 'swinunetr', backboneOptions: { featureSize: 12, inChannels: 1 }, head: { hidden: 32, out: 32 }, seed: 11 });
    batch = batchOf(1, 1, 2, [64, 32, 32], 'v1');
  });
  afterAll(() => {
    disposeBatch(batch);
    disposeVocoModel(model);
  });

  it('names: student./teacher. + MONAI keys; teacher independent and non-trainable', () => {
    const all = allVariables(model);
    const monai = swinUnetrVariableSpec({ featureSize: 12, inChannels: 1, encoderOnly: true }).map((s) => s.name);
    const head = ['layer1.0.weight', 'layer1.0.bias', 'layer2.0.weight', 'layer2.0.bias', 'layer3.0.weight', 'layer3.0.bias'].map((n) => `proj_head.${n}`);
    const strip = (prefix: string) => [...all.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
    expect(strip('student.')).toEqual([...monai, ...head]);
    expect(strip('teacher.')).toEqual([...monai, ...head]);
    expect(all.size).toBe(2 * (monai.length + head.length));
    expect(model.config.featureDim).toBe(288);
    const w = 'swinViT.patch_embed.proj.weight';
    expect(Array.from(values(all.get(`teacher.${w}`)!))).not.toEqual(Array.from(values(all.get(`student.${w}`)!)));
    expect([...all].filter(([n]) => n.startsWith('teacher.')).some(([, v]) => v.trainable)).toBe(false);
    expect(studentTrainableVariables(model).every((v) => v.trainable)).toBe(true);
    expect(emaPairs(model).length).toBe(studentTrainableVariables(model).length);
  });

  it('one step: EMA first (exact), then finite non-zero gradients for every student variable and none for the teacher', async () => {
    const all = allVariables(model);
    const watched = ['swinViT.patch_embed.proj.weight', 'encoder10.layer.conv1.conv.weight', 'proj_head.layer3.0.bias'];
    const before = watched.map((n) => [values(all.get(`teacher.${n}`)!).slice(), values(all.get(`student.${n}`)!).slice()] as const);

    const t0 = Date.now();
    const step = vocoGradients(model, batch);
    const total = (await step.total.data())[0]!;
    const seconds = (Date.now() - t0) / 1000;

    watched.forEach((n, i) => {
      const [t, s] = before[i]!;
      expect(Array.from(values(all.get(`teacher.${n}`)!)), n).toEqual(Array.from(emaExpected(t, s, 0.9)));
      expect(Array.from(values(all.get(`student.${n}`)!)), n).toEqual(Array.from(s));
    });

    const terms = step.terms as { pos: tf.Scalar; neg: tf.Scalar; reg: tf.Scalar };
    const [pos, neg, reg] = [terms.pos, terms.neg, terms.reg].map((t) => t.dataSync()[0]!) as [number, number, number];
    expect(Number.isFinite(total)).toBe(true);
    expect(total).toBeCloseTo(pos + neg + reg, 5);
    expect([...step.grads.keys()].every((k) => k.startsWith('student.'))).toBe(true);
    const summary = await summarize(model, step.grads);
    console.log(`[${backend}] v1 SwinUNETR step ${seconds.toFixed(1)} s: loss ${total.toFixed(4)} (pos ${pos.toFixed(4)}, neg ${neg.toFixed(4)}, reg ${reg.toFixed(4)}); ${step.grads.size} gradients, smallest max|g| ${summary.smallest.toExponential(2)}; ~0 by construction: ${summary.zero.join(', ')}`);
    expect(summary.missing).toEqual([]);
    expect(summary.bad).toEqual([]);
    expect(step.grads.size).toBe(studentTrainableVariables(model).length);
    tf.dispose([step.total, ...Object.values(step.terms), ...step.grads.values()]);
  }, 300_000); // ~8 s alone; generous for a machine shared with other jobs
});

describe('VoCo v2 and v1 with UNet3D (base 2, 16³ crops)', () => {
  const backboneOptions = { inChannels: 1, outChannels: 1, baseChannels: 2 };
  let v2: VocoModel;
  let batch: VocoBatch;
  beforeAll(() => {
    v2 = createVocoModel({ version: 'v2', backbone: 'unet3d', backboneOptions, head: { hidden: 16, out: 8 }, seed: 3 });
    batch = batchOf(2, 2, 3, [16, 16, 16], 'v2');
  });
  afterAll(() => {
    disposeBatch(batch);
    disposeVocoModel(v2);
  });

  it('v2 naming: one shared backbone under student., two heads; EMA pairs are the heads', () => {
    const names = [...allVariables(v2).keys()];
    expect(v2.teacherBackbone).toBeNull();
    expect(names.filter((n) => n.startsWith('teacher.'))).toEqual(v2.teacherHead.spec.map((s) => `teacher.${s.name}`));
    expect(names.filter((n) => n.startsWith('student.down_tr64.ops.0.conv1.weight'))).toHaveLength(1);
    expect(v2.config.featureDim).toBe(60);
    expect(v2.config.head).toEqual({ hidden: 16, out: 8 });
    expect(emaPairs(v2).map(([t]) => t)).toEqual(v2.teacherHead.spec.map((s) => v2.teacherHead.vars.get(s.name)!));
    // Student trainables: the encoder (down_tr*) and the student head; the unused decoder is left out.
    expect(studentTrainableVariables(v2).length).toBe(v2.studentBackbone.spec.filter((s) => s.trainable && s.name.startsWith('down_tr')).length + 6);
  });

  it('v2 step: gradients for the shared backbone and the student head, none reach the teacher head', async () => {
    const head = v2.teacherHead.spec.map((s) => s.name);
    const before = head.map((n) => [values(v2.teacherHead.vars.get(n)!).slice(), values(v2.studentHead.vars.get(n)!).slice()] as const);
    const step = vocoGradients(v2, batch, createRng(1, 'dropout'));
    head.forEach((n, i) => expect(Array.from(values(v2.teacherHead.vars.get(n)!)), n).toEqual(Array.from(emaExpected(before[i]![0], before[i]![1], 0.9))));
    const terms = step.terms as { intra: tf.Scalar; inter: tf.Scalar; reg: tf.Scalar };
    const parts = [terms.intra, terms.inter, terms.reg].map((t) => t.dataSync()[0]!);
    const total = step.total.dataSync()[0]!;
    expect(total).toBeCloseTo(parts.reduce((a, b) => a + b, 0), 5);
    const summary = await summarize(v2, step.grads);
    console.log(`[${backend}] v2 UNet3D step: loss ${total.toFixed(4)} (intra/inter/reg ${parts.map((p) => p.toFixed(4)).join('/')}); ${step.grads.size} gradients, smallest max|g| ${summary.smallest.toExponential(2)}`);
    expect(summary.missing).toEqual([]);
    expect(summary.bad).toEqual([]);
    expect([...step.grads.keys()].some((k) => k.startsWith('teacher.'))).toBe(false);
    tf.dispose([step.total, ...Object.values(step.terms), ...step.grads.values()]);
    // Even made trainable, a teacher variable has no path from the loss (its pass runs untaped).
    for (const n of ['teacher.proj_head.layer1.0.weight', 'teacher.proj_head.layer3.0.bias']) {
      expect(teacherIsDetached(v2, n, () => vocoLossFn(v2, batch, createRng(1, 'dropout')).total), n).toBe(true);
    }
  });

  it('v2 dropout: whole rows zeroed with p 0.2, the rest ×1.25, reproducible from the rng', () => {
    const x = tf.add(randomTensor([2000, 3], 'rows', 1, 2), 0) as tf.Tensor2D;
    const a = dropoutRows(x, 0.2, createRng(5, 'mask')).arraySync();
    const b = dropoutRows(x, 0.2, createRng(5, 'mask')).arraySync();
    const c = dropoutRows(x, 0.2, createRng(6, 'mask')).arraySync();
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const xs = x.arraySync();
    let dropped = 0;
    a.forEach((row, i) => {
      if (row.every((v) => v === 0)) dropped++;
      else row.forEach((v, j) => expect(v).toBe(Math.fround(xs[i]![j]! * 1.25)));
    });
    expect(dropped / 2000).toBeGreaterThan(0.17);
    expect(dropped / 2000).toBeLessThan(0.23);
    // The same rng state gives the same loss, bit for bit; another state another mask.
    const loss = (seed: number) => tf.tidy(() => vocoLossFn(v2, batch, createRng(seed, 'dropout')).total.dataSync()[0]!);
    expect(loss(1)).toBe(loss(1));
    expect([2, 3, 4, 5].some((s) => loss(s) !== loss(1))).toBe(true);
    expect(() => vocoLossFn(v2, batch)).toThrow(/rng/);
    x.dispose();
  });

  it('v1 with UNet3D: two independent backbones; a step leaks no tensors; dispose frees everything', () => {
    const start = tf.memory().numTensors;
    const v1 = createVocoModel({ version: 'v1', backbone: 'unet3d', backboneOptions, head: { hidden: 16, out: 8 }, seed: 3 });
    expect(v1.config.head).toEqual({ hidden: 16, out: 8 });
    expect(allVariables(v1).size).toBe(2 * (v1.studentBackbone.spec.length + 6));
    const b1 = batchOf(1, 2, 4, [16, 16, 16], 'v1-unet');
    const afterCreate = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      const step = vocoGradients(v1, b1);
      expect(Number.isFinite(step.total.dataSync()[0]!)).toBe(true);
      expect([...step.grads.keys()].every((k) => k.startsWith('student.down_tr') || k.startsWith('student.proj_head.'))).toBe(true);
      tf.dispose([step.total, ...Object.values(step.terms), ...step.grads.values()]);
      expect(tf.memory().numTensors).toBe(afterCreate);
    }
    expect(teacherIsDetached(v1, 'teacher.down_tr64.ops.0.conv1.weight', () => vocoLossFn(v1, b1).total)).toBe(true);
    disposeBatch(b1);
    disposeVocoModel(v1);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('rejects inconsistent batches', () => {
    const bad = { ...batch, labels: labels(2, 1, 3, 'bad') };
    expect(() => vocoLossFn(v2, bad, createRng(0))).toThrow(/randomCrops/);
    expect(() => emaUpdate(v2, 1.5)).toThrow(/momentum/);
    bad.labels.dispose();
  });
});
