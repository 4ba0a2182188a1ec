/** Shared helpers for the SwinUNETR tests: backend choice, fixture reading, comparisons. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setupTestBackend } from '../ops/grad-check.ts';
import * as tf from '@tensorflow/tfjs-core';
import { loadIntoSpec } from '../../../src/models/weights/layout.ts';
import { readTorchCheckpoint } from '../../../src/models/weights/torch-load.ts';
import { assignVariables, createSwinUnetr, type SwinUnetr, type SwinUnetrOptions } from '../../../src/models/swinunetr/index.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/swinunetr/', import.meta.url));

/** The fixture model's configuration (see test/fixtures/swinunetr/SOURCES.md). */
export const FIXTURE_OPTS: SwinUnetrOptions = { featureSize: 12, inChannels: 1, outChannels: 14, depths: [2, 2, 2, 2], numHeads: [3, 6, 12, 24], useV2: true };

/** Suggested tolerances of the fixture README (np.allclose style: |a − b| ≤ atol + rtol·|b|). */
export const ATOL = 1e-4;
export const RTOL = 1e-3;

/** The test backend (see setupTestBackend): tfjs-node when VOCO_TEST_BACKEND=tensorflow, else cpu. */
export const setupBackend = setupTestBackend;

export interface Fixture {
  shape: number[];
  data: Float32Array;
  /** For `_sub4` files: the shape before [:, :, ::4, ::4, ::4]. */
  fullShape?: number[];
}

/** Reads `<rel>.f32` + `<rel>.json` (raw little-endian float32, C order). */
export function readFixture(rel: string): Fixture {
  const meta = JSON.parse(readFileSync(join(FIXTURES, `${rel}.json`), 'utf8')) as { shape: number[]; full_shape?: number[] };
  const buf = readFileSync(join(FIXTURES, `${rel}.f32`));
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const n = meta.shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new Error(`${rel}: ${data.length} values for shape [${meta.shape}]`);
  return meta.full_shape ? { shape: meta.shape, data, fullShape: meta.full_shape } : { shape: meta.shape, data };
}

/** A fixture (N, C, D0, D1, D2) as a channels-last tensor [N, D0, D1, D2, C]. */
export function fixtureToChannelsLast(f: Fixture): tf.Tensor {
  return tf.tidy(() => tf.transpose(tf.tensor(f.data, f.shape), [0, 2, 3, 4, 1]));
}

/** Creates the fixture model and loads `swinunetr_fs12.pt` into it (strict: nothing missing). */
export async function loadFixtureModel(extra: Partial<SwinUnetrOptions> = {}): Promise<SwinUnetr> {
  const model = createSwinUnetr({ ...FIXTURE_OPTS, ...extra });
  const ckpt = await readTorchCheckpoint(join(FIXTURES, 'swinunetr_fs12.pt'));
  const res = loadIntoSpec(model.spec, ckpt.dict);
  if (res.missing.length || res.mismatched.length) {
    throw new Error(`fixture weights: missing ${res.missing.join(', ')}; mismatched ${res.mismatched.map((m) => m.name).join(', ')}`);
  }
  assignVariables(model, res.tensors);
  return model;
}

export interface Diff {
  name: string;
  maxAbs: number;
  /** max |a − b| / (atol + rtol·|b|): ≤ 1 passes. */
  worstRatio: number;
  maxRef: number;
  count: number;
}

/**
 * Compares our channels-last tensor with an (N, C, D0, D1, D2) fixture (or `_sub4`: every 4th
 * voxel), or with a plain 2-D fixture when `ours` is 2-D.
 */
export async function compareToFixture(name: string, ours: tf.Tensor, f: Fixture): Promise<Diff> {
  const a = await ours.data();
  const ref = f.data;
  let maxAbs = 0;
  let worstRatio = 0;
  let maxRef = 0;
  const check = (x: number, y: number) => {
    const d = Math.abs(x - y);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    const r = d / (ATOL + RTOL * Math.abs(y));
    if (!(r <= worstRatio)) worstRatio = Number.isNaN(r) ? Infinity : r;
    maxRef = Math.max(maxRef, Math.abs(y));
  };
  if (ours.rank === 2) {
    if (ours.shape.join() !== f.shape.join()) throw new Error(`${name}: shape [${ours.shape}] vs fixture [${f.shape}]`);
    for (let i = 0; i < ref.length; i++) check(a[i]!, ref[i]!);
  } else {
    const [N, C, S0, S1, S2] = f.shape as [number, number, number, number, number];
    const full = f.fullShape ?? f.shape;
    const step = f.fullShape ? 4 : 1;
    const [n, d0, d1, d2, c] = ours.shape as [number, number, number, number, number];
    if (n !== full[0] || c !== full[1] || d0 !== full[2] || d1 !== full[3] || d2 !== full[4]) {
      throw new Error(`${name}: shape [${ours.shape}] (NDHWC) vs fixture [${full}] (NCDHW)`);
    }
    let i = 0;
    for (let nn = 0; nn < N; nn++)
      for (let cc = 0; cc < C; cc++)
        for (let x = 0; x < S0; x++)
          for (let y = 0; y < S1; y++)
            for (let z = 0; z < S2; z++, i++) {
              const j = (((nn * d0 + x * step) * d1 + y * step) * d2 + z * step) * c + cc;
              check(a[j]!, ref[i]!);
            }
  }
  return { name, maxAbs, worstRatio, maxRef, count: ref.length };
}

export function formatDiffs(title: string, diffs: Diff[]): string {
  const rows = diffs.map((d) => `  ${d.name.padEnd(28)} max|Δ| ${d.maxAbs.toExponential(2)}  (max|ref| ${d.maxRef.toFixed(3)}, worst Δ/(atol+rtol|ref|) ${d.worstRatio.toFixed(3)}, n=${d.count})`);
  return [`${title}`, ...rows].join('\n');
}
