/**
 * VoCo projection head (src/voco/head.ts): state-dict names, initialisation, batch norm
 * semantics, gradients, and parity with the PyTorch head of the fixture set
 * (voco_proj_head_fs12.pt, pooled 3×288 → proj 3×128, and the whole chain from the crops).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelWeights, loadWeightsFile } from '../../src/models/weights-io.ts';
import { disposeSwinUnetr, swinUnetrEncoderFeatures } from '../../src/models/swinunetr/index.ts';
import {
  batchNorm1d,
  createProjectionHead,
  disposeProjectionHead,
  projectionHeadForward,
  projectionHeadVariableSpec,
  type ProjectionHead,
} from '../../src/voco/head.ts';
import { gradCheck, randomTensor } from '../models/ops/grad-check.ts';
import { FIXTURES, fixtureToChannelsLast, loadFixtureModel, readFixture, setupBackend } from '../models/swinunetr/helpers.ts';

let backend = '';
let fixtureHead: ProjectionHead;

beforeAll(async () => {
  backend = await setupBackend();
  fixtureHead = createProjectionHead({ inDim: 288, hidden: 128, out: 128 });
  const { dict } = await loadWeightsFile(join(FIXTURES, 'voco', 'voco_proj_head_fs12.pt'));
  const res = loadModelWeights(fixtureHead, dict);
  expect({ missing: res.missing, unexpected: res.unexpected, mismatched: res.mismatched }).toEqual({ missing: [], unexpected: [], mismatched: [] });
});
afterAll(() => disposeProjectionHead(fixtureHead));

async function maxAbsDiff(ours: tf.Tensor, ref: Float32Array): Promise<number> {
  const a = await ours.data();
  expect(a.length).toBe(ref.length);
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(a[i]! - ref[i]!));
  return m;
}

describe('projection head variables', () => {
  it('are named by the PyTorch state-dict keys, in order, in TF.js linear layout', () => {
    const spec = projectionHeadVariableSpec({ inDim: 288, hidden: 128, out: 64 });
    expect(spec.map((s) => [s.name, s.layout, s.shape])).toEqual([
      ['proj_head.layer1.0.weight', 'linear', [288, 128]],
      ['proj_head.layer1.0.bias', 'plain', [128]],
      ['proj_head.layer2.0.weight', 'linear', [128, 128]],
      ['proj_head.layer2.0.bias', 'plain', [128]],
      ['proj_head.layer3.0.weight', 'linear', [128, 64]],
      ['proj_head.layer3.0.bias', 'plain', [64]],
    ]);
    expect(projectionHeadVariableSpec({ inDim: 4, hidden: 4, out: 4, prefix: 'teacher.proj_head' })[0]!.name).toBe('teacher.proj_head.layer1.0.weight');
  });

  it('initialise like nn.Linear (U(±1/√fan_in)), deterministic in the seed', () => {
    const a = createProjectionHead({ inDim: 100, hidden: 16, out: 8, seed: 5 });
    const b = createProjectionHead({ inDim: 100, hidden: 16, out: 8, seed: 5 });
    const c = createProjectionHead({ inDim: 100, hidden: 16, out: 8, seed: 6, trainable: false });
    const values = (h: ProjectionHead, n: string) => Array.from(h.vars.get(n)!.dataSync());
    for (const s of a.spec) {
      expect(values(a, s.name)).toEqual(values(b, s.name));
      expect(values(a, s.name)).not.toEqual(values(c, s.name));
    }
    const w1 = values(a, 'proj_head.layer1.0.weight');
    const bound = 1 / Math.sqrt(100);
    expect(Math.max(...w1.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w1.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    expect(Math.max(...values(a, 'proj_head.layer3.0.bias').map(Math.abs))).toBeLessThanOrEqual(1 / 4);
    expect([...a.vars.values()].every((v) => v.trainable)).toBe(true);
    expect([...c.vars.values()].some((v) => v.trainable)).toBe(false);
    [a, b, c].forEach(disposeProjectionHead);
  });
});

describe('batchNorm1d', () => {
  it('uses the batch mean and the biased variance, eps 1e-5, per column', () => {
    const rows = [[1, 10], [2, -10], [4, 0], [9, 5]];
    const y = batchNorm1d(tf.tensor2d(rows)).arraySync();
    for (let c = 0; c < 2; c++) {
      const col = rows.map((r) => r[c]!);
      const mean = col.reduce((a, b) => a + b, 0) / col.length;
      const varB = col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length;
      col.forEach((v, r) => expect(y[r]![c]!).toBeCloseTo((v - mean) / Math.sqrt(varB + 1e-5), 5));
    }
    expect(() => batchNorm1d(tf.ones([1, 3]) as tf.Tensor2D)).toThrow(/single value/);
  });
});

describe('projection head gradients', () => {
  it('match central differences; the biases before a batch norm get none', () => {
    const head = createProjectionHead({ inDim: 5, hidden: 6, out: 3, seed: 2 });
    const x = randomTensor([4, 5], 'head-x');
    const v = (n: string) => head.vars.get(`proj_head.${n}`)!;
    // layer1/layer2 biases are followed by batch norm, which removes any per-column constant:
    // their true gradient is exactly 0, so they are checked apart.
    const checked = [x, v('layer1.0.weight'), v('layer2.0.weight'), v('layer3.0.weight'), v('layer3.0.bias')];
    const report = gradCheck((t) => projectionHeadForward(head, t), checked, { eps: 1e-3, samples: 16 });
    console.log(`[${backend}] head gradients: max per-coordinate rel. error ${report.maxRelError.toExponential(2)}, norm-wise ${report.normRelError.toExponential(2)}`);
    for (const r of report.inputs) expect(r.maxAbsGradient, `input ${r.input}`).toBeGreaterThan(1e-3);
    expect(report.normRelError).toBeLessThan(1e-2);
    expect(report.maxRelError).toBeLessThan(3e-2);
    const w = randomTensor([4, 3], 'head-w');
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(projectionHeadForward(head, x), w)) as tf.Scalar, [v('layer1.0.bias'), v('layer2.0.bias'), v('layer1.0.weight')]);
    const maxOf = (n: string) => tf.max(tf.abs(grads[v(n).name]!)).dataSync()[0]!;
    expect(maxOf('layer1.0.bias')).toBeLessThan(1e-5 * maxOf('layer1.0.weight'));
    expect(maxOf('layer2.0.bias')).toBeLessThan(1e-5 * maxOf('layer1.0.weight'));
    tf.dispose([x, w, ...Object.values(grads)]);
    disposeProjectionHead(head);
  });
});

describe('parity with the PyTorch VoCo head (fs 12: 288 → 128 → 128 → 128)', () => {
  it('proj(pooled) matches proj.f32 within 1e-4', async () => {
    const pooled = readFixture('voco/pooled');
    const x = tf.tensor2d(pooled.data, [3, 288]);
    const proj = projectionHeadForward(fixtureHead, x);
    const err = await maxAbsDiff(proj, readFixture('voco/proj').data);
    console.log(`[${backend}] head parity: max |proj − ref| ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-4);
    tf.dispose([x, proj]);
  });

  // ~3 s on tfjs-node, ~25 s on the pure-JS cpu backend: only with the former.
  it.skipIf(process.env['VOCO_TEST_BACKEND'] !== 'tensorflow')('the whole chain crops → pooled → proj is close to proj.f32', async () => {
    const backbone = await loadFixtureModel({ encoderOnly: true });
    const x = fixtureToChannelsLast(readFixture('voco/input'));
    const t0 = Date.now();
    const pooled = swinUnetrEncoderFeatures(backbone, x);
    const proj = projectionHeadForward(fixtureHead, pooled as tf.Tensor2D);
    const err = await maxAbsDiff(proj, readFixture('voco/proj').data);
    const pooledErr = await maxAbsDiff(pooled, readFixture('voco/pooled').data);
    console.log(`[${backend}] chain crops → proj (${((Date.now() - t0) / 1000).toFixed(1)} s): max |pooled − ref| ${pooledErr.toExponential(2)}, max |proj − ref| ${err.toExponential(2)}`);
    // pooled carries up to ~1e-3 of float32 rounding in its encoder10 part (see
    // test/models/swinunetr/parity-voco.test.ts), which the head passes on.
    expect(err).toBeLessThan(1e-3);
    tf.dispose([x, pooled, proj]);
    disposeSwinUnetr(backbone);
  }, 300_000);
});
