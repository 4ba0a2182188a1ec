/**
 * UNet3D (src/models/unet3d.ts): state-dict naming, initialisation, shapes, determinism,
 * gradients. The gradient check compares TF.js's analytic gradients with central differences of
 * an independent float64 reference forward written below straight from the architecture
 * (spec/REFERENCE.md §7): in float32 a whole U-Net's finite differences drown in rounding noise
 * (≈2e-5 in the loss, amplified by batch norm over 4 voxels at the bottom), in float64 they do not.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createUnet3d,
  disposeUnet3d,
  unet3dEncoderFeatures,
  unet3dFeatureLayout,
  unet3dForward,
  unet3dVariableSpec,
  type Unet3d,
} from '../../src/models/unet3d.ts';
import { createRng } from '../../src/util/rng.ts';
import { directionalCheck, randomTensor, setupTestBackend } from './ops/grad-check.ts';

const timings: string[] = [];
function timed<T>(label: string, f: () => T): T {
  const t0 = performance.now();
  const out = f();
  timings.push(`${label}: ${(performance.now() - t0).toFixed(0)} ms`);
  return out;
}

beforeAll(async () => {
  await setupTestBackend();
});

afterAll(() => {
  console.log(`UNet3D timings (${tf.getBackend()}):\n  ${timings.join('\n  ')}`);
});

// ---------------------------------------------------------------------------------------------
// float64 reference forward, channels-last, written from the architecture description

interface Vol {
  data: Float64Array;
  shape: [number, number, number, number, number];
}

type Params = Map<string, { data: Float64Array; shape: number[] }>;

function vol(shape: Vol['shape']): Vol {
  return { data: new Float64Array(shape.reduce((a, b) => a * b, 1)), shape };
}

/** Cross-correlation, stride 1, zero padding p, filter [k,k,k,ci,co], + bias. */
function refConv(x: Vol, w: { data: Float64Array; shape: number[] }, b: Float64Array, p: number): Vol {
  const [n, D, H, W, ci] = x.shape;
  const [k0, k1, k2, wci, co] = w.shape as [number, number, number, number, number];
  if (wci !== ci) throw new Error(`refConv: ${ci} vs ${wci}`);
  const oD = D + 2 * p - k0 + 1;
  const oH = H + 2 * p - k1 + 1;
  const oW = W + 2 * p - k2 + 1;
  const y = vol([n, oD, oH, oW, co]);
  for (let b0 = 0; b0 < n; b0++)
    for (let z = 0; z < oD; z++)
      for (let yy = 0; yy < oH; yy++)
        for (let xx = 0; xx < oW; xx++) {
          const o = ((((b0 * oD + z) * oH + yy) * oW + xx) * co) | 0;
          for (let c = 0; c < co; c++) y.data[o + c] = b[c]!;
          for (let a = 0; a < k0; a++) {
            const iz = z + a - p;
            if (iz < 0 || iz >= D) continue;
            for (let bb = 0; bb < k1; bb++) {
              const iy = yy + bb - p;
              if (iy < 0 || iy >= H) continue;
              for (let cc = 0; cc < k2; cc++) {
                const ix = xx + cc - p;
                if (ix < 0 || ix >= W) continue;
                const xi = (((b0 * D + iz) * H + iy) * W + ix) * ci;
                const wi = ((a * k1 + bb) * k2 + cc) * ci * co;
                for (let c1 = 0; c1 < ci; c1++) {
                  const xv = x.data[xi + c1]!;
                  const wr = wi + c1 * co;
                  for (let c = 0; c < co; c++) y.data[o + c]! += xv * w.data[wr + c]!;
                }
              }
            }
          }
        }
  return y;
}

