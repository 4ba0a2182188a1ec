import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  exportFromSpec,
  loadIntoSpec,
  permute,
  tfToTorch,
  torchShapeOf,
  torchToTf,
  torchToTfPerm,
  type Layout,
  type VariableSpec,
} from '../../../src/models/weights/layout.ts';
import type { StateDict, TensorData } from '../../../src/models/weights/state-dict.ts';
import { readTorchCheckpoint } from '../../../src/models/weights/torch-load.ts';
import { FS12_PT, readF32 } from './fixtures.ts';

/** Deterministic pseudo-random floats (mulberry32). */
function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

const f32 = (shape: number[], seed: number): TensorData & { data: Float32Array } => ({ dtype: 'float32', shape, data: rand(shape.reduce((a, b) => a * b, 1), seed) });
const same = (a: TensorData, b: TensorData) =>
  a.dtype === b.dtype &&
  JSON.stringify(a.shape) === JSON.stringify(b.shape) &&
  Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength));

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('layout transposes', () => {
  it('conv3d: (out,in,kd,kh,kw) ↔ [kd,kh,kw,in,out], every element', () => {
    const t = f32([5, 4, 3, 2, 3], 1);
    const g = torchToTf('conv3d', t);
    expect(g.shape).toEqual([3, 2, 3, 4, 5]);
    const T = t.data as Float32Array;
    const G = g.data as Float32Array;
    // one element by hand: torch[4][1][2][0][1] sits at ((((4·4+1)·3+2)·2+0)·3+1) = 319,
    // tf[2][0][1][1][4] at ((((2·2+0)·3+1)·4+1)·5+4) = 269
    expect(G[269]).toBe(T[319]);
    for (let o = 0; o < 5; o++)
      for (let i = 0; i < 4; i++)
        for (let a = 0; a < 3; a++)
          for (let b = 0; b < 2; b++)
            for (let c = 0; c < 3; c++) {
              expect(G[(((a * 2 + b) * 3 + c) * 4 + i) * 5 + o]).toBe(T[(((o * 4 + i) * 3 + a) * 2 + b) * 3 + c]);
            }
    expect(same(tfToTorch('conv3d', g), t)).toBe(true);
  });

  it('conv3dTranspose: (in,out,kd,kh,kw) ↔ [kd,kh,kw,out,in], every element', () => {
    const t = f32([4, 5, 2, 3, 2], 2);
    const g = torchToTf('conv3dTranspose', t);
    expect(g.shape).toEqual([2, 3, 2, 5, 4]);
    const T = t.data as Float32Array;
    const G = g.data as Float32Array;
    // torch[3][2][1][2][0] at ((((3·5+2)·2+1)·3+2)·2+0) = 214; tf[1][2][0][2][3] at ((((1·3+2)·2+0)·5+2)·4+3) = 211
    expect(G[211]).toBe(T[214]);
    for (let i = 0; i < 4; i++)
      for (let o = 0; o < 5; o++)
        for (let a = 0; a < 2; a++)
          for (let b = 0; b < 3; b++)
            for (let c = 0; c < 2; c++) {
              expect(G[(((a * 3 + b) * 2 + c) * 5 + o) * 4 + i]).toBe(T[(((i * 5 + o) * 2 + a) * 3 + b) * 2 + c]);
            }
    expect(same(tfToTorch('conv3dTranspose', g), t)).toBe(true);
  });

  it('linear: (out,in) ↔ [in,out], every element', () => {
    const t = f32([7, 3], 3);
    const g = torchToTf('linear', t);
    expect(g.shape).toEqual([3, 7]);
    // torch[5][2] at 5·3+2 = 17; tf[2][5] at 2·7+5 = 19
    expect(g.data[19]).toBe(t.data[17]);
    for (let o = 0; o < 7; o++) for (let i = 0; i < 3; i++) expect(g.data[i * 7 + o]).toBe(t.data[o * 3 + i]);
    expect(same(tfToTorch('linear', g), t)).toBe(true);
  });

  it('plain: unchanged values in a new array, any rank', () => {
    for (const shape of [[], [6], [2197, 3], [2, 3, 4]]) {
      const t = f32(shape, 4);
      const g = torchToTf('plain', t);
      expect(same(g, t)).toBe(true);
      expect(g.data).not.toBe(t.data);
      expect(same(tfToTorch('plain', g), t)).toBe(true);
    }
  });

  it('keeps the dtype (int64, float16) and round-trips random shapes exhaustively', () => {
    const i64: TensorData = { dtype: 'int64', shape: [2, 3, 1, 2, 2], data: BigInt64Array.from({ length: 24 }, (_, i) => BigInt(i * 1000 - 7)) };
    const g = torchToTf('conv3d', i64);
    expect(g.dtype).toBe('int64');
    expect(g.data).toBeInstanceOf(BigInt64Array);
    // tf [1,2,2,3,2] element [0][1][0][1][0] (flat 14) = torch (2,3,1,2,2) element [0][1][0][1][0] (flat 6)
    expect(g.data[14]).toBe(i64.data[6]);
    expect(g.data[14]).toBe(5993n);
    expect(same(tfToTorch('conv3d', g), i64)).toBe(true);
    const f16: TensorData = { dtype: 'float16', shape: [3, 2], data: Uint16Array.from([1, 2, 3, 4, 5, 6]) };
    expect(Array.from(torchToTf('linear', f16).data as Uint16Array)).toEqual([1, 3, 5, 2, 4, 6]);
    let seed = 10;
    for (const layout of ['conv3d', 'conv3dTranspose', 'linear', 'plain'] as Layout[]) {
      for (let trial = 0; trial < 20; trial++) {
        const rank = layout === 'linear' ? 2 : layout === 'plain' ? 1 + (trial % 4) : 5;
        const shape = Array.from({ length: rank }, (_, i) => 1 + ((seed * 7 + i * 3) % 4));
        const t = f32(shape, seed++);
        const g = torchToTf(layout, t);
        expect(g.shape).toEqual(torchToTfPerm(layout, rank).map((p) => shape[p]));
        expect(torchShapeOf(layout, g.shape)).toEqual(shape);
        expect(same(tfToTorch(layout, g), t)).toBe(true);
      }
    }
  });

  it('rejects wrong ranks and bad permutations', () => {
    expect(() => torchToTf('conv3d', f32([3, 3], 1))).toThrow('conv3d weights are 5-D, got rank 2');
    expect(() => torchToTf('linear', f32([3, 3, 3], 1))).toThrow('linear weights are 2-D, got rank 3');
    expect(() => permute(f32([2, 2], 1), [0, 0])).toThrow('invalid permutation (0, 0) for a tensor of rank 2');
  });
});

