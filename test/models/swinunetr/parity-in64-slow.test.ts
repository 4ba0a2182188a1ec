/**
 * SLOW (about a minute or more on the pure-JS cpu backend): parity with MONAI 1.4.0 on the full
 * SwinUNETR (fs 12, use_v2) for the 1×1×64³ fixture input — logits, swinViT hidden states 0–4 and
 * every fixture module output (they locate a mistake when one happens). One forward pass.
 * Tolerance atol 1e-4, rtol 1e-3. Skip with VOCO_SKIP_SLOW_TESTS=1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureInto, disposeSwinUnetr, swinUnetrForward, type SwinUnetr } from '../../../src/models/swinunetr/index.ts';
import { compareToFixture, fixtureToChannelsLast, formatDiffs, loadFixtureModel, readFixture, setupBackend, type Diff } from './helpers.ts';

const MODULES = [
  'swinViT_patch_embed_sub4',
  'swinViT_layers1c_0_sub4',
  'swinViT_layers1_0_sub4',
  'swinViT_layers2c_0_sub4',
  'swinViT_layers2_0',
  'swinViT_layers3c_0',
  'swinViT_layers3_0',
  'swinViT_layers4c_0',
  'swinViT_layers4_0',
  'encoder1_sub4',
  'encoder2_sub4',
  'encoder3_sub4',
  'encoder4',
  'encoder10',
  'decoder5',
  'decoder4',
  'decoder3_sub4',
  'decoder2_sub4',
  'decoder1_sub4',
];

let backend = '';
let model: SwinUnetr;

beforeAll(async () => {
  backend = await setupBackend();
  model = await loadFixtureModel();
});
afterAll(() => disposeSwinUnetr(model));

describe.skipIf(process.env.VOCO_SKIP_SLOW_TESTS === '1')('SwinUNETR parity with MONAI: full network, 1×1×64³ [slow]', () => {
  it('[slow] logits, hidden states 0–4 and all 19 module outputs match (one 64³ forward)', async () => {
    const x = fixtureToChannelsLast(readFixture('in64/input'));
    const captured = new Map<string, tf.Tensor>();
    const t0 = Date.now();
    const logits = swinUnetrForward(model, x, captureInto(captured));
    await logits.data();
    const seconds = (Date.now() - t0) / 1000;
    const diffs: Diff[] = [await compareToFixture('logits', logits, readFixture('in64/logits'))];
    for (let i = 0; i < 5; i++) diffs.push(await compareToFixture(`hidden_states_out_${i}`, captured.get(`hidden_states_out_${i}`)!, readFixture(`in64/hidden_states_out_${i}`)));
    for (const file of MODULES) {
      const name = file.replace(/_sub4$/, '');
      const ours = captured.get(name);
      expect(ours, `no captured output named ${name}`).toBeDefined();
      diffs.push(await compareToFixture(name, ours!, readFixture(`in64/modules/${file}`)));
    }
    console.log(formatDiffs(`[${backend}] full SwinUNETR 64³ forward ${seconds.toFixed(1)} s`, diffs));
    for (const d of diffs) expect(d.worstRatio, d.name).toBeLessThanOrEqual(1);
    for (const d of diffs) expect(d.maxAbs, d.name).toBeLessThan(1e-4);
    tf.dispose([x, logits, ...captured.values()]);
  }, 900_000);
});
