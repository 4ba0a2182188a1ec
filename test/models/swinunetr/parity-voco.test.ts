/**
 * Parity with MONAI 1.4.0 on the VoCo case: three non-cubic 64×32×32 crops (stage 3 window
 * (7,4,4) with shift (3,0,0), stage 4 window (4,2,2) without shift), swinViT hidden states and
 * the encoder-only pooled vector (3 × 288 = 24·fs). Tolerance atol 1e-4, rtol 1e-3 (see the
 * note in the test for the one ill-conditioned part).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureInto, disposeSwinUnetr, swinUnetrEncoderFeatures, type SwinUnetr } from '../../../src/models/swinunetr/index.ts';
import { unetrBasicBlock } from '../../../src/models/swinunetr/unetr-blocks.ts';
import { compareToFixture, fixtureToChannelsLast, formatDiffs, loadFixtureModel, readFixture, setupBackend, type Diff } from './helpers.ts';

let backend = '';
let model: SwinUnetr;

beforeAll(async () => {
  backend = await setupBackend();
  model = await loadFixtureModel({ encoderOnly: true });
});
afterAll(() => disposeSwinUnetr(model));

describe('SwinUNETR parity with MONAI: VoCo encoder-only form, 3×64×32×32', () => {
  it('hidden states 0–4 and the pooled 3×288 vector match', async () => {
    const x = fixtureToChannelsLast(readFixture('voco/input'));
    const captured = new Map<string, tf.Tensor>();
    const t0 = Date.now();
    const pooled = swinUnetrEncoderFeatures(model, x, captureInto(captured));
    await pooled.data();
    const seconds = (Date.now() - t0) / 1000;
    const ref = readFixture('voco/pooled');
    const fs = 12;
    const split = (t: tf.Tensor, from: number, to: number) => tf.slice(t, [0, from], [t.shape[0]!, to - from]);
    const refT = tf.tensor(ref.data, ref.shape);
    const part = async (name: string, from: number, to: number, ours: tf.Tensor) => {
      const r = split(refT, from, to);
      return compareToFixture(name, split(ours, from, to), { shape: r.shape, data: (await r.data()) as Float32Array });
    };
    const diffs: Diff[] = [
      await compareToFixture('pooled', pooled, ref),
      await part('pooled[enc0..enc3]', 0, 8 * fs, pooled),
      await part('pooled[dec4]', 8 * fs, 24 * fs, pooled),
    ];
    for (let i = 0; i < 5; i++) {
      const rel = i < 2 ? `voco/hidden_states_out_${i}_sub4` : `voco/hidden_states_out_${i}`;
      diffs.push(await compareToFixture(`hidden_states_out_${i}`, captured.get(`hidden_states_out_${i}`)!, readFixture(rel)));
    }
    // encoder10 alone, fed MONAI's own hs4: isolates its implementation from upstream rounding.
    const hs4Ref = fixtureToChannelsLast(readFixture('voco/hidden_states_out_4'));
    const dec4FromRef = tf.mean(unetrBasicBlock(model.vars, 'encoder10', hs4Ref), [1, 2, 3]);
    diffs.push(await part('dec4 from MONAI hs4', 8 * fs, 24 * fs, tf.concat([tf.zeros([3, 8 * fs]), dec4FromRef], 1)));
    console.log(formatDiffs(`[${backend}] VoCo case forward ${seconds.toFixed(1)} s`, diffs));
    // np.allclose(ours, ref, atol=1e-4, rtol=1e-3), and within 1e-4 absolute, for the hidden
    // states, the enc0..enc3 pools and encoder10 on MONAI's hs4. The end-to-end dec4 pool gets a
    // 10× looser bound: it is encoder10 on a 2×1×1 map, where instance norm over 2 voxels
    // (half-differences down to 5e-5 ≪ √eps) amplifies the ~1e-5 float32 differences of hs4
    // about tenfold. In float64 from each side's own hs4: PyTorch's float32 dec4 is itself 5.9e-5
    // off the exact value, ours (cpu) 1.3e-5, and the exact values from the two hs4 differ by 1.1e-4.
    for (const d of diffs) {
      const loose = d.name === 'pooled' || d.name === 'pooled[dec4]';
      expect(d.worstRatio, d.name).toBeLessThanOrEqual(loose ? 10 : 1);
      expect(d.maxAbs, d.name).toBeLessThan(loose ? 1e-3 : 1e-4);
    }
    tf.dispose([x, pooled, refT, hs4Ref, dec4FromRef, ...captured.values()]);
  }, 600_000);
});
