import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/models/backend.ts';
import { createModel, disposeModel, trainableVariables } from '../src/models/registry.ts';
import { swinUnetrEncoderFeatures, swinUnetrForward } from '../src/models/swinunetr/index.ts';
import { unet3dForward } from '../src/models/unet3d.ts';
import type { BenchRow } from './table.ts';

const BATCH = Number(process.env.VOCO_BENCH_BATCH ?? 2);

function time(fn: () => void, reps = 2): number {
  fn(); // warm-up: kernels, allocations
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return Math.min(...ts);
}

/**
 * Forward and forward+backward of the models on a batch of 64³ crops on the tensorflow backend
 * (what tests, CI and the demo use), with peak RSS. Baseline: SwinUNETR fs 12 forward in the same run.
 */
export async function benchModels(): Promise<BenchRow[]> {
  const info = await selectBackend('auto', { forTraining: true });
  const rows: BenchRow[] = [];
  const x = tf.randomUniform([BATCH, 64, 64, 64, 1]);
  let baseline: number | undefined;
  const cases: Array<{ name: string; make: () => ReturnType<typeof createModel>; fwd: (m: any) => tf.Tensor; encoder?: (m: any) => tf.Tensor }> = [
    { name: 'SwinUNETR fs 12', make: () => createModel('swinunetr', { featureSize: 12, inChannels: 1, outChannels: 14 }), fwd: (m) => swinUnetrForward(m, x), encoder: (m) => swinUnetrEncoderFeatures(m, x) },
    { name: 'SwinUNETR fs 48', make: () => createModel('swinunetr', { featureSize: 48, inChannels: 1, outChannels: 14 }), fwd: (m) => swinUnetrForward(m, x), encoder: (m) => swinUnetrEncoderFeatures(m, x) },
    { name: 'UNet3D base 32', make: () => createModel('unet3d', { inChannels: 1, outChannels: 1, seed: 0 }), fwd: (m) => unet3dForward(m, x).logits },
  ];
  for (const c of cases) {
    const model = c.make();
    let peak = process.memoryUsage().rss;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    try {
      const fwd = time(() => tf.tidy(() => void c.fwd(model).dataSync()));
      baseline ??= fwd;
      const vars = trainableVariables(model);
      const loss = (m: any) => () => tf.mean(c.encoder ? c.encoder(m) : c.fwd(m)) as tf.Scalar;
      const fb = time(() => tf.tidy(() => {
        const { value, grads } = tf.variableGrads(loss(model), vars);
        value.dataSync();
        tf.dispose(Object.values(grads));
      }), 1);
      rows.push({ bench: 'models', case: `${c.name}, forward, ${BATCH}×64³ (${info.name})`, value: fwd / 1000, unit: 's', baseline: baseline / 1000 });
      rows.push({
        bench: 'models',
        case: `${c.name}, ${c.encoder ? 'encoder-only ' : ''}forward+backward, ${BATCH}×64³ (${info.name})`,
        value: fb / 1000,
        unit: 's',
        baseline: baseline / 1000,
        note: `peak RSS ${(peak / 2 ** 30).toFixed(2)} GiB`,
      });
    } finally {
      clearInterval(sample);
      disposeModel(model);
    }
  }
  x.dispose();
  return rows;
}
