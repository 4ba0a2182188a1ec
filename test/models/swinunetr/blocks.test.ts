/** Unit tests of the SwinUNETR building blocks against direct (naive) definitions. */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stageWindow } from '../../../src/models/swinunetr/basic-layer.ts';
import { convTranspose2, gelu, instanceNorm, layerNorm, roll, setJsKernels, softmaxLastAxis } from '../../../src/models/swinunetr/ops.ts';
import { gatherParities, MERGING_OFFSETS, MERGING_V2_OFFSETS } from '../../../src/models/swinunetr/patch-merging.ts';
import {
  clipWindow,
  relativePositionBias,
  relativePositionIndex,
  shiftedWindowMask,
  slicedRelativeIndex,
  windowPartition,
  windowReverse,
  type Vec3,
} from '../../../src/models/swinunetr/window-attention.ts';
import { createRng } from '../../../src/util/rng.ts';
import { setupBackend } from './helpers.ts';

beforeAll(async () => {
  await setupBackend();
});

function rand(shape: number[], seed = 'r'): tf.Tensor {
  const rng = createRng(1, seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), shape);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Row-major strides. */
function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

describe('roll (torch.roll)', () => {
  it('matches out[i] = x[(i − s) mod n] on every axis, both signs', async () => {
    const shape = [2, 5, 6, 7, 3];
    const x = rand(shape);
    const xv = await x.data();
    const st = strides(shape);
    for (const axis of [1, 2, 3]) {
      for (const s of [3, -3, 0, 8]) {
        const y = await roll(x, s, axis).data();
        const n = shape[axis]!;
        let worst = 0;
        for (let i = 0; i < xv.length; i++) {
          const pos = Math.floor(i / st[axis]!) % n;
          const src = (((pos - s) % n) + n) % n;
          const j = i + (src - pos) * st[axis]!;
          worst = Math.max(worst, Math.abs(y[i]! - xv[j]!));
        }
        expect(worst).toBe(0);
      }
    }
  });
});

describe('window partition / reverse', () => {
  it('orders windows (d,h,w) per sample and tokens (d,h,w) per window; reverse inverts it', async () => {
    const [B, P0, P1, P2, C] = [2, 14, 8, 6, 3];
    const win: Vec3 = [7, 4, 2];
    const x = rand([B, P0, P1, P2, C]);
    const xv = await x.data();
    const w = windowPartition(x, win);
    const [n0, n1, n2] = [P0 / 7, P1 / 4, P2 / 2];
    expect(w.shape).toEqual([B * n0 * n1 * n2, 7 * 4 * 2, C]);
    const wv = await w.data();
    let worst = 0;
    let k = 0;
    for (let b = 0; b < B; b++)
      for (let i0 = 0; i0 < n0; i0++)
        for (let i1 = 0; i1 < n1; i1++)
          for (let i2 = 0; i2 < n2; i2++)
            for (let t0 = 0; t0 < 7; t0++)
              for (let t1 = 0; t1 < 4; t1++)
                for (let t2 = 0; t2 < 2; t2++)
                  for (let c = 0; c < C; c++, k++) {
                    const src = (((b * P0 + i0 * 7 + t0) * P1 + i1 * 4 + t1) * P2 + i2 * 2 + t2) * C + c;
                    worst = Math.max(worst, Math.abs(wv[k]! - xv[src]!));
                  }
    expect(worst).toBe(0);
    const back = await windowReverse(w, win, [B, P0, P1, P2]).data();
    expect(maxAbsDiff(back, xv)).toBe(0);
  });
});

describe('window size and relative position index', () => {
  it('clips the window and drops the shift per axis when the size is ≤ the window (MONAI get_window_size)', () => {
    expect(stageWindow([32, 32, 32], [7, 7, 7])).toEqual({ window: [7, 7, 7], shift: [3, 3, 3] });
    expect(stageWindow([8, 4, 4], [7, 7, 7])).toEqual({ window: [7, 4, 4], shift: [3, 0, 0] });
    expect(stageWindow([4, 2, 2], [7, 7, 7])).toEqual({ window: [4, 2, 2], shift: [0, 0, 0] });
    expect(stageWindow([7, 8, 6], [7, 7, 7])).toEqual({ window: [7, 7, 6], shift: [0, 3, 0] });
    expect(clipWindow([4, 4, 4], [7, 7, 7], [0, 0, 0])).toEqual({ window: [4, 4, 4], shift: [0, 0, 0] });
  });

  it('index = (Δd+6)·169 + (Δh+6)·13 + (Δw+6) for a 7³ window', () => {
    const idx = relativePositionIndex([7, 7, 7]);
    expect(idx.length).toBe(343 * 343);
    expect(idx[0]).toBe(6 * 169 + 6 * 13 + 6);
    expect(Math.min(...idx)).toBe(0);
    expect(Math.max(...idx)).toBe(2196);
    // token 342 = (6,6,6), token 0 = (0,0,0): Δ = (+6,+6,+6) → 12·169 + 12·13 + 12
    expect(idx[342 * 343]).toBe(2196);
    expect(idx[342]).toBe(0);
    for (let a = 0; a < 343; a += 17) for (let b = 0; b < 343; b += 13) expect(idx[a * 343 + b]! + idx[b * 343 + a]!).toBe(2 * 1098);
  });

  it('a clipped window uses MONAI’s index[:n, :n] of the 7³ index (not true offsets)', () => {
    const full = relativePositionIndex([7, 7, 7]);
    const s = slicedRelativeIndex([7, 7, 7], 112); // window (7,4,4)
    expect(s.length).toBe(112 * 112);
    for (let a = 0; a < 112; a += 5) for (let b = 0; b < 112; b += 7) expect(s[a * 112 + b]).toBe(full[a * 343 + b]);
    // token 4 of a (7,4,4) window is (0,1,0), but the 7³ index treats it as (0,0,4)
    expect(s[4 * 112]).toBe(6 * 169 + 6 * 13 + 10);
  });
});

