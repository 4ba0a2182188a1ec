/**
 * Differentiable building blocks in channels-last layout ([N, D0, D1, D2, C]).
 *
 * Only ops with gradients in tfjs-core 4.22 are used (see shared/spec/BACKENDS.md): no
 * stridedSlice, einsum, conv3dTranspose, rank-5 tile, or rank-4 × rank-2 matMul. Apart from the
 * convolutions themselves, pads, slices, concats, broadcasting adds and transposes run on rank
 * ≤ 4 views (WebGPU fails to compile rank-5 pad and large rank-5 broadcasts, and rank 7–8
 * transposes; BACKENDS.md).
 */
import * as tf from '@tensorflow/tfjs-core';

/** PyTorch's LayerNorm / InstanceNorm epsilon. */
export const NORM_EPS = 1e-5;
/** MONAI's LeakyReLU slope (PyTorch default). */
export const LEAKY_SLOPE = 0.01;

/** nn.Linear on the last axis; weight in TF layout [in, out]. Computed as a rank-2 matMul. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const shape = x.shape;
  const cin = shape[shape.length - 1]!;
  const [win, wout] = w.shape as [number, number];
  if (win !== cin) throw new Error(`linear: input has ${cin} features, weight expects ${win}`);
  let y: tf.Tensor = tf.matMul(tf.reshape(x, [-1, cin]) as tf.Tensor2D, w as tf.Tensor2D);
  if (b) y = tf.add(y, b);
  return tf.reshape(y, [...shape.slice(0, -1), wout]);
}

/**
 * Whether to use the JS-loop kernels below. On the pure-JS `cpu` backend, tfjs evaluates a
 * broadcast against a size-1 axis (x − mean, softmax's x − max) element by element through
 * index arithmetic, 5–10× slower than a plain loop; these kernels are that plain loop, with their
 * gradients. Other backends (tfjs-node, WebGPU) use the tf ops. Both paths compute the same
 * function; test/models/swinunetr/blocks.test.ts checks values and gradients against each other.
 */
let jsKernels: 'auto' | 'on' | 'off' = 'auto';

/** Forces the JS-loop kernels on or off ('auto': on exactly on the `cpu` backend). For tests. */
export function setJsKernels(mode: 'auto' | 'on' | 'off'): void {
  jsKernels = mode;
}

export function useJsKernels(): boolean {
  return jsKernels === 'on' || (jsKernels === 'auto' && tf.getBackend() === 'cpu');
}

/**
 * Normalises x, viewed as [A, S, B], over the middle axis: (x − mean)/√(var + eps), biased
 * variance (two-pass, float64 accumulation). JS loops; gradient included.
 */
function normalizeMiddleJs(x: tf.Tensor, A: number, S: number, B: number, eps: number): tf.Tensor {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const xv = input.dataSync() as Float32Array;
    const y = new Float32Array(xv.length);
    const rstd = new Float64Array(A * B);
    for (let a = 0; a < A; a++) {
      const base = a * S * B;
      for (let b = 0; b < B; b++) {
        let sum = 0;
        for (let s = 0, i = base + b; s < S; s++, i += B) sum += xv[i]!;
        const mean = sum / S;
        let sq = 0;
        for (let s = 0, i = base + b; s < S; s++, i += B) {
          const d = xv[i]! - mean;
          sq += d * d;
        }
        const r = 1 / Math.sqrt(sq / S + eps);
        rstd[a * B + b] = r;
        for (let s = 0, i = base + b; s < S; s++, i += B) y[i] = (xv[i]! - mean) * r;
      }
    }
    const out = tf.tensor(y, input.shape);
    save([out]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = dy.dataSync() as Float32Array;
        const yv = saved[0]!.dataSync() as Float32Array;
        const dx = new Float32Array(g.length);
        for (let a = 0; a < A; a++) {
          const base = a * S * B;
          for (let b = 0; b < B; b++) {
            let sg = 0;
            let sgy = 0;
            for (let s = 0, i = base + b; s < S; s++, i += B) {
              sg += g[i]!;
              sgy += g[i]! * yv[i]!;
            }
            const mg = sg / S;
            const mgy = sgy / S;
            const r = rstd[a * B + b]!;
            for (let s = 0, i = base + b; s < S; s++, i += B) dx[i] = r * (g[i]! - mg - yv[i]! * mgy);
          }
        }
        return tf.tensor(dx, saved[0]!.shape);
      },
    };
  });
  return f(x);
}