describe('layouts agree with TF.js ops on PyTorch semantics', () => {
  it('conv3d: PyTorch cross-correlation with padding 1 = tf.conv3d(same) with the converted filter', () => {
    const [Ci, Co, D, H, W] = [2, 3, 3, 4, 3];
    const x = rand(Ci * D * H * W, 20); // torch (1, Ci, D, H, W)
    const w = f32([Co, Ci, 3, 3, 3], 21);
    const ref = new Float32Array(Co * D * H * W);
    for (let o = 0; o < Co; o++)
      for (let d = 0; d < D; d++)
        for (let h = 0; h < H; h++)
          for (let q = 0; q < W; q++) {
            let acc = 0;
            for (let i = 0; i < Ci; i++)
              for (let a = 0; a < 3; a++)
                for (let b = 0; b < 3; b++)
                  for (let c = 0; c < 3; c++) {
                    const [zd, zh, zw] = [d + a - 1, h + b - 1, q + c - 1];
                    if (zd < 0 || zh < 0 || zw < 0 || zd >= D || zh >= H || zw >= W) continue;
                    acc += x[((i * D + zd) * H + zh) * W + zw]! * w.data[(((o * Ci + i) * 3 + a) * 3 + b) * 3 + c]!;
                  }
            ref[((o * D + d) * H + h) * W + q] = acc;
          }
    const xT = tf.transpose(tf.tensor5d(x, [1, Ci, D, H, W]), [0, 2, 3, 4, 1]);
    const filt = torchToTf('conv3d', w);
    const y = tf.transpose(tf.conv3d(xT as tf.Tensor5D, tf.tensor5d(filt.data as Float32Array, filt.shape as [number, number, number, number, number]), 1, 'same'), [0, 4, 1, 2, 3]);
    const got = y.dataSync();
    for (let k = 0; k < ref.length; k++) expect(got[k]).toBeCloseTo(ref[k]!, 5);
  });

  it('conv3dTranspose: PyTorch ConvTranspose3d(k=2, s=2) = tf.conv3dTranspose with the converted filter', () => {
    const [Ci, Co, D] = [3, 2, 2];
    const x = rand(Ci * D * D * D, 30);
    const w = f32([Ci, Co, 2, 2, 2], 31); // (in, out, k, k, k)
    // out[o, 2d+a, 2h+b, 2q+c] = Σ_i x[i, d, h, q] · w[i, o, a, b, c]
    const ref = new Float32Array(Co * 64);
    for (let i = 0; i < Ci; i++)
      for (let o = 0; o < Co; o++)
        for (let d = 0; d < D; d++)
          for (let h = 0; h < D; h++)
            for (let q = 0; q < D; q++)
              for (let a = 0; a < 2; a++)
                for (let b = 0; b < 2; b++)
                  for (let c = 0; c < 2; c++) {
                    ref[((o * 4 + 2 * d + a) * 4 + 2 * h + b) * 4 + 2 * q + c]! += x[((i * D + d) * D + h) * D + q]! * w.data[(((i * Co + o) * 2 + a) * 2 + b) * 2 + c]!;
                  }
    const xT = tf.transpose(tf.tensor5d(x, [1, Ci, D, D, D]), [0, 2, 3, 4, 1]) as tf.Tensor5D;
    const filt = torchToTf('conv3dTranspose', w);
    expect(filt.shape).toEqual([2, 2, 2, Co, Ci]);
    const y = tf.conv3dTranspose(xT, tf.tensor5d(filt.data as Float32Array, filt.shape as [number, number, number, number, number]), [1, 4, 4, 4, Co], 2, 'valid');
    const got = tf.transpose(y, [0, 4, 1, 2, 3]).dataSync();
    for (let k = 0; k < ref.length; k++) expect(got[k]).toBeCloseTo(ref[k]!, 5);
  });

  it('linear: x·Wᵀ + b = tf.matMul(x, W_tf) + b', () => {
    const w = f32([4, 3], 40);
    const x = rand(2 * 3, 41);
    const wt = torchToTf('linear', w);
    const got = tf.matMul(tf.tensor2d(x, [2, 3]), tf.tensor2d(wt.data as Float32Array, [3, 4])).dataSync();
    for (let n = 0; n < 2; n++)
      for (let o = 0; o < 4; o++) {
        let acc = 0;
        for (let i = 0; i < 3; i++) acc += x[n * 3 + i]! * w.data[o * 3 + i]!;
        expect(got[n * 4 + o]).toBeCloseTo(acc, 6);
      }
  });
});

