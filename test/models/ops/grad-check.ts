/**
 * Finite-difference gradient checking for TensorFlow.js functions, and the test backend setup.
 *
 * gradCheck(fn, inputs) compares tf.grads of L(x) = Σ w ⊙ fn(x) — w a fixed random (seeded)
 * projection, so that no structure of fn (a sum that is constant, e.g. after a softmax or a
 * normalisation) can hide an error — with central differences
 *   ∂L/∂xᵢ ≈ (L(x + h eᵢ) − L(x − h eᵢ)) / (2h)
 * on a random subset of coordinates of each input. fn runs in float32 (tfjs), but L is
 * accumulated in float64 from fn's output, and h is the exact float32 step actually taken.
 *
 * Error per coordinate: |analytic − numeric| / max(|analytic|, |numeric|, floor·scale), scale =
 * the largest |gradient| among the checked coordinates of that input (so that entries near zero
 * are judged against the gradient's size, not against themselves). Also reported: the norm-wise
 * error ‖a − n‖ / ‖n‖ over the checked coordinates.
 *
 * Inputs may be tf.Variables that fn reads from its closure (then fn's arguments are ignored
 * for them); they are perturbed with assign() and restored.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRng } from '../../../src/util/rng.ts';
import { registerMissingGradients } from '../../../src/models/ops/gradients.ts';

export interface GradCheckOptions {
  /** Finite-difference step (default 1e-2). */
  eps?: number;
  /** Coordinates checked per input, chosen at random (default 24; all if the input is smaller). */
  samples?: number;
  /** Indices of the inputs to check (default: all). */
  wrt?: number[];
  /** Seed for the projection and the coordinate choice. */
  seed?: number;
  /** Error floor as a fraction of the largest |gradient| of the input (default 1e-3). */
  floor?: number;
  /**
   * Which coordinates: 'random' (default) or 'largest' — those with the largest analytic
   * |gradient|, the ones finite differences resolve best through a deep float32 network.
   */
  pick?: 'random' | 'largest';
}

export interface InputCheck {
  input: number;
  checked: number;
  maxRelError: number;
  normRelError: number;
  maxAbsGradient: number;
  worst: { index: number; analytic: number; numeric: number } | null;
}

export interface GradCheckReport {
  /** Largest per-coordinate relative error over all checked inputs. */
  maxRelError: number;
  /** Largest norm-wise relative error over the inputs. */
  normRelError: number;
  inputs: InputCheck[];
}

function project(y: tf.Tensor, w: Float64Array): number {
  const values = y.dataSync();
  if (values.length !== w.length) throw new Error(`gradCheck: output size changed (${values.length} vs ${w.length})`);
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]! * w[i]!;
  return sum;
}

function assignValues(v: tf.Variable, values: Float32Array): void {
  const t = tf.tensor(values, v.shape, 'float32');
  v.assign(t);
  t.dispose();
}