/** ConvTranspose3d k2 s2 p0 (PyTorch), filter in TF layout [2,2,2,co,ci]: out[2i+a] = Σ_c x[i][c]·W[a][o][c] + b. */
function refConvT(x: Vol, w: { data: Float64Array; shape: number[] }, b: Float64Array): Vol {
  const [n, D, H, W, ci] = x.shape;
  const co = w.shape[3]!;
  const y = vol([n, 2 * D, 2 * H, 2 * W, co]);
  for (let i = 0; i < y.data.length; i++) y.data[i] = b[i % co]!;
  for (let b0 = 0; b0 < n; b0++)
    for (let z = 0; z < D; z++)
      for (let yy = 0; yy < H; yy++)
        for (let xx = 0; xx < W; xx++) {
          const xi = (((b0 * D + z) * H + yy) * W + xx) * ci;
          for (let a = 0; a < 2; a++)
            for (let bb = 0; bb < 2; bb++)
              for (let cc = 0; cc < 2; cc++) {
                const o = (((b0 * 2 * D + 2 * z + a) * 2 * H + 2 * yy + bb) * 2 * W + 2 * xx + cc) * co;
                const wi = ((a * 2 + bb) * 2 + cc) * co * ci;
                for (let c = 0; c < co; c++) {
                  let s = 0;
                  for (let c1 = 0; c1 < ci; c1++) s += x.data[xi + c1]! * w.data[wi + c * ci + c1]!;
                  y.data[o + c]! += s;
                }
              }
        }
  return y;
}

/** BatchNorm with batch statistics (biased variance), affine, then ReLU. */
function refBnRelu(x: Vol, gamma: Float64Array, beta: Float64Array, eps = 1e-5): Vol {
  const c = x.shape[4];
  const count = x.data.length / c;
  const mean = new Float64Array(c);
  const sq = new Float64Array(c);
  for (let i = 0; i < x.data.length; i++) mean[i % c]! += x.data[i]! / count;
  for (let i = 0; i < x.data.length; i++) sq[i % c]! += (x.data[i]! - mean[i % c]!) ** 2 / count;
  const y = vol(x.shape);
  for (let i = 0; i < x.data.length; i++) {
    const k = i % c;
    y.data[i] = Math.max(0, ((x.data[i]! - mean[k]!) / Math.sqrt(sq[k]! + eps)) * gamma[k]! + beta[k]!);
  }
  return y;
}

function refMaxPool2(x: Vol): Vol {
  const [n, D, H, W, c] = x.shape;
  const y = vol([n, D / 2, H / 2, W / 2, c]);
  y.data.fill(-Infinity);
  for (let b0 = 0; b0 < n; b0++)
    for (let z = 0; z < D; z++)
      for (let yy = 0; yy < H; yy++)
        for (let xx = 0; xx < W; xx++)
          for (let k = 0; k < c; k++) {
            const o = ((((b0 * (D / 2) + (z >> 1)) * (H / 2) + (yy >> 1)) * (W / 2) + (xx >> 1)) * c) + k;
            y.data[o] = Math.max(y.data[o]!, x.data[(((b0 * D + z) * H + yy) * W + xx) * c + k]!);
          }
  return y;
}

function refConcat(a: Vol, b: Vol): Vol {
  const ca = a.shape[4];
  const cb = b.shape[4];
  const y = vol([a.shape[0], a.shape[1], a.shape[2], a.shape[3], ca + cb]);
  const voxels = a.data.length / ca;
  for (let v = 0; v < voxels; v++) {
    for (let k = 0; k < ca; k++) y.data[v * (ca + cb) + k] = a.data[v * ca + k]!;
    for (let k = 0; k < cb; k++) y.data[v * (ca + cb) + ca + k] = b.data[v * cb + k]!;
  }
  return y;
}

function refGap(x: Vol): Float64Array[] {
  const [n, D, H, W, c] = x.shape;
  const per = D * H * W;
  return Array.from({ length: n }, (_, b0) => {
    const out = new Float64Array(c);
    for (let v = 0; v < per; v++) for (let k = 0; k < c; k++) out[k]! += x.data[(b0 * per + v) * c + k]! / per;
    return out;
  });
}