/**
 * A literal re-statement of MONAI's compute_mask loop semantics: Python slices slice(-w),
 * slice(-w, -s), slice(-s, None) per axis, nested d → h → w loops, later writes overwrite.
 * With s = 0, `-0:` is the whole axis and `-w:-0` is empty.
 */
function monaiMaskReference(padded: Vec3, window: Vec3, shift: Vec3): Float32Array {
  const pySlices = (P: number, w: number, s: number): Array<[number, number]> => {
    const norm = (v: number | null, dflt: number) => (v === null ? dflt : v < 0 || Object.is(v, -0) ? P + v : v);
    const mk = (a: number | null, b: number | null): [number, number] => [Math.max(0, norm(a, 0)), Math.min(P, norm(b, P))];
    return [mk(null, -w), mk(-w, -s), mk(-s, null)];
  };
  const [P0, P1, P2] = padded;
  const img = new Int32Array(P0 * P1 * P2);
  let cnt = 0;
  for (const [d0, d1] of pySlices(P0, window[0], shift[0]))
    for (const [h0, h1] of pySlices(P1, window[1], shift[1]))
      for (const [w0, w1] of pySlices(P2, window[2], shift[2])) {
        for (let d = d0; d < d1; d++) for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) img[(d * P1 + h) * P2 + w] = cnt;
        cnt++;
      }
  const n = window[0] * window[1] * window[2];
  const counts = [P0 / window[0], P1 / window[1], P2 / window[2]] as const;
  const out = new Float32Array(counts[0] * counts[1] * counts[2] * n * n);
  let wi = 0;
  for (let i0 = 0; i0 < counts[0]; i0++)
    for (let i1 = 0; i1 < counts[1]; i1++)
      for (let i2 = 0; i2 < counts[2]; i2++, wi++) {
        const ids: number[] = [];
        for (let t0 = 0; t0 < window[0]; t0++)
          for (let t1 = 0; t1 < window[1]; t1++)
            for (let t2 = 0; t2 < window[2]; t2++) ids.push(img[((i0 * window[0] + t0) * P1 + i1 * window[1] + t1) * P2 + i2 * window[2] + t2]!);
        for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) out[(wi * n + a) * n + b] = ids[a] === ids[b] ? 0 : -100;
      }
  return out;
}

describe('shifted-window attention mask', () => {
  const cases: Array<[Vec3, Vec3, Vec3]> = [
    [[35, 35, 35], [7, 7, 7], [3, 3, 3]], // 64³ input, stage 1
    [[14, 14, 14], [7, 7, 7], [3, 3, 3]], // stage 2/3 of 64³ / 128³
    [[14, 4, 4], [7, 4, 4], [3, 0, 0]], // VoCo 64×32×32 crops, stage 3
    [[21, 7, 14], [7, 7, 7], [3, 0, 3]],
  ];
  for (const [padded, window, shift] of cases) {
    it(`matches MONAI compute_mask for padded ${padded.join('×')}, window ${window.join('×')}, shift ${shift.join('×')}`, () => {
      const ours = shiftedWindowMask(padded, window, shift);
      const ref = monaiMaskReference(padded, window, shift);
      expect(ours.length).toBe(ref.length);
      let mismatches = 0;
      for (let i = 0; i < ref.length; i++) if (ours[i] !== ref[i]) mismatches++;
      expect(mismatches).toBe(0);
      expect(ours.some((v) => v !== 0)).toBe(true);
    });
  }
});

describe('patch merging gather', () => {
  it('concatenates x[:, a::2, b::2, c::2, :] in the given offset order (odd dims zero-padded)', async () => {
    for (const offsets of [MERGING_OFFSETS, MERGING_V2_OFFSETS]) {
      const x = rand([2, 5, 4, 6, 3]);
      const ours = await gatherParities(x, offsets).data();
      const padded = tf.pad(x, [[0, 0], [0, 1], [0, 0], [0, 0], [0, 0]]);
      const parts = offsets.map(([a, b, c]) => tf.stridedSlice(padded, [0, a, b, c, 0], [2, 6, 4, 6, 3], [1, 2, 2, 2, 1]));
      const ref = await tf.concat(parts, 4).data();
      expect(maxAbsDiff(ours, ref)).toBe(0);
    }
  });
});