export function gradCheck(
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  opts: GradCheckOptions = {},
): GradCheckReport {
  const eps = opts.eps ?? 1e-2;
  const samples = opts.samples ?? 24;
  const floor = opts.floor ?? 1e-3;
  const wrt = opts.wrt ?? inputs.map((_, i) => i);
  const rng = createRng(opts.seed ?? 0, 'grad-check');

  // fixed random projection of the output
  const outShape = tf.tidy(() => fn(...inputs).shape);
  const size = outShape.reduce((a, b) => a * b, 1);
  const w = new Float64Array(size);
  for (let i = 0; i < size; i++) w[i] = rng.normal();
  const wT = tf.tensor(Float32Array.from(w), outShape, 'float32');
  const wF = Float64Array.from(Float32Array.from(w)); // the same weights the analytic loss uses

  const analytic = tf.tidy(() => {
    const targets = wrt.map((i) => inputs[i]!);
    const g = tf.grads((...xs: tf.Tensor[]) => {
      const args = inputs.map((x, i) => {
        const k = wrt.indexOf(i);
        return k >= 0 && !(x instanceof tf.Variable) ? xs[k]! : x;
      });
      return tf.sum(tf.mul(fn(...args), wT));
    })(targets);
    return g.map((t) => t.dataSync().slice());
  });
  wT.dispose();

  const reports: InputCheck[] = [];
  wrt.forEach((inputIndex, k) => {
    const x = inputs[inputIndex]!;
    const base = x.dataSync().slice() as Float32Array;
    const grad = analytic[k]!;
    const count = Math.min(samples, base.length);
    const order = Array.from({ length: base.length }, (_, i) => i);
    rng.shuffle(order);
    if (opts.pick === 'largest') order.sort((a, b) => Math.abs(grad[b]!) - Math.abs(grad[a]!));
    const coords = order.slice(0, count).sort((a, b) => a - b);

    const evalAt = (values: Float32Array): number => {
      if (x instanceof tf.Variable) {
        assignValues(x, values);
        return tf.tidy(() => project(fn(...inputs), wF));
      }
      return tf.tidy(() => {
        const xp = tf.tensor(values, x.shape, 'float32');
        const args = inputs.map((t, i) => (i === inputIndex ? xp : t));
        return project(fn(...args), wF);
      });
    };

    const numeric: number[] = [];
    const work = base.slice();
    for (const c of coords) {
      const x0 = base[c]!;
      work[c] = x0 + eps;
      const xPlus = work[c]!; // float32-rounded
      const lPlus = evalAt(work);
      work[c] = x0 - eps;
      const xMinus = work[c]!;
      const lMinus = evalAt(work);
      work[c] = x0;
      numeric.push((lPlus - lMinus) / (xPlus - xMinus));
    }
    if (x instanceof tf.Variable) assignValues(x, base);

    let scale = 0;
    coords.forEach((c, j) => (scale = Math.max(scale, Math.abs(grad[c]!), Math.abs(numeric[j]!))));
    let maxRel = 0;
    let diff2 = 0;
    let num2 = 0;
    let worst: InputCheck['worst'] = null;
    coords.forEach((c, j) => {
      const a = grad[c]!;
      const n = numeric[j]!;
      const denom = Math.max(Math.abs(a), Math.abs(n), floor * scale, 1e-30);
      const rel = Math.abs(a - n) / denom;
      diff2 += (a - n) ** 2;
      num2 += n * n;
      if (!(rel <= maxRel)) {
        maxRel = rel; // also catches NaN
        worst = { index: c, analytic: a, numeric: n };
      }
    });
    reports.push({
      input: inputIndex,
      checked: coords.length,
      maxRelError: maxRel,
      normRelError: num2 > 0 ? Math.sqrt(diff2 / num2) : Math.sqrt(diff2),
      maxAbsGradient: scale,
      worst,
    });
  });
  return {
    maxRelError: Math.max(0, ...reports.map((r) => r.maxRelError)),
    normRelError: Math.max(0, ...reports.map((r) => r.normRelError)),
    inputs: reports,
  };
}

function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

export interface DirectionalCheck {
  input: number;
  /** ⟨∇L, d⟩ from tf.grads. */
  analytic: number;
  /** (L(x + h d) − L(x − h d)) / 2h. */
  numeric: number;
  relError: number;
}

/**
 * Directional finite differences: for each input, d = the unit vector along that input's
 * analytic gradient (plus, with `mix`, a unit random vector, renormalised), and compares
 * ⟨∇L, d⟩ with the central difference along d. Along the gradient the signal is ‖∇L‖, far
 * above float32 noise, so this checks the wiring of a whole network where per-coordinate
 * differences drown in rounding; an error in the gradient shows up as its component along d.
 */
