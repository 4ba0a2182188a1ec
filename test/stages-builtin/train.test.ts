/**
 * crop-sample → train on three real CTs resized to 64×64×32: a tiny SwinUNETR (feature size 12)
 * on 32³ crops, a few steps. Checks the outputs (MONAI-named encoder weights, metrics, loss
 * curve), the run record's backend, errors for bad params, and that a run killed with SIGKILL
 * resumes from its last checkpoint and reproduces the uninterrupted run's losses exactly.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BlobRef } from '../../src/engine/stage.ts';
import { parseSafetensors } from '../../src/models/weights/safetensors.ts';
import { swinUnetrVariableSpec } from '../../src/models/swinunetr/index.ts';
import { Store } from '../../src/store/store.ts';
import { parseMetrics } from '../../src/train/metrics.ts';
import { REPO, runInProcess, tempDir, VOCO_BIN, writePipeline } from '../helpers.ts';

const BACKEND = process.env['VOCO_TEST_BACKEND'] === 'tensorflow' ? 'tensorflow' : 'cpu';
const CT = join(REPO, 'data', 'ct');
const STEPS = 4;

function dataset(dir: string): void {
  const folder = join(dir, 'data');
  mkdirSync(folder, { recursive: true });
  for (const f of ['totalseg_example_ct_sm', 'totalseg_aorta_ct_cropped', 'totalseg_example_ct']) copyFileSync(join(CT, `${f}.nii.gz`), join(folder, `${f}.nii.gz`));
}

function pipeline(dir: string, train: Record<string, unknown> = {}): string {
  const withTrain = {
    model: { arch: 'swinunetr', feature_size: 12 },
    voco: { version: 'v1', head_hidden: 32, head_out: 32 },
    steps: STEPS,
    batch_volumes: 1,
    optimizer: { lr: 1e-3 },
    schedule: { kind: 'warmup_cosine', warmup_steps: 1 },
    checkpoint_every: 2,
    loader: { workers: 0 },
    ...train,
  };
  return writePipeline(
    dir,
    'train.yaml',
    `version: 1
name: train-test
seed: 7
backend: ${BACKEND}
stages:
  preprocess:
    uses: preprocess
    with:
      dataset: { folder: data, glob: "*.nii.gz" }
      transforms:
        - orientation: RAS
        - scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true }
        - crop_foreground: { threshold: 0.3 }
        - resize: { spatial_size: [64, 64, 32], align_corners: true }
    resources: { cpu: 2 }
  cache:
    uses: cache
    inputs: { volumes: preprocess.volumes }
  crop-sample:
    uses: crop-sample
    inputs: { volumes: cache.volumes }
    with:
      recipe: voco_v1
      region: [64, 64, 32]
      grid: [2, 2]
      base_crop: [32, 32, 32]
      random_crop: [32, 32, 32]
      random_crops: 1
      crop_size: null
  train:
    uses: train
    inputs: { crops: crop-sample.crops }
    with: ${JSON.stringify(withTrain)}
`,
  );
}

interface TrainOutputs {
  checkpoint: { weights: BlobRef; model: { arch: string }; steps: number };
  metrics: { log: BlobRef; curve: BlobRef; summary: { first_loss: number; last_loss: number; backend: string } };
}

async function outputs(cache: string, key: string): Promise<{ out: TrainOutputs; store: Store }> {
  const store = Store.open(cache);
  const rec = store.getStage(key)!;
  return {
    store,
    out: { checkpoint: rec.outputs.checkpoint!.value, metrics: rec.outputs.metrics!.value } as unknown as TrainOutputs,
  };
}

function losses(jsonl: Uint8Array): number[] {
  return parseMetrics(new TextDecoder().decode(jsonl)).records.map((r) => r.loss as number);
}

describe('crop-sample and train stages', () => {
  it('trains, checkpoints, exports MONAI-named encoder weights and records the backend', async () => {
    const dir = tempDir();
    dataset(dir);
    const cache = join(dir, 'cache');
    const { summary } = await runInProcess(pipeline(dir), cache);
    expect(summary.status).toBe('succeeded');
    const { out, store } = await outputs(cache, summary.stages['train']!.key!);
    try {
      const weights = parseSafetensors(await store.getBlob(out.checkpoint.weights));
      const expected = swinUnetrVariableSpec({ featureSize: 12, inChannels: 1, encoderOnly: true, useV2: true }).map((s) => s.name);
      expect([...weights.dict.keys()].sort()).toEqual([...expected].sort());
      expect(weights.dict.get('swinViT.patch_embed.proj.weight')!.shape).toEqual([12, 1, 2, 2, 2]);
      const log = losses(await store.getBlob(out.metrics.log));
      expect(log).toHaveLength(STEPS);
      for (const l of log) expect(Number.isFinite(l)).toBe(true);
      expect(new TextDecoder().decode(await store.getBlob(out.metrics.curve))).toMatch(/^(<\?xml[^>]*>\s*)?<svg[\s\S]*<polyline[\s\S]*<\/svg>\s*$/);
      expect(out.metrics.summary.backend).toBe(BACKEND);
      const run = store.listRuns().at(-1)!;
      expect(run.stages['train']!.environment).toEqual({ backend: BACKEND });
      // checkpoints served their purpose once the stage's outputs are committed
      expect(existsSync(join(cache, 'checkpoints', summary.stages['train']!.key!.slice(7, 31)))).toBe(false);
    } finally {
      await store.close();
    }
    // loader threads change the speed, not the result: the stage stays cached
    const again = await runInProcess(pipeline(dir, { loader: { workers: 2, prefetch: 3 } }), cache);
    expect(again.summary.stages['train']!.status).toBe('cached');
  }, 300_000);

  it('resumes after kill -9 from the last checkpoint and reproduces the uninterrupted losses exactly', async () => {
    const dir = tempDir();
    dataset(dir);
    const file = pipeline(dir);
    const whole = await runInProcess(file, join(dir, 'cache-a'));
    const reference = await outputs(join(dir, 'cache-a'), whole.summary.stages['train']!.key!);
    const expected = losses(await reference.store.getBlob(reference.out.metrics.log));
    await reference.store.close();

    const cacheB = join(dir, 'cache-b');
    const ckptDir = join(cacheB, 'checkpoints', whole.summary.stages['train']!.key!.slice(7, 31));
    const child = spawn(process.execPath, [VOCO_BIN, 'run', file, '--cache', cacheB], { stdio: 'ignore' });
    // Resolves once the child has exited (a killed process holds its run lock until then).
    const killed = await new Promise<boolean>((resolve) => {
      let sent = false;
      const poll = setInterval(() => {
        if (!sent && existsSync(join(ckptDir, 'ckpt-0000000002'))) {
          sent = true;
          child.kill('SIGKILL');
        }
      }, 50);
      child.on('exit', (_code, signal) => {
        clearInterval(poll);
        resolve(sent && signal === 'SIGKILL');
      });
    });
    expect(killed, 'the child was killed after its first checkpoint').toBe(true);
    const resumed = spawnSync(process.execPath, [VOCO_BIN, 'run', file, '--cache', cacheB], { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr + resumed.stdout).toBe(0);
    expect(resumed.stdout + resumed.stderr).toMatch(/resuming from the checkpoint at step [23]/);
    const b = await outputs(cacheB, whole.summary.stages['train']!.key!);
    try {
      expect(losses(await b.store.getBlob(b.out.metrics.log))).toEqual(expected);
      const wa = parseSafetensors(await b.store.getBlob(b.out.checkpoint.weights));
      expect(b.out.checkpoint.weights.$blob).toBe(reference.out.checkpoint.weights.$blob);
      expect(wa.dict.size).toBeGreaterThan(0);
    } finally {
      await b.store.close();
    }
  }, 300_000);

  it('trains VoCo v2 (shared backbone, EMA teacher head, intra/inter/reg losses)', async () => {
    const dir = tempDir();
    dataset(dir);
    const cache = join(dir, 'cache');
    const { summary } = await runInProcess(pipeline(dir, { voco: { version: 'v2', head_hidden: 32, head_out: 32 }, steps: 2, checkpoint_every: 1 }), cache, {
      sets: ['stages.crop-sample.with.recipe=voco_v2'],
    });
    expect(summary.status).toBe('succeeded');
    const { out, store } = await outputs(cache, summary.stages['train']!.key!);
    try {
      const records = parseMetrics(new TextDecoder().decode(await store.getBlob(out.metrics.log))).records;
      expect(records).toHaveLength(2);
      for (const r of records) {
        for (const term of ['intra', 'inter', 'reg']) expect(Number.isFinite(r[term] as number), term).toBe(true);
        expect(r['loss'] as number).toBeCloseTo((r['intra'] as number) + (r['inter'] as number) + (r['reg'] as number), 5);
      }
    } finally {
      await store.close();
    }
  }, 300_000);

  it('names the field for bad crop geometry, bad schedules and too few volumes', async () => {
    const dir = tempDir();
    dataset(dir);
    const cache = join(dir, 'cache');
    const geometry = await runInProcess(pipeline(dir), cache, { sets: ['stages.crop-sample.with.grid=[3,2]'] });
    expect(geometry.summary.status).toBe('failed');
    expect(geometry.summary.stages['crop-sample']!.error).toMatch(/stages\.crop-sample\.with: invalid VoCo geometry:[\s\S]*grid x \(3\) × base_crop x \(32\) = 96 must equal region x \(64\)/);
    const region = await runInProcess(pipeline(dir), cache, { sets: ['stages.crop-sample.with.region=[96,64,32]', 'stages.crop-sample.with.grid=[3,2]'] });
    expect(region.summary.stages['crop-sample']!.error).toMatch(/3 of 3 cached volumes do not have the crop region's shape 1×96×64×32 \(with\.region\): .*is 1×64×64×32/);
    const warmup = await runInProcess(pipeline(dir, { schedule: { kind: 'warmup_cosine', warmup_steps: STEPS } }), cache);
    expect(warmup.summary.stages['train']!.error).toMatch(/stages\.train\.with\.schedule\.warmup_steps \(4\) must be less than with\.steps \(4\)/);
    const batch = await runInProcess(pipeline(dir, { batch_volumes: 4 }), cache);
    expect(batch.summary.stages['train']!.error).toMatch(/with\.batch_volumes is 4 but only 3 volumes are cached/);
  }, 300_000);
});