describe('elementwise and norms', () => {
  it('GELU is the exact erf form', async () => {
    const y = await gelu(tf.tensor1d([-3, -1, 0, 0.5, 1, 3])).data();
    const ref = [-0.0040496, -0.15865525, 0, 0.34573123, 0.84134475, 2.99595031];
    expect(maxAbsDiff(y, ref)).toBeLessThan(2e-6);
  });

  it('layer norm over channels and instance norm over space use biased variance and eps 1e-5', async () => {
    const x = rand([2, 3, 4, 5, 6]);
    const xv = await x.data();
    const ln = await layerNorm(x).data();
    const inn = await instanceNorm(x).data();
    let lnWorst = 0;
    for (let r = 0; r < xv.length / 6; r++) {
      const row = Array.from(xv.subarray(r * 6, r * 6 + 6));
      const mu = row.reduce((a, b) => a + b, 0) / 6;
      const v = row.reduce((a, b) => a + (b - mu) ** 2, 0) / 6;
      row.forEach((val, c) => (lnWorst = Math.max(lnWorst, Math.abs(ln[r * 6 + c]! - (val - mu) / Math.sqrt(v + 1e-5)))));
    }
    expect(lnWorst).toBeLessThan(1e-5);
    let inWorst = 0;
    const S = 3 * 4 * 5;
    for (let n = 0; n < 2; n++)
      for (let c = 0; c < 6; c++) {
        const vals: number[] = [];
        for (let s = 0; s < S; s++) vals.push(xv[(n * S + s) * 6 + c]!);
        const mu = vals.reduce((a, b) => a + b, 0) / S;
        const v = vals.reduce((a, b) => a + (b - mu) ** 2, 0) / S;
        vals.forEach((val, s) => (inWorst = Math.max(inWorst, Math.abs(inn[(n * S + s) * 6 + c]! - (val - mu) / Math.sqrt(v + 1e-5)))));
      }
    expect(inWorst).toBeLessThan(1e-5);
  });
});

describe('transposed convolution (kernel 2, stride 2)', () => {
  it('equals tf.conv3dTranspose with the same [k,k,k,out,in] filter', async () => {
    const x = rand([2, 3, 2, 4, 5], 'x');
    const w = rand([2, 2, 2, 7, 5], 'w');
    const ours = await convTranspose2(x, w).data();
    const ref = await tf.conv3dTranspose(x as tf.Tensor5D, w as tf.Tensor5D, [2, 6, 4, 8, 7], 2, 'valid').data();
    expect(maxAbsDiff(ours, ref)).toBeLessThan(1e-5);
  });
});

describe('relative position bias lookup', () => {
  it('equals table[index[:n, :n]] (gather) exactly, for full and clipped windows', async () => {
    for (const [win, n] of [
      [[7, 7, 7], 343],
      [[7, 7, 7], 112],
      [[7, 7, 7], 16],
      [[3, 4, 2], 24],
    ] as Array<[Vec3, number]>) {
      const rows = (2 * win[0] - 1) * (2 * win[1] - 1) * (2 * win[2] - 1);
      const table = rand([rows, 3], `t${n}`);
      const ours = await relativePositionBias(table, win, n).data();
      const idx = tf.tensor1d(slicedRelativeIndex(win, n), 'int32');
      const ref = await tf.transpose(tf.gather(table, idx), [1, 0]).data();
      expect(maxAbsDiff(ours, ref)).toBe(0);
    }
  });
});

describe('JS-loop kernels of the cpu backend', () => {
  afterAll(() => setJsKernels('auto'));
  const cases: Array<[string, (x: tf.Tensor) => tf.Tensor, number[]]> = [
    ['softmax', (x) => softmaxLastAxis(x), [3, 5, 17]],
    ['layer norm', (x) => layerNorm(x), [2, 3, 4, 5, 6]],
    ['instance norm', (x) => instanceNorm(x), [2, 3, 4, 5, 6]],
  ];
  for (const [name, f, shape] of cases) {
    it(`${name}: values and gradients equal the tf-op formulation`, async () => {
      const x = rand(shape, `${name}x`);
      const w = rand(shape, `${name}w`);
      const run = async (mode: 'on' | 'off') => {
        setJsKernels(mode);
        const y = await f(x).data();
        const g = await tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), w)))(x).data();
        return { y, g };
      };
      const js = await run('on');
      const ref = await run('off');
      expect(maxAbsDiff(js.y, ref.y)).toBeLessThan(2e-6);
      expect(maxAbsDiff(js.g, ref.g)).toBeLessThan(2e-5);
    });
  }
});
