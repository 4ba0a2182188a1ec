import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  BackendUnavailableError,
  WASM_TRAINING_REFUSAL,
  WebGpuError,
  describeBackend,
  explainLoadError,
  selectBackend,
  webGpuDevice,
  withWebGpuErrorScope,
  type BackendInfo,
  type BackendProbe,
} from '../../src/models/backend.ts';

const notFound = (pkg: string): Error =>
  Object.assign(new Error(`Cannot find package '${pkg}' imported from /x/src/models/backend.ts`), { code: 'ERR_MODULE_NOT_FOUND' });
const noAddon = (pkg: string): Error =>
  new Error(
    `The Node.js native addon module (tfjs_binding.node) can not be found at path: /x/node_modules/${pkg}/lib/napi-v8/tfjs_binding.node. \n` +
      `Please run command 'npm rebuild ${pkg} --build-addon-from-source' to rebuild the native addon module.`,
  );

/** A probe where nothing optional is installed and there is no GPU; `modules` overrides imports. */
function probe(modules: Record<string, () => unknown> = {}, cuda = false): Partial<BackendProbe> {
  const imported: string[] = [];
  return {
    cudaDevicePresent: () => cuda,
    async importModule(spec: string) {
      imported.push(spec);
      const m = modules[spec];
      if (m) return m();
      if (spec === '@tensorflow/tfjs-backend-cpu') return import('@tensorflow/tfjs-backend-cpu');
      throw notFound(spec);
    },
    get imported() {
      return imported;
    },
  } as Partial<BackendProbe>;
}

/** Registers a stand-in 'tensorflow' backend (the cpu backend dressed as tfjs-node's). */
function fakeNodeBackend(gpu: boolean) {
  return () => {
    tf.registerBackend('tensorflow', () => Object.assign(new MathBackendCPU(), { isUsingGpuDevice: gpu, binding: { TF_Version: '9.9.9' } }));
    return { version: { 'tfjs-node': '4.22.0' } };
  };
}

