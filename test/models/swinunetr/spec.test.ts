/** Variable specs (names, order, shapes) against MONAI's state dict; init; registry. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createModel, disposeModel, trainableVariables, variableSpec } from '../../../src/models/registry.ts';
import {
  captureInto,
  createSwinUnetr,
  disposeSwinUnetr,
  relativePositionIndex,
  swinUnetrForward,
  swinUnetrVariableSpec,
} from '../../../src/models/swinunetr/index.ts';
import { torchShapeOf } from '../../../src/models/weights/layout.ts';
import { FIXTURE_OPTS, FIXTURES, loadFixtureModel, setupBackend } from './helpers.ts';

beforeAll(async () => {
  await setupBackend();
});

interface KeyInfo {
  key: string;
  shape: number[];
  dtype: string;
}
const stateDict = (JSON.parse(readFileSync(join(FIXTURES, 'swinunetr_fs12_state_dict.json'), 'utf8')) as { keys: KeyInfo[] }).keys;

const count = (spec: { shape: number[]; trainable: boolean }[]) => spec.filter((s) => s.trainable).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);

describe('SwinUNETR variable spec', () => {
  it('names every MONAI state-dict key, in order, with the PyTorch shapes after the layout change', () => {
    const spec = swinUnetrVariableSpec(FIXTURE_OPTS);
    expect(spec.map((s) => s.name)).toEqual(stateDict.map((k) => k.key));
    for (const [i, s] of spec.entries()) {
      expect(torchShapeOf(s.layout, s.shape), s.name).toEqual(stateDict[i]!.shape);
      const isIndex = s.name.endsWith('relative_position_index');
      expect(s.trainable).toBe(!isIndex);
      expect(s.dtype ?? 'float32').toBe(isIndex ? 'int32' : 'float32');
      if (isIndex) expect(s.layout).toBe('plain');
    }
    expect(count(spec)).toBe(4_739_180);
  });

  it('the encoder-only (VoCo) form is swinViT + encoder1/2/3/4/10, in the same order', () => {
    const full = swinUnetrVariableSpec(FIXTURE_OPTS);
    const enc = swinUnetrVariableSpec({ ...FIXTURE_OPTS, encoderOnly: true });
    expect(enc.map((s) => s.name)).toEqual(full.filter((s) => /^(swinViT|encoder(1|2|3|4|10))\./.test(s.name)).map((s) => s.name));
  });

  it('has the published parameter counts at feature size 48', () => {
    const m = (n: number) => Math.round(n / 1e4) / 100;
    expect(m(count(swinUnetrVariableSpec({ featureSize: 48, inChannels: 1, outChannels: 14 })))).toBe(72.76);
    expect(m(count(swinUnetrVariableSpec({ featureSize: 48, inChannels: 1, outChannels: 14, useV2: false })))).toBe(62.19);
    expect(m(count(swinUnetrVariableSpec({ featureSize: 48, inChannels: 1, encoderOnly: true })))).toBe(53.16);
  });

  it('rejects feature sizes MONAI rejects', () => {
    expect(() => swinUnetrVariableSpec({ featureSize: 20, inChannels: 1, outChannels: 2 })).toThrow(/multiple of 12/);
    expect(() => swinUnetrVariableSpec({ featureSize: 12, inChannels: 1 })).toThrow(/outChannels/);
  });
});

describe('SwinUNETR initialisation', () => {
  it('is deterministic in the seed and follows PyTorch defaults', async () => {
    const a = createSwinUnetr({ featureSize: 12, inChannels: 1, encoderOnly: true, seed: 7 });
    const b = createSwinUnetr({ featureSize: 12, inChannels: 1, encoderOnly: true, seed: 7 });
    const c = createSwinUnetr({ featureSize: 12, inChannels: 1, encoderOnly: true, seed: 8 });
    try {
      const name = 'swinViT.layers2.0.blocks.1.attn.qkv.weight';
      const va = await a.vars.get(name)!.data();
      expect(Array.from(va)).toEqual(Array.from(await b.vars.get(name)!.data()));
      expect(Array.from(va)).not.toEqual(Array.from(await c.vars.get(name)!.data()));
      // Linear: U(−1/√in, 1/√in), in = 24
      const bound = 1 / Math.sqrt(24);
      expect(Math.max(...Array.from(va, Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...Array.from(va, Math.abs))).toBeGreaterThan(0.9 * bound);
      // Bias table: trunc_normal(std 0.02)
      const table = await a.vars.get('swinViT.layers1.0.blocks.0.attn.relative_position_bias_table')!.data();
      const std = Math.sqrt(Array.from(table).reduce((s, v) => s + v * v, 0) / table.length);
      expect(std).toBeGreaterThan(0.018);
      expect(std).toBeLessThan(0.022);
      // LayerNorm 1 / 0; conv: U(−1/√(in·27), ·)
      expect(Array.from(await a.vars.get('swinViT.layers1.0.blocks.0.norm1.weight')!.data())).toEqual(new Array(12).fill(1));
      const conv = await a.vars.get('encoder2.layer.conv1.conv.weight')!.data();
      expect(Math.max(...Array.from(conv, Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(12 * 27));
      // The index buffer is computed, int32, non-trainable
      const idxVar = a.vars.get('swinViT.layers1.0.blocks.0.attn.relative_position_index')!;
      expect(idxVar.dtype).toBe('int32');
      expect(idxVar.trainable).toBe(false);
      expect(Array.from(await idxVar.data())).toEqual(Array.from(relativePositionIndex([7, 7, 7])));
    } finally {
      [a, b, c].forEach(disposeSwinUnetr);
    }
  });

  it('the index buffers stored in the MONAI checkpoint equal the computed ones', async () => {
    const model = await loadFixtureModel();
    try {
      const computed = Array.from(relativePositionIndex([7, 7, 7]));
      for (const s of model.spec.filter((x) => x.name.endsWith('relative_position_index'))) {
        expect(Array.from(await model.vars.get(s.name)!.data()), s.name).toEqual(computed);
      }
    } finally {
      disposeSwinUnetr(model);
    }
  });
});

describe('SwinUNETR shapes and the model registry', () => {
  it('produces MONAI’s shapes (channels-last) for a 32³ input', () => {
    const model = createModel('swinunetr', { featureSize: 12, inChannels: 2, outChannels: 3, seed: 1 });
    const captured = new Map<string, tf.Tensor>();
    try {
      const x = tf.randomUniform([1, 32, 32, 32, 2]);
      const logits = swinUnetrForward(model, x, captureInto(captured));
      expect(logits.shape).toEqual([1, 32, 32, 32, 3]);
      expect([0, 1, 2, 3, 4].map((i) => captured.get(`hidden_states_out_${i}`)!.shape)).toEqual([
        [1, 16, 16, 16, 12],
        [1, 8, 8, 8, 24],
        [1, 4, 4, 4, 48],
        [1, 2, 2, 2, 96],
        [1, 1, 1, 1, 192],
      ]);
      expect(captured.get('decoder5')!.shape).toEqual([1, 2, 2, 2, 96]);
      expect(() => swinUnetrForward(model, tf.zeros([1, 48, 32, 32, 2]))).toThrow(/divisible by 32/);
      tf.dispose([x, logits, ...captured.values()]);
    } finally {
      disposeModel(model);
    }
  }, 120_000);

  it('variableSpec / createModel cover both architectures', () => {
    expect(variableSpec('swinunetr', FIXTURE_OPTS)).toEqual(swinUnetrVariableSpec(FIXTURE_OPTS));
    const uSpec = variableSpec('unet3d', { inChannels: 1, outChannels: 2, seed: 0 });
    expect(uSpec.length).toBeGreaterThan(0);
    const u = createModel('unet3d', { inChannels: 1, outChannels: 2, seed: 0 });
    try {
      expect(u.spec.map((s) => s.name)).toEqual(uSpec.map((s) => s.name));
      expect(trainableVariables(u).length).toBe(u.spec.filter((s) => s.trainable).length);
    } finally {
      disposeModel(u);
    }
  });
});