/** The reference UNet3D: LUConv = conv k3 p1 → BN(batch stats) → ReLU; see the module comment of unet3d.ts. */
function refUnet(p: Params, x: Vol): { logits: Vol; features: Float64Array[] } {
  const get = (name: string) => {
    const v = p.get(name);
    if (!v) throw new Error(`reference: missing ${name}`);
    return v;
  };
  const lu = (prefix: string, h: Vol) =>
    refBnRelu(
      refConv(h, get(`${prefix}.conv1.weight`), get(`${prefix}.conv1.bias`).data, 1),
      get(`${prefix}.bn1.weight`).data,
      get(`${prefix}.bn1.bias`).data,
    );
  const block = (name: string, h: Vol) => lu(`${name}.ops.1`, lu(`${name}.ops.0`, h));
  const s64 = block('down_tr64', x);
  const s128 = block('down_tr128', refMaxPool2(s64));
  const s256 = block('down_tr256', refMaxPool2(s128));
  const deep = block('down_tr512', refMaxPool2(s256));
  const up = (name: string, h: Vol, skip: Vol) =>
    block(name, refConcat(refConvT(h, get(`${name}.up_conv.weight`), get(`${name}.up_conv.bias`).data), skip));
  const d = up('up_tr64', up('up_tr128', up('up_tr256', deep, s256), s128), s64);
  const logits = refConv(d, get('out_tr.final_conv.weight'), get('out_tr.final_conv.bias').data, 0);
  const gaps = [deep, s256, s128, s64].map(refGap);
  const features = gaps[0]!.map((_, b0) => Float64Array.from(gaps.flatMap((g) => Array.from(g[b0]!))));
  return { logits, features };
}

function paramsOf(model: Unet3d): Params {
  const p: Params = new Map();
  for (const [name, v] of model.vars) p.set(name, { data: Float64Array.from(v.dataSync()), shape: v.shape });
  return p;
}

function volOf(t: tf.Tensor): Vol {
  return { data: Float64Array.from(t.dataSync()), shape: t.shape as Vol['shape'] };
}

function dot(a: Float64Array, w: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * w[i]!;
  return s;
}

// ---------------------------------------------------------------------------------------------