/** Softmax over the last axis. */
export function softmaxLastAxis(x: tf.Tensor): tf.Tensor {
  if (!useJsKernels()) return tf.softmax(x);
  const n = x.shape[x.rank - 1]!;
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const xv = input.dataSync() as Float32Array;
    const y = new Float32Array(xv.length);
    for (let r = 0; r < xv.length; r += n) {
      let m = -Infinity;
      for (let j = r; j < r + n; j++) if (xv[j]! > m) m = xv[j]!;
      let sum = 0;
      for (let j = r; j < r + n; j++) {
        const e = Math.exp(xv[j]! - m);
        y[j] = e;
        sum += e;
      }
      for (let j = r; j < r + n; j++) y[j] = y[j]! / sum;
    }
    const out = tf.tensor(y, input.shape);
    save([out]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = dy.dataSync() as Float32Array;
        const yv = saved[0]!.dataSync() as Float32Array;
        const dx = new Float32Array(g.length);
        for (let r = 0; r < g.length; r += n) {
          let dot = 0;
          for (let j = r; j < r + n; j++) dot += g[j]! * yv[j]!;
          for (let j = r; j < r + n; j++) dx[j] = yv[j]! * (g[j]! - dot);
        }
        return tf.tensor(dx, saved[0]!.shape);
      },
    };
  });
  return f(x);
}

/** Layer norm over the last axis (biased variance, eps 1e-5); affine when weight/bias are given. */
export function layerNorm(x: tf.Tensor, weight?: tf.Tensor, bias?: tf.Tensor, eps = NORM_EPS): tf.Tensor {
  let y: tf.Tensor;
  if (useJsKernels()) {
    const c = x.shape[x.rank - 1]!;
    y = normalizeMiddleJs(x, x.size / c, c, 1, eps);
  } else {
    const x2 = tf.reshape(x, [-1, x.shape[x.rank - 1]!]);
    const { mean, variance } = tf.moments(x2, 1, true);
    y = tf.mul(tf.sub(x2, mean), tf.rsqrt(tf.add(variance, eps)));
  }
  return affineLastAxis(y, x.shape, weight, bias);
}

/** y·weight + bias over the last axis, on a rank-2 view; returns `shape`. */
function affineLastAxis(y: tf.Tensor, shape: readonly number[], weight?: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  if (!weight && !bias) return tf.reshape(y, [...shape]);
  let y2 = tf.reshape(y, [-1, shape[shape.length - 1]!]);
  if (weight) y2 = tf.mul(y2, weight);
  if (bias) y2 = tf.add(y2, bias);
  return tf.reshape(y2, [...shape]);
}

/** InstanceNorm3d(affine=False, track_running_stats=False): per sample and channel over space. */
export function instanceNorm(x: tf.Tensor, eps = NORM_EPS): tf.Tensor {
  if (useJsKernels()) {
    const [n, d, h, w, c] = x.shape as [number, number, number, number, number];
    return normalizeMiddleJs(x, n, d * h * w, c, eps);
  }
  // Two-stage means (over H·W, then over D): a single float32 reduction over all D·H·W voxels
  // is accumulated sequentially by some backends (tfjs-node's: 1.8e-4 error after the norm at
  // 64³), the two-stage one is accurate to ~1e-6.
  const [n, d, h, w, c] = x.shape as [number, number, number, number, number];
  const x4 = tf.reshape(x, [n, d, h * w, c]);
  const mean3 = (t: tf.Tensor) => tf.mean(tf.mean(t, 2, true), 1, true); // [n, 1, 1, c]
  const centered = tf.sub(x4, mean3(x4));
  const variance = mean3(tf.square(centered));
  return tf.reshape(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), x.shape);
}

/** nn.GELU() (exact form): 0.5·x·(1 + erf(x/√2)). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

export function leakyRelu(x: tf.Tensor): tf.Tensor {
  return tf.leakyRelu(x, LEAKY_SLOPE);
}

/**
 * 3D convolution, stride 1 (or `stride`), padding (k − stride + 1)/2 as MONAI's get_padding —
 * which for odd k and stride 1 is TF 'same'; filter [k, k, k, in, out].
 */
export function conv3d(x: tf.Tensor, w: tf.Tensor, bias?: tf.Tensor, stride = 1): tf.Tensor {
  const k = w.shape[0]!;
  let pad: 'same' | 'valid';
  if (k === 1) pad = 'valid';
  else if (stride === 1 && k % 2 === 1) pad = 'same';
  else if (stride === k) pad = 'valid';
  else throw new Error(`conv3d: kernel ${k} stride ${stride} not supported`);
  const y: tf.Tensor = tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, stride, pad, 'NDHWC');
  return bias ? affineLastAxis(y, y.shape, undefined, bias) : y;
}