export function directionalCheck(
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  opts: { eps?: number; wrt?: number[]; seed?: number; mix?: number } = {},
): DirectionalCheck[] {
  const eps = opts.eps ?? 1e-3;
  const wrt = opts.wrt ?? inputs.map((_, i) => i);
  const rng = createRng(opts.seed ?? 0, 'directional-check');
  const outShape = tf.tidy(() => fn(...inputs).shape);
  const size = outShape.reduce((a, b) => a * b, 1);
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) w[i] = rng.normal();
  const wF = Float64Array.from(w);
  const wT = tf.tensor(w, outShape, 'float32');
  const grads = tf.tidy(() =>
    tf
      .grads((...xs: tf.Tensor[]) => {
        const args = inputs.map((x, i) => {
          const k = wrt.indexOf(i);
          return k >= 0 && !(x instanceof tf.Variable) ? xs[k]! : x;
        });
        return tf.sum(tf.mul(fn(...args), wT));
      })(wrt.map((i) => inputs[i]!))
      .map((g) => g.dataSync().slice()),
  );
  wT.dispose();
  return wrt.map((inputIndex, k) => {
    const x = inputs[inputIndex]!;
    const g = grads[k]!;
    const base = x.dataSync().slice() as Float32Array;
    const gNorm = norm(g);
    const d = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) d[i] = gNorm > 0 ? g[i]! / gNorm : 0;
    if (opts.mix) {
      const r = Float64Array.from({ length: g.length }, () => rng.normal());
      const rNorm = norm(r);
      for (let i = 0; i < g.length; i++) d[i]! += (opts.mix * r[i]!) / rNorm;
      const dNorm = norm(d);
      for (let i = 0; i < g.length; i++) d[i]! /= dNorm;
    }
    let analytic = 0;
    for (let i = 0; i < g.length; i++) analytic += g[i]! * d[i]!;
    const at = (sign: number): number => {
      const values = new Float32Array(base.length);
      for (let i = 0; i < base.length; i++) values[i] = base[i]! + sign * eps * d[i]!;
      if (x instanceof tf.Variable) {
        assignValues(x, values);
        return tf.tidy(() => project(fn(...inputs), wF));
      }
      return tf.tidy(() => {
        const xp = tf.tensor(values, x.shape, 'float32');
        return project(fn(...inputs.map((t, i) => (i === inputIndex ? xp : t))), wF);
      });
    };
    const numeric = (at(1) - at(-1)) / (2 * eps);
    if (x instanceof tf.Variable) assignValues(x, base);
    const relError = Math.abs(analytic - numeric) / Math.max(Math.abs(analytic), Math.abs(numeric), 1e-30);
    return { input: inputIndex, analytic, numeric, relError };
  });
}

/** Seeded random tensor, values uniform in [lo, hi) (float32). */
export function randomTensor(shape: number[], seed: number | string, lo = -1, hi = 1): tf.Tensor {
  const rng = createRng(String(seed), 'randomTensor');
  const size = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = lo + (hi - lo) * rng.float();
  return tf.tensor(v, shape, 'float32');
}

/**
 * Seeded random tensor whose entries are all at least `gap` apart and at least gap/2 away from 0
 * (a shuffled grid), so that a finite-difference step below gap/2 never crosses a kink of ReLU,
 * max or max-pooling.
 */
export function separatedTensor(shape: number[], seed: number | string, gap = 0.05): tf.Tensor {
  const rng = createRng(String(seed), 'separatedTensor');
  const size = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: size }, (_, i) => (i - (size - 1) / 2) * gap);
  if (size % 2 === 1) for (let i = 0; i < size; i++) values[i]! += gap / 2; // keep 0 off the grid
  rng.shuffle(values);
  return tf.tensor(Float32Array.from(values), shape, 'float32');
}

/**
 * Selects the backend for tests: VOCO_TEST_BACKEND=tensorflow loads @tensorflow/tfjs-node,
 * otherwise the pure-JS cpu backend. Registers voco's gradients. Returns the backend name.
 */
export async function setupTestBackend(): Promise<string> {
  if (process.env['VOCO_TEST_BACKEND'] === 'tensorflow') {
    const nodeBackend = '@tensorflow/tfjs-node'; // not a static import: it is optional
    await import(nodeBackend);
    await tf.setBackend('tensorflow');
  } else {
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
  }
  await tf.ready();
  registerMissingGradients();
  return tf.getBackend();
}