describe('UNet3D variables', () => {
  it('are the PyTorch state-dict keys of the reference module, in order, with TF layouts', () => {
    const spec = unet3dVariableSpec({ inChannels: 1, outChannels: 1 });
    expect(spec).toHaveLength(106); // 14 LUConvs × 7 + 3 up_convs × 2 + final conv × 2
    expect(spec.slice(0, 7).map((s) => s.name)).toEqual([
      'down_tr64.ops.0.conv1.weight',
      'down_tr64.ops.0.conv1.bias',
      'down_tr64.ops.0.bn1.weight',
      'down_tr64.ops.0.bn1.bias',
      'down_tr64.ops.0.bn1.running_mean',
      'down_tr64.ops.0.bn1.running_var',
      'down_tr64.ops.0.bn1.num_batches_tracked',
    ]);
    const byName = new Map(spec.map((s) => [s.name, s]));
    const expectSpec = (name: string, layout: string, shape: number[], trainable = true) =>
      expect(byName.get(name), name).toEqual({ name, layout, shape, trainable });
    expectSpec('down_tr64.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 1, 32]);
    expectSpec('down_tr64.ops.1.conv1.weight', 'conv3d', [3, 3, 3, 32, 64]);
    expectSpec('down_tr128.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 64, 64]);
    expectSpec('down_tr128.ops.1.conv1.weight', 'conv3d', [3, 3, 3, 64, 128]);
    expectSpec('down_tr256.ops.1.conv1.weight', 'conv3d', [3, 3, 3, 128, 256]);
    expectSpec('down_tr512.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 256, 256]);
    expectSpec('down_tr512.ops.1.conv1.weight', 'conv3d', [3, 3, 3, 256, 512]);
    expectSpec('down_tr512.ops.1.bn1.running_var', 'plain', [512], false);
    expectSpec('down_tr512.ops.1.bn1.num_batches_tracked', 'plain', [], false);
    expectSpec('up_tr256.up_conv.weight', 'conv3dTranspose', [2, 2, 2, 512, 512]);
    expectSpec('up_tr256.up_conv.bias', 'plain', [512]);
    expectSpec('up_tr256.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 768, 256]);
    expectSpec('up_tr256.ops.1.conv1.weight', 'conv3d', [3, 3, 3, 256, 256]);
    expectSpec('up_tr128.up_conv.weight', 'conv3dTranspose', [2, 2, 2, 256, 256]);
    expectSpec('up_tr128.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 384, 128]);
    expectSpec('up_tr64.up_conv.weight', 'conv3dTranspose', [2, 2, 2, 128, 128]);
    expectSpec('up_tr64.ops.0.conv1.weight', 'conv3d', [3, 3, 3, 192, 64]);
    expectSpec('up_tr64.ops.1.bn1.weight', 'plain', [64]);
    expectSpec('out_tr.final_conv.weight', 'conv3d', [1, 1, 1, 64, 1]);
    expect(spec.at(-1)!.name).toBe('out_tr.final_conv.bias');
    // in an UpTransition the up_conv precedes the ops (module registration order)
    const names = spec.map((s) => s.name);
    expect(names.indexOf('up_tr128.up_conv.weight')).toBe(names.indexOf('up_tr256.ops.1.bn1.num_batches_tracked') + 1);
    const count = (trainable: boolean) =>
      spec.filter((s) => s.trainable === trainable).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    expect(count(true)).toBe(19_073_665);
    expect(count(false)).toBe(4_686); // running mean + var (2 × 2,336 channels) + 14 counters
  });

  it('start from PyTorch-default-like values, deterministic from the seed', () => {
    const a = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 7 });
    const b = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 7 });
    const c = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 8 });
    try {
      expect([...a.vars.keys()]).toEqual(a.spec.map((s) => s.name));
      for (const s of a.spec) {
        const va = a.vars.get(s.name)!;
        expect(va.shape).toEqual(s.shape);
        expect(va.trainable).toBe(s.trainable);
        expect(Array.from(va.dataSync())).toEqual(Array.from(b.vars.get(s.name)!.dataSync()));
      }
      const w = (m: Unet3d, n: string) => Array.from(m.vars.get(n)!.dataSync());
      expect(w(a, 'down_tr64.ops.1.conv1.weight')).not.toEqual(w(c, 'down_tr64.ops.1.conv1.weight'));
      // U(−1/√fan_in, 1/√fan_in): Conv3d fan_in = in·27; ConvTranspose3d fan_in = out·8
      const bound = (n: string, fan: number) => {
        const v = w(a, n);
        const m = Math.max(...v.map(Math.abs));
        expect(m, n).toBeLessThanOrEqual(1 / Math.sqrt(fan));
        expect(m, n).toBeGreaterThan(0.8 / Math.sqrt(fan));
      };
      bound('down_tr64.ops.1.conv1.weight', 4 * 27);
      bound('down_tr64.ops.1.conv1.bias', 4 * 27);
      bound('up_tr256.up_conv.weight', 64 * 8);
      bound('up_tr256.up_conv.bias', 64 * 8);
      bound('out_tr.final_conv.weight', 8);
      expect(new Set(w(a, 'down_tr64.ops.0.bn1.weight'))).toEqual(new Set([1]));
      expect(new Set(w(a, 'down_tr64.ops.0.bn1.bias'))).toEqual(new Set([0]));
      expect(new Set(w(a, 'down_tr64.ops.0.bn1.running_var'))).toEqual(new Set([1]));
      expect(new Set(w(a, 'down_tr64.ops.0.bn1.running_mean'))).toEqual(new Set([0]));
    } finally {
      [a, b, c].forEach(disposeUnet3d);
    }
  });

  it('rejects bad configurations and inputs', () => {
    expect(() => unet3dVariableSpec({ inChannels: 0, outChannels: 1 })).toThrow(/inChannels/);
    const m = createUnet3d({ inChannels: 1, outChannels: 1, baseChannels: 1, seed: 0 });
    try {
      expect(() => unet3dForward(m, tf.zeros([1, 12, 16, 16, 1]))).toThrow(/divisible by 8/);
      expect(() => unet3dForward(m, tf.zeros([1, 16, 16, 16, 2]))).toThrow(/channels/);
      expect(() => unet3dForward(m, tf.zeros([16, 16, 16, 1]))).toThrow(/\[N, D0, D1, D2, C\]/);
    } finally {
      disposeUnet3d(m);
    }
  });
});

