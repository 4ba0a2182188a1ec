import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { createModel, disposeModel } from '../../src/models/registry.ts';
import { encoderVariableNames } from '../../src/models/swinunetr/index.ts';
import { exportModelWeights, inferModelOptions, loadModelWeights, loadWeightsFile } from '../../src/models/weights-io.ts';
import { REPO, tempDir, VOCO_BIN } from '../helpers.ts';

const FIXTURE = join(REPO, 'test', 'fixtures', 'swinunetr');

describe('model weights in and out', () => {
  it('the MONAI fixture loads completely, and export → import gives identical weights in MONAI names and layouts', async () => {
    await tf.setBackend('cpu');
    const loaded = await loadWeightsFile(join(FIXTURE, 'swinunetr_fs12.pt'));
    const opts = inferModelOptions('swinunetr', loaded.dict);
    expect(opts).toEqual({ featureSize: 12, inChannels: 1, outChannels: 14, useV2: true });
    const a = createModel('swinunetr', opts as never);
    const b = createModel('swinunetr', { ...(opts as object), seed: 99 } as never);
    try {
      const r = loadModelWeights(a, loaded.dict);
      expect([r.tensors.size, r.missing, r.unexpected, r.mismatched]).toEqual([167, [], [], []]);
      const file = join(tempDir(), 'full.safetensors');
      const exported = await exportModelWeights(a, file, { metadata: { format: 'pt' } });
      // Every exported tensor equals the original PyTorch tensor, key for key, in PyTorch layout.
      for (const [name, t] of loaded.dict) {
        const e = exported.get(name)!;
        expect(e.shape).toEqual(t.shape);
        expect(Array.from(e.data as Float32Array).every((v, i) => v === Number((t.data as ArrayLike<number | bigint>)[i]))).toBe(true);
      }
      const back = await loadWeightsFile(file);
      expect(loadModelWeights(b, back.dict).tensors.size).toBe(167);
      for (const s of a.spec) expect(Array.from(b.vars.get(s.name)!.dataSync())).toEqual(Array.from(a.vars.get(s.name)!.dataSync()));

      // The encoder-only export holds exactly the encoder keys VoCo pre-trains.
      const enc = await exportModelWeights(a, join(tempDir(), 'enc.safetensors'), { names: encoderVariableNames(a) });
      expect([...enc.keys()].every((k) => k.startsWith('swinViT.') || /^encoder(1|2|3|4|10)\./.test(k))).toBe(true);
      expect(enc.has('encoder10.layer.conv1.conv.weight')).toBe(true);
      expect(enc.has('decoder1.transp_conv.conv.weight')).toBe(false);
    } finally {
      disposeModel(a);
      disposeModel(b);
    }
  }, 120_000);

  it('voco weights inspect --arch maps every key of the fixture onto our variables', () => {
    const r = spawnSync(process.execPath, [VOCO_BIN, 'weights', 'inspect', join(FIXTURE, 'swinunetr_fs12.pt'), '--arch', 'swinunetr', '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { mapping: { result: { loaded: string[]; missing: string[]; unexpected: string[] } } };
    expect(out.mapping.result.loaded).toHaveLength(167);
    expect(out.mapping.result.missing).toEqual([]);
    expect(out.mapping.result.unexpected).toEqual([]);
  }, 60_000);

  it('voco model run reproduces the PyTorch logits and hidden states of the fixture', () => {
    const out = tempDir();
    const r = spawnSync(
      process.execPath,
      [VOCO_BIN, 'model', 'run', '--arch', 'swinunetr', '--weights', join(FIXTURE, 'swinunetr_fs12.pt'), '--input', join(FIXTURE, 'in64', 'input.f32'), '--shape', '1,1,64,64,64', '-o', out, '--hidden'],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toContain('weights: 167 loaded, 0 missing, 0 unexpected, 0 shape-mismatched');
    expect(r.status).toBe(0);
    const read = (p: string) => new Float32Array(new Uint8Array(readFileSync(p)).buffer);
    for (const [name, atol] of [['logits', 1e-4], ['hidden_states_out_0', 1e-4], ['hidden_states_out_4', 1e-4]] as const) {
      const ours = read(join(out, `${name}.f32`));
      const ref = read(join(FIXTURE, 'in64', `${name}.f32`));
      expect(ours.length).toBe(ref.length);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!) - 1e-3 * Math.abs(ref[i]!));
      console.log(`voco model run ${name}: max(|ours − torch| − 1e-3·|torch|) = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(atol);
    }
  }, 300_000);
});