/**
 * ConvTranspose3d with kernel 2, stride 2, no bias (non-overlapping), as one matMul plus
 * reshapes/transposes, so it has a gradient (tf.conv3dTranspose has none in tfjs 4.22).
 * Filter in TF conv3dTranspose layout [2, 2, 2, out, in]:
 * y[n, 2i+a, 2j+b, 2k+c, o] = Σ_in x[n, i, j, k, in] · w[a, b, c, o, in].
 */
export function convTranspose2(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const [n, d, h, wd, cin] = x.shape as [number, number, number, number, number];
  const [k0, k1, k2, cout, win] = w.shape as [number, number, number, number, number];
  if (k0 !== 2 || k1 !== 2 || k2 !== 2) throw new Error('convTranspose2: kernel must be 2×2×2');
  if (win !== cin) throw new Error(`convTranspose2: input has ${cin} channels, weight expects ${win}`);
  // [a,b,c,o,in] → [in, (a,b,c,o)] = [in, 8·out]
  const w2 = tf.transpose(tf.reshape(w, [8 * cout, cin]), [1, 0]);
  const y = tf.matMul(tf.reshape(x, [-1, cin]) as tf.Tensor2D, w2 as tf.Tensor2D); // [n·d·h·wd, (a,b,c,o)]
  // [n, d, h, wd, a, b, c, o] → [n, d, a, h, b, wd, c, o] with two rank-4 transposes.
  let t = tf.reshape(y, [n * d, h * wd, 2, 4 * cout]);
  t = tf.transpose(t, [0, 2, 1, 3]); // [n, d, a, h, wd, (b, c, o)]
  t = tf.reshape(t, [n * d * 2 * h, wd, 2, 2 * cout]);
  t = tf.transpose(t, [0, 2, 1, 3]); // [n, d, a, h, b, wd, (c, o)]
  return tf.reshape(t, [n, 2 * d, 2 * h, 2 * wd, cout]);
}

/** [prod(before), shape[axis], prod(after)]: a rank-3 view around one axis. */
function around(shape: readonly number[], axis: number): [number, number, number] {
  const before = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const after = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return [before, shape[axis]!, after];
}

/** x[..., begin:begin+size (on `axis`), ...] via a rank-3 view. */
export function sliceAxis(x: tf.Tensor, axis: number, begin: number, size: number): tf.Tensor {
  const [a, n, b] = around(x.shape, axis);
  if (begin === 0 && size === n) return x;
  const out = [...x.shape];
  out[axis] = size;
  return tf.reshape(tf.slice(tf.reshape(x, [a, n, b]), [0, begin, 0], [a, size, b]), out);
}

/** Concatenation on `axis` via rank-3 views. */
export function concatAxis(xs: tf.Tensor[], axis: number): tf.Tensor {
  const first = xs[0]!;
  const out = [...first.shape];
  out[axis] = xs.reduce((acc, t) => acc + t.shape[axis]!, 0);
  return tf.reshape(
    tf.concat(
      xs.map((t) => tf.reshape(t, around(t.shape, axis))),
      1,
    ),
    out,
  );
}

/** torch.roll(x, shift, dim=axis) as two slices and a concat. */
export function roll(x: tf.Tensor, shift: number, axis: number): tf.Tensor {
  const n = x.shape[axis]!;
  const s = ((shift % n) + n) % n;
  if (s === 0) return x;
  // out[i] = x[(i − s) mod n] → concat(x[n−s:], x[:n−s])
  return concatAxis([sliceAxis(x, axis, n - s, s), sliceAxis(x, axis, 0, n - s)], axis);
}

/** Zero-pads the spatial axes 1..3 of [N, D0, D1, D2, C] at the end (rank-3 pads). */
export function padEnd3(x: tf.Tensor, p: readonly [number, number, number]): tf.Tensor {
  for (let i = 0; i < 3; i++) {
    if (p[i] === 0) continue;
    const [a, n, b] = around(x.shape, i + 1);
    const out = [...x.shape];
    out[i + 1] = n + p[i]!;
    x = tf.reshape(
      tf.pad(tf.reshape(x, [a, n, b]), [
        [0, 0],
        [0, p[i]!],
        [0, 0],
      ]),
      out,
    );
  }
  return x;
}

/** x[:, :d, :h, :w, :]. */
export function cropTo3(x: tf.Tensor, dims: readonly [number, number, number]): tf.Tensor {
  for (let i = 0; i < 3; i++) x = sliceAxis(x, i + 1, 0, dims[i]!);
  return x;
}

/** Global average pool over the spatial axes: [N, D0, D1, D2, C] → [N, C]. */
export function globalAvgPool(x: tf.Tensor): tf.Tensor {
  const [n, d, h, w, c] = x.shape as [number, number, number, number, number];
  return tf.mean(tf.mean(tf.reshape(x, [n, d, h * w, c]), 2), 1);
}