describe('UNet3D forward', () => {
  it('gives outputs shaped like the input for 32³ and 64×32×32', () => {
    const m = createUnet3d({ inChannels: 1, outChannels: 3, baseChannels: 2, seed: 1 });
    try {
      for (const shape of [[1, 32, 32, 32, 1], [1, 64, 32, 32, 1]]) {
        tf.tidy(() => {
          const x = randomTensor(shape, 'x');
          const { logits, probabilities } = timed(`forward b=2 [${shape}]`, () => {
            const out = unet3dForward(m, x);
            out.probabilities.dataSync();
            return out;
          });
          expect(logits.shape).toEqual([...shape.slice(0, 4), 3]);
          expect(probabilities.shape).toEqual(logits.shape);
          const p = probabilities.dataSync();
          expect(p.every((v) => v > 0 && v < 1)).toBe(true);
          expect(tf.max(tf.abs(tf.sub(probabilities, tf.sigmoid(logits)))).dataSync()[0]).toBeLessThan(1e-6);
        });
      }
    } finally {
      disposeUnet3d(m);
    }
  });

  it('matches the float64 reference forward, and the encoder vector its layout', () => {
    const m = createUnet3d({ inChannels: 2, outChannels: 2, baseChannels: 4, seed: 2 });
    try {
      tf.tidy(() => {
        const x = randomTensor([2, 16, 8, 8, 2], 'x2');
        const ref = refUnet(paramsOf(m), volOf(x));
        const { logits } = unet3dForward(m, x);
        const got = logits.dataSync();
        let maxDiff = 0;
        let maxRef = 0;
        ref.logits.data.forEach((v, i) => {
          maxDiff = Math.max(maxDiff, Math.abs(v - got[i]!));
          maxRef = Math.max(maxRef, Math.abs(v));
        });
        expect(maxDiff / maxRef).toBeLessThan(1e-4);

        const features = unet3dEncoderFeatures(m, x);
        expect(features.shape).toEqual([2, 30 * 4]);
        const layout = unet3dFeatureLayout(4);
        expect(layout.map((s) => [s.source, s.offset, s.size])).toEqual([
          ['down_tr512', 0, 64],
          ['down_tr256', 64, 32],
          ['down_tr128', 96, 16],
          ['down_tr64', 112, 8],
        ]);
        const f = features.arraySync();
        ref.features.forEach((row, b0) => row.forEach((v, k) => expect(f[b0]![k]!).toBeCloseTo(v, 4)));
      });
    } finally {
      disposeUnet3d(m);
    }
  });

  it('is deterministic and updates running statistics only when asked', () => {
    const m = createUnet3d({ inChannels: 1, outChannels: 1, baseChannels: 2, seed: 3 });
    try {
      tf.tidy(() => {
        const x = randomTensor([2, 8, 8, 8, 1], 'x3', -2, 3);
        const a = unet3dForward(m, x).logits.dataSync();
        const b = unet3dForward(m, x).logits.dataSync();
        expect(Array.from(a)).toEqual(Array.from(b));
        const rm = () => Array.from(m.vars.get('down_tr64.ops.0.bn1.running_mean')!.dataSync());
        const rv = () => Array.from(m.vars.get('down_tr64.ops.0.bn1.running_var')!.dataSync());
        expect(rm()).toEqual([0, 0]);
        unet3dForward(m, x, { updateRunningStats: true });
        // batch statistics of the first conv's output, as F.batch_norm(training=True) uses them
        const y = tf.conv3d(x as tf.Tensor5D, m.vars.get('down_tr64.ops.0.conv1.weight') as unknown as tf.Tensor5D, 1, 'same');
        const yb = tf.add(y, m.vars.get('down_tr64.ops.0.conv1.bias')!);
        const { mean, variance } = tf.moments(yb, [0, 1, 2, 3]);
        const n = yb.size / 2;
        const mu = Array.from(mean.dataSync());
        const vu = Array.from(variance.dataSync()).map((v) => (v * n) / (n - 1));
        rm().forEach((v, i) => expect(v).toBeCloseTo(0.1 * mu[i]!, 5));
        rv().forEach((v, i) => expect(v).toBeCloseTo(0.9 + 0.1 * vu[i]!, 5));
        expect(m.vars.get('down_tr64.ops.0.bn1.num_batches_tracked')!.dataSync()[0]).toBe(0);
        // the statistics never change the output (batch statistics are always used)
        expect(Array.from(unet3dForward(m, x).logits.dataSync())).toEqual(Array.from(a));
      });
    } finally {
      disposeUnet3d(m);
    }
  });
});