describe('selectBackend: order and messages (simulated modules)', () => {
  afterEach(() => {
    if (tf.findBackendFactory('tensorflow')) tf.removeBackend('tensorflow');
  });

  it('auto falls back to cpu and says why each better backend was skipped', async () => {
    const p = probe();
    const info = await selectBackend('auto', { probe: p });
    expect(info.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(info.device).toMatch(/pure JS/);
    expect(info.reason).toContain('tensorflow-gpu: no CUDA device');
    expect(info.reason).toContain('tensorflow: @tensorflow/tfjs-node is not installed');
    expect(info.reason).toContain('webgpu: webgpu is not installed');
    // the GPU package is not even imported without a CUDA device
    expect((p as { imported: string[] }).imported).toEqual(['@tensorflow/tfjs-node', 'webgpu', '@tensorflow/tfjs-backend-cpu']);
    expect(describeBackend(info)).toMatch(/^backend: cpu — CPU, pure JS .* \(skipped: tensorflow-gpu: no CUDA device; /);
  });

  it('explains a tfjs-node whose addon was never built', async () => {
    const info = await selectBackend('auto', {
      probe: probe({ '@tensorflow/tfjs-node': () => Promise.reject(noAddon('@tensorflow/tfjs-node')) }),
    });
    expect(info.name).toBe('cpu');
    expect(info.reason).toMatch(/tensorflow: @tensorflow\/tfjs-node is installed but its native addon was never built .*install-tensorflow\.mjs/);
  });

  it('tries tensorflow-gpu first when a CUDA device is present, then tensorflow', async () => {
    const info = await selectBackend('auto', {
      probe: probe(
        {
          '@tensorflow/tfjs-node-gpu': () => Promise.reject(noAddon('@tensorflow/tfjs-node-gpu')),
          '@tensorflow/tfjs-node': fakeNodeBackend(false),
        },
        true,
      ),
    });
    expect(info).toEqual({
      name: 'tensorflow',
      device: 'CPU, TensorFlow 9.9.9 C library (tfjs-node 4.22.0)',
      reason: expect.stringMatching(/^tensorflow-gpu: @tensorflow\/tfjs-node-gpu is installed but its native addon was never built/),
    } satisfies BackendInfo);
    expect(tf.getBackend()).toBe('tensorflow');
  });

  it('picks tensorflow-gpu when its module loads and TensorFlow sees the GPU', async () => {
    const info = await selectBackend('auto', { probe: probe({ '@tensorflow/tfjs-node-gpu': fakeNodeBackend(true) }, true) });
    expect(info).toEqual({ name: 'tensorflow-gpu', device: 'CUDA GPU, TensorFlow 9.9.9 C library (tfjs-node-gpu 4.22.0)' });
  });

  it('reports tfjs-node-gpu without a usable GPU as tensorflow on the CPU', async () => {
    const info = await selectBackend('tensorflow-gpu', { probe: probe({ '@tensorflow/tfjs-node-gpu': fakeNodeBackend(false) }, true) });
    expect(info.name).toBe('tensorflow');
    expect(info.device).toMatch(/^CPU, .*no usable CUDA device: it needs CUDA 11\.2 and cuDNN 8\.1/);
  });

  it('an explicit choice that cannot be used throws, explaining why', async () => {
    await expect(selectBackend('tensorflow', { probe: probe() })).rejects.toThrow(
      new BackendUnavailableError('tensorflow', '@tensorflow/tfjs-node is not installed (an optional dependency: npm dropped it, or optional dependencies were omitted)'),
    );
    await expect(selectBackend('tensorflow-gpu', { probe: probe() })).rejects.toThrow('no CUDA device');
    await expect(selectBackend('webgpu', { probe: probe() })).rejects.toThrow(/webgpu is not installed/);
  });

  it('refuses wasm for training, citing the wrong conv3d gradients', async () => {
    await expect(selectBackend('wasm', { forTraining: true, probe: probe() })).rejects.toThrow(WASM_TRAINING_REFUSAL);
    expect(WASM_TRAINING_REFUSAL).toMatch(/conv3d input gradient is wrong/);
    // for inference it is only a missing optional package
    await expect(selectBackend('wasm', { probe: probe() })).rejects.toThrow(/@tensorflow\/tfjs-backend-wasm is not installed/);
  });

  it('auto does not pick webgpu for training (rank ≤ 4 limits) and says so', async () => {
    const p = probe();
    const info = await selectBackend('auto', { forTraining: true, probe: p });
    expect(info.name).toBe('cpu');
    expect(info.reason).toMatch(/webgpu: not for training yet \(rank-5 pad/);
    expect((p as { imported: string[] }).imported).not.toContain('webgpu');
  });

  it('explains other load failures', () => {
    expect(explainLoadError('@tensorflow/tfjs-node', new Error('libtensorflow_cc.so.2: cannot open shared object file: No such file or directory'))).toMatch(
      /native addon does not load \(libtensorflow_cc\.so\.2: cannot open shared object file.*\); run `node scripts\/install-tensorflow\.mjs`/,
    );
    expect(explainLoadError('webgpu', Object.assign(new Error("Cannot find module 'debug'"), { code: 'MODULE_NOT_FOUND' }))).toMatch(
      /webgpu failed to load: a module it needs is missing/,
    );
  });
});

// ---------- the real tensorflow backend (tfjs-node built by scripts/install-tensorflow.mjs) ----------


/** Deterministic values in [-1, 1) (mulberry32). */
function values(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 * 2 - 1;
  }
  return out;
}

interface Conv3dResult {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

async function conv3dForwardBackward(backend: string, strides: 1 | 2, pad: 'same' | 'valid'): Promise<Conv3dResult> {
  await tf.setBackend(backend);
  const x = tf.tensor5d(values(1 * 9 * 8 * 7 * 2, 1), [1, 9, 8, 7, 2]);
  const w = tf.tensor5d(values(3 * 3 * 3 * 2 * 4, 2), [3, 3, 3, 2, 4]);
  const f = (a: tf.Tensor5D, b: tf.Tensor5D) => tf.conv3d(a, b, strides, pad);
  const y = f(x, w);
  // loss = mean(relu(conv3d(x, w))²): both input and filter gradients, through relu
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.mean(tf.square(tf.relu(f(a as tf.Tensor5D, b as tf.Tensor5D)))))([x, w]);
  const out = { y: (await y.data()) as Float32Array, dx: (await dx!.data()) as Float32Array, dw: (await dw!.data()) as Float32Array };
  tf.dispose([x, w, y, dx!, dw!]);
  return out;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

describe('the tensorflow backend (tfjs-node)', () => {
  let tensorflow: BackendInfo | undefined;
  let whyNot = '';
  beforeAll(async () => {
    try {
      tensorflow = await selectBackend('tensorflow');
    } catch (err) {
      whyNot = (err as Error).message;
    }
  }, 120_000);

  it('is available in CI (a broken install step must not pass silently)', (ctx) => {
    const required = !!process.env.CI || process.env.VOCO_REQUIRE_TENSORFLOW === '1';
    if (!required) ctx.skip();
    expect(tensorflow, `CI is set but the tensorflow backend is unavailable: ${whyNot}`).toBeDefined();
  });

  it('loads and names its device', (ctx) => {
    if (!tensorflow) return ctx.skip(`the tensorflow backend is not available here: ${whyNot}`);
    expect(tensorflow.name).toBe('tensorflow');
    expect(tensorflow.device).toMatch(/^CPU, TensorFlow \d+\.\d+\.\d+ C library \(tfjs-node 4\.22\.0\)$/);
  });

  for (const [strides, pad] of [
    [1, 'same'],
    [2, 'valid'],
  ] as const) {
    it(`conv3d forward + backward agrees with the cpu backend to 1e-5 (stride ${strides}, ${pad})`, async (ctx) => {
      if (!tensorflow) return ctx.skip(`the tensorflow backend is not available here: ${whyNot}`);
      const ref = await conv3dForwardBackward('cpu', strides, pad);
      const got = await conv3dForwardBackward('tensorflow', strides, pad);
      expect(maxRelDiff(got.y, ref.y)).toBeLessThan(1e-5);
      expect(maxRelDiff(got.dx, ref.dx)).toBeLessThan(1e-5);
      expect(maxRelDiff(got.dw, ref.dw)).toBeLessThan(1e-5);
      expect(ref.dx.some((v) => v !== 0) && ref.dw.some((v) => v !== 0)).toBe(true);
    });
  }
});

// ---------- WebGPU: opt-in (VOCO_TEST_WEBGPU=1), needs an adapter, e.g. Mesa ≥ 25 lavapipe ----------

describe.runIf(process.env.VOCO_TEST_WEBGPU === '1')('the webgpu backend (VOCO_TEST_WEBGPU=1)', () => {
  it('is selected and agrees with the cpu backend on a rank-5 conv3d forward + backward', async () => {
    // the cpu reference needs gradients even where tfjs-node (which brings tfjs's own) is absent
    const { registerMissingGradients } = await import('../../src/models/ops/gradients.ts');
    registerMissingGradients();
    const info = await selectBackend('webgpu');
    expect(info.name).toBe('webgpu');
    expect(info.device).toMatch(/^WebGPU \(Dawn\): /);
    const ref = await conv3dForwardBackward('cpu', 1, 'same');
    await tf.setBackend('webgpu');
    const got = await withWebGpuErrorScope(() => conv3dForwardBackward('webgpu', 1, 'same'));
    expect(maxRelDiff(got.y, ref.y)).toBeLessThan(1e-5);
    expect(maxRelDiff(got.dx, ref.dx)).toBeLessThan(1e-5);
    expect(maxRelDiff(got.dw, ref.dw)).toBeLessThan(1e-5);
  });

  it('turns an error Dawn would only print into an exception', async () => {
    await selectBackend('webgpu');
    const device = webGpuDevice() as unknown as { createBuffer(d: object): { destroy(): void } };
    expect(device).toBeTruthy();
    // MAP_READ may only be combined with COPY_DST: a validation error
    const bad = withWebGpuErrorScope(async () => device.createBuffer({ size: 16, usage: 0x0001 | 0x0080 }));
    await expect(bad).rejects.toBeInstanceOf(WebGpuError);
    await expect(bad).rejects.toThrow(/WebGPU validation error/);
  });
});