/** Our variable spec for the fixture's keys, with layouts chosen from the names (as a model would declare them). */
function specFromDict(dict: StateDict): VariableSpec[] {
  const spec: VariableSpec[] = [];
  for (const [name, t] of dict) {
    if (name.endsWith('relative_position_index')) continue; // a buffer we compute, not a variable
    const layout: Layout =
      t.shape.length === 5 ? (name.includes('transp_conv') ? 'conv3dTranspose' : 'conv3d') : t.shape.length === 2 && !name.endsWith('bias_table') ? 'linear' : 'plain';
    spec.push({ name, layout, shape: torchToTfPerm(layout, t.shape.length).map((p) => t.shape[p]!) });
  }
  return spec;
}

describe('loadIntoSpec / exportFromSpec', () => {
  let fs12: StateDict;
  beforeAll(async () => {
    fs12 = (await readTorchCheckpoint(FS12_PT)).dict;
  });

  it('strict=False: loads what matches, reports missing, unexpected and mismatched', () => {
    const spec: VariableSpec[] = [
      { name: 'conv.weight', layout: 'conv3d', shape: [3, 3, 3, 2, 4] },
      { name: 'up.weight', layout: 'conv3dTranspose', shape: [2, 2, 2, 4, 6] },
      { name: 'fc.weight', layout: 'linear', shape: [5, 7] },
      { name: 'fc.bias', layout: 'plain', shape: [7] },
      { name: 'table', layout: 'plain', shape: [3] },
      { name: 'head.weight', layout: 'linear', shape: [5, 2] },
      { name: 'absent', layout: 'plain', shape: [1] },
    ];
    const dict: StateDict = new Map<string, TensorData>([
      ['conv.weight', f32([4, 2, 3, 3, 3], 50)],
      ['up.weight', f32([6, 4, 2, 2, 2], 51)],
      ['fc.weight', f32([7, 5], 52)],
      ['fc.bias', f32([7], 53)],
      ['table', { dtype: 'int64', shape: [3], data: BigInt64Array.from([0n, 5n, 2196n]) }],
      ['head.weight', f32([3, 5], 54)], // 3 classes in the file, 2 in our model
      ['extra.running_mean', f32([4], 55)],
    ]);
    const r = loadIntoSpec(spec, dict);
    expect([...r.tensors.keys()]).toEqual(['conv.weight', 'up.weight', 'fc.weight', 'fc.bias', 'table']);
    expect(r.missing).toEqual(['absent']);
    expect(r.unexpected).toEqual(['extra.running_mean']);
    expect(r.mismatched).toEqual([{ name: 'head.weight', expected: [2, 5], got: [3, 5] }]);
    expect(r.tensors.get('conv.weight')!.shape).toEqual([3, 3, 3, 2, 4]);
    // conv tf[1][2][0][1][3] = torch[3][1][1][2][0]
    expect(r.tensors.get('conv.weight')!.data[(((1 * 3 + 2) * 3 + 0) * 2 + 1) * 4 + 3]).toBe(dict.get('conv.weight')!.data[(((3 * 2 + 1) * 3 + 1) * 3 + 2) * 3 + 0]);
    // transposed conv tf[1][0][1][3][5] = torch[5][3][1][0][1]
    expect(r.tensors.get('up.weight')!.data[(((1 * 2 + 0) * 2 + 1) * 4 + 3) * 6 + 5]).toBe(dict.get('up.weight')!.data[(((5 * 4 + 3) * 2 + 1) * 2 + 0) * 2 + 1]);
    expect(Array.from(r.tensors.get('table')!.data)).toEqual([0, 5, 2196]);
    expect(r.tensors.get('table')!.data).toBeInstanceOf(Float32Array);

    const values = new Map([...r.tensors].map(([k, v]) => [k, v.data]));
    const back = exportFromSpec(spec.slice(0, 4), values);
    for (const k of ['conv.weight', 'up.weight', 'fc.weight', 'fc.bias']) expect(same(back.get(k)!, dict.get(k)!)).toBe(true);
  });

  it('exportFromSpec checks its input', () => {
    const spec: VariableSpec[] = [{ name: 'a', layout: 'linear', shape: [2, 3] }];
    expect(() => exportFromSpec(spec, new Map())).toThrow('no value for 1 variable: a');
    expect(() => exportFromSpec(spec, new Map([['a', new Float32Array(5)]]))).toThrow('a: TF shape (2, 3) needs 6 values, got 5');
  });

  it('the whole SwinUNETR fixture loads into a spec and exports back to identical bytes', () => {
    const spec = specFromDict(fs12);
    expect(spec.length).toBe(159);
    const r = loadIntoSpec(spec, fs12);
    expect(r.missing).toEqual([]);
    expect(r.mismatched).toEqual([]);
    expect(r.unexpected.length).toBe(8);
    expect(r.unexpected.every((k) => k.endsWith('attn.relative_position_index'))).toBe(true);
    expect(r.tensors.get('decoder5.transp_conv.conv.weight')!.shape).toEqual([2, 2, 2, 96, 192]);
    expect(r.tensors.get('swinViT.layers1.0.blocks.0.attn.qkv.weight')!.shape).toEqual([12, 36]);
    const back = exportFromSpec(spec, new Map([...r.tensors].map(([k, v]) => [k, v.data])));
    expect([...back.keys()]).toEqual(spec.map((v) => v.name));
    for (const [k, t] of back) expect(same(t, fs12.get(k)!), k).toBe(true);
  });

  it('a 4-channel (MRI) model reports the patch embedding as mismatched and loads the rest', () => {
    const spec = specFromDict(fs12).map((v) => (v.name === 'swinViT.patch_embed.proj.weight' ? { ...v, shape: [2, 2, 2, 4, 12] } : v));
    const r = loadIntoSpec(spec, fs12);
    expect(r.mismatched).toEqual([{ name: 'swinViT.patch_embed.proj.weight', expected: [12, 4, 2, 2, 2], got: [12, 1, 2, 2, 2] }]);
    expect(r.tensors.size).toBe(158);
  });

  it('the converted patch-embedding filter reproduces MONAI’s output through tf.conv3d', () => {
    const spec = specFromDict(fs12).filter((v) => v.name.startsWith('swinViT.patch_embed.'));
    const { tensors } = loadIntoSpec(spec, fs12);
    const w = tensors.get('swinViT.patch_embed.proj.weight')!;
    const b = tensors.get('swinViT.patch_embed.proj.bias')!;
    expect(w.shape).toEqual([2, 2, 2, 1, 12]);
    const x = readF32('in64/input'); // (1,1,64,64,64): with one channel, NCDHW and NDHWC share the same data
    const y = tf.tidy(() => {
      const conv = tf.conv3d(tf.tensor5d(x.data, [1, 64, 64, 64, 1]), tf.tensor5d(w.data, [2, 2, 2, 1, 12]), 2, 'valid');
      const nc = tf.transpose(tf.add(conv, tf.tensor1d(b.data)), [0, 4, 1, 2, 3]); // → (1, 12, 32, 32, 32)
      return tf.stridedSlice(nc, [0, 0, 0, 0, 0], [1, 12, 32, 32, 32], [1, 1, 4, 4, 4]);
    });
    const ref = readF32('in64/modules/swinViT_patch_embed_sub4');
    expect(y.shape).toEqual(ref.shape);
    const got = y.dataSync();
    let maxErr = 0;
    for (let k = 0; k < ref.data.length; k++) maxErr = Math.max(maxErr, Math.abs(got[k]! - ref.data[k]!));
    expect(maxErr).toBeLessThan(1e-5);
    y.dispose();
  });
});