describe('UNet3D gradients', () => {
  it('reach every trainable variable (conv biases before batch norm: exactly zero, as in PyTorch)', () => {
    const m = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 4 });
    try {
      tf.tidy(() => {
        const x = randomTensor([1, 16, 16, 16, 1], 'x4');
        const target = tf.cast(tf.greater(randomTensor([1, 16, 16, 16, 2], 't4'), 0), 'float32');
        const { grads, value } = timed('forward+backward b=4 [1,16,16,16,1]', () => {
          const r = tf.variableGrads(() => {
            const p = unet3dForward(m, x).probabilities;
            return tf.mean(tf.square(tf.sub(p, target))) as tf.Scalar;
          });
          r.value.dataSync();
          return r;
        });
        expect(Number.isFinite(value.dataSync()[0]!)).toBe(true);
        const byVar = new Map([...m.vars].map(([name, v]) => [v.name, name]));
        const got = new Map(Object.entries(grads).map(([k, g]) => [byVar.get(k)!, g]));
        const trainable = m.spec.filter((s) => s.trainable).map((s) => s.name);
        expect([...got.keys()].sort()).toEqual([...trainable].sort());
        for (const name of trainable) {
          const g = got.get(name)!.dataSync();
          expect(g.every(Number.isFinite), name).toBe(true);
          const maxAbs = Math.max(...Array.from(g, Math.abs));
          if (/\.ops\.\d\.conv1\.bias$/.test(name)) {
            // a per-channel constant is removed by the following batch-statistics normalisation
            const weightGrad = Math.max(...Array.from(got.get(name.replace(/bias$/, 'weight'))!.dataSync(), Math.abs));
            expect(maxAbs, name).toBeLessThan(1e-4 * weightGrad);
          } else {
            expect(maxAbs, name).toBeGreaterThan(0);
          }
        }
      });
    } finally {
      disposeUnet3d(m);
    }
  });

  it('match central finite differences of the float64 reference (baseChannels 4)', () => {
    const m = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 5 });
    const checked = [
      'down_tr64.ops.0.conv1.weight',
      'down_tr64.ops.1.bn1.weight',
      'down_tr128.ops.1.conv1.weight',
      'down_tr256.ops.0.bn1.bias',
      'down_tr512.ops.1.conv1.weight',
      'up_tr256.up_conv.weight',
      'up_tr256.up_conv.bias',
      'up_tr128.ops.0.conv1.weight',
      'up_tr64.up_conv.weight',
      'up_tr64.ops.1.bn1.weight',
      'out_tr.final_conv.weight',
      'out_tr.final_conv.bias',
    ];
    try {
      const x = randomTensor([1, 16, 16, 8, 1], 'x5');
      const rng = createRng(5, 'unet-grad-check');
      const w = new Float32Array(16 * 16 * 8 * 2).map(() => rng.normal());
      const wT = tf.tensor(w, [1, 16, 16, 8, 2]);
      const w64 = Float64Array.from(w);
      const grads = new Map<string, Float32Array>();
      timed('analytic gradient b=4 [1,16,16,8,1]', () =>
        tf.tidy(() => {
          const result = tf.variableGrads(
            () => tf.sum(tf.mul(unet3dForward(m, x).logits, wT)) as tf.Scalar,
            checked.map((n) => m.vars.get(n)!),
          );
          const byVar = new Map([...m.vars].map(([name, v]) => [v.name, name]));
          for (const [k, g] of Object.entries(result.grads)) grads.set(byVar.get(k)!, g.dataSync().slice() as Float32Array);
        }),
      );
      wT.dispose();
      const params = paramsOf(m);
      const xv = volOf(x);
      // small enough that no ReLU / max-pool switches inside ±eps (with 1e-5, perturbing the first
      // conv already flips some and costs 1e-2 of accuracy), large against float64 rounding
      const eps = 1e-6;
      const lines: string[] = [];
      let worst = 0;
      timed('float64 finite differences (36 coordinates)', () => {
        for (const name of checked) {
          const g = grads.get(name)!;
          const p = params.get(name)!;
          // the two coordinates with the largest |gradient| and one at random
          const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!));
          const coords = [order[0]!, order[1]!, order[2 + rng.int(0, Math.max(1, order.length - 2))] ?? order[0]!];
          const scale = Math.abs(g[order[0]!]!);
          let maxRel = 0;
          for (const c of coords) {
            const v0 = p.data[c]!;
            p.data[c] = v0 + eps;
            const lp = dot(refUnet(params, xv).logits.data, w64);
            p.data[c] = v0 - eps;
            const lm = dot(refUnet(params, xv).logits.data, w64);
            p.data[c] = v0;
            const numeric = (lp - lm) / (2 * eps);
            const rel = Math.abs(g[c]! - numeric) / Math.max(Math.abs(g[c]!), Math.abs(numeric), 1e-3 * scale);
            maxRel = Math.max(maxRel, rel);
          }
          worst = Math.max(worst, maxRel);
          lines.push(`${name.padEnd(30)} max rel error ${maxRel.toExponential(2)} (|g|max ${scale.toExponential(2)})`);
        }
      });
      console.log(`UNet3D gradient vs float64 finite differences:\n  ${lines.join('\n  ')}`);
      expect(worst).toBeLessThan(1e-2);
    } finally {
      disposeUnet3d(m);
    }
  });

  it('pass a float32 directional check along each gradient (coarse: rounding-limited)', () => {
    const m = createUnet3d({ inChannels: 1, outChannels: 2, baseChannels: 4, seed: 0 });
    const names = ['down_tr64.ops.0.conv1.weight', 'down_tr256.ops.1.conv1.weight', 'up_tr256.up_conv.weight', 'up_tr64.up_conv.weight', 'out_tr.final_conv.weight'];
    try {
      const x = randomTensor([1, 16, 16, 8, 1], 1);
      const report = timed('float32 directional check (6 directions)', () =>
        directionalCheck((xx) => unet3dForward(m, xx).logits, [x, ...names.map((n) => m.vars.get(n)!)], { eps: 1e-3 }),
      );
      console.log(`UNet3D float32 directional check: ${report.map((r) => r.relError.toExponential(1)).join(' ')}`);
      // float32 rounding (≈2e-5 in the loss) and ReLU kinks limit this check to a few per cent
      for (const r of report) expect(r.relError).toBeLessThan(5e-2);
      x.dispose();
    } finally {
      disposeUnet3d(m);
    }
  });
});
