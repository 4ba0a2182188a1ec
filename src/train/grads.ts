/**
 * Gradient utilities for a training step: the global L2 norm, clipping by it
 * (torch.nn.utils.clip_grad_norm_ semantics), a finiteness check so that a NaN/Inf step can be
 * reported and skipped, and accumulation over micro-batches.
 *
 * Ownership: no function here disposes the gradients it is given. Functions that return tensors
 * return new ones (or cheap clones that share data), which the caller owns and must dispose.
 * Every intermediate is disposed, so these can run once per step for millions of steps.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Gradients keyed by variable name (tf.variableGrads returns a Record; a Map is accepted too). */
export type GradMap = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

/** The (name, gradient) pairs of a GradMap, in insertion order. */
export function gradEntries(grads: GradMap): Array<[string, tf.Tensor]> {
  return grads instanceof Map ? [...grads.entries()] : Object.entries(grads);
}

/**
 * ‖g‖₂ over all gradients together, √(Σᵢ Σ gᵢ²), as a float32 scalar tensor (caller disposes).
 * Equal to the norm of the vector of per-tensor norms that clip_grad_norm_ computes. An empty
 * set of gradients has norm 0.
 */
export function globalNormTensor(grads: GradMap): tf.Scalar {
  const entries = gradEntries(grads);
  return tf.tidy(() => {
    if (entries.length === 0) return tf.scalar(0, 'float32');
    const squares = entries.map(([, g]) => tf.sum(tf.square(g)));
    const total = squares.length === 1 ? squares[0]! : tf.addN(squares);
    return tf.sqrt(total) as tf.Scalar;
  });
}

/** ‖g‖₂ over all gradients together, read back as a number (one synchronous read). */
export function globalNorm(grads: GradMap): number {
  const t = globalNormTensor(grads);
  try {
    return t.dataSync()[0]!;
  } finally {
    t.dispose();
  }
}

export interface ClipResult {
  /** The clipped gradients: new tensors (clones when no clipping was needed); caller disposes. */
  grads: Map<string, tf.Tensor>;
  /** The global norm before clipping (what clip_grad_norm_ returns). */
  norm: number;
  /** The factor applied: min(1, maxNorm / (norm + 1e-6)); 1 when nothing was clipped. */
  scale: number;
  /** Whether the gradients were scaled (scale < 1). */
  clipped: boolean;
}

/**
 * Clips by global norm as torch.nn.utils.clip_grad_norm_(params, maxNorm) with norm_type 2:
 * clip_coef = maxNorm / (norm + 1e-6), applied (gᵢ ← gᵢ·clip_coef) only when clip_coef < 1.
 * Returns the pre-clip norm. A non-finite norm gives a NaN scale and NaN gradients, as PyTorch's
 * default (error_if_nonfinite=False) does — check allFinite() first to skip such a step.
 * The input gradients are not disposed.
 */
export function clipByGlobalNorm(grads: GradMap, maxNorm: number): ClipResult {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0)) {
    throw new Error(`clipByGlobalNorm: maxNorm must be a finite number > 0, got ${maxNorm}`);
  }
  const entries = gradEntries(grads);
  const norm = globalNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  const scale = Number.isNaN(coef) ? Number.NaN : Math.min(coef, 1);
  const clipped = !(scale >= 1);
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of entries) {
    out.set(name, clipped ? tf.tidy(() => tf.mul(g, tf.scalar(scale, g.dtype))) : tf.clone(g));
  }
  return { grads: out, norm, scale, clipped };
}

/** True when every element of every gradient is finite (one synchronous read). */
export function allFinite(grads: GradMap): boolean {
  const entries = gradEntries(grads);
  if (entries.length === 0) return true;
  const flag = tf.tidy(() => {
    let ok: tf.Tensor = tf.all(tf.isFinite(entries[0]![1]));
    for (let i = 1; i < entries.length; i++) ok = tf.logicalAnd(ok, tf.all(tf.isFinite(entries[i]![1])));
    return ok;
  });
  try {
    return flag.dataSync()[0] === 1;
  } finally {
    flag.dispose();
  }
}

/** Names of the gradients that hold a NaN or ±Inf (for reporting a skipped step). */
export function nonFiniteNames(grads: GradMap): string[] {
  const bad: string[] = [];
  for (const [name, g] of gradEntries(grads)) {
    const flag = tf.tidy(() => tf.all(tf.isFinite(g)));
    const ok = flag.dataSync()[0] === 1;
    flag.dispose();
    if (!ok) bad.push(name);
  }
  return bad;
}

/**
 * Sums gradients over k micro-batches and yields their mean, Σⱼ gⱼ / k, k = the number of add()
 * calls since the last reset — the gradient PyTorch accumulates when each micro-batch loss is
 * divided by k. A name missing from some micro-batches counts as a zero gradient in those; a name
 * missing from all of them is absent from the mean (its variable is then skipped by the optimiser,
 * as a parameter whose .grad is None).
 *
 * The running sums are tf.Variables (immune to the caller's tf.tidy) reused across cycles; add()
 * does not dispose the gradients it is given. Call dispose() when done.
 */
export class GradientAccumulator {
  private readonly sums = new Map<string, tf.Variable>();
  /** Names that received a gradient in the current cycle. */
  private readonly present = new Set<string>();
  private n = 0;

  /** Micro-batches added since the last reset. */
  get count(): number {
    return this.n;
  }

  /** Names with a gradient in the current cycle. */
  get names(): string[] {
    return [...this.present];
  }

  /** Adds one micro-batch's gradients. */
  add(grads: GradMap): void {
    const entries = gradEntries(grads);
    for (const [name, g] of entries) {
      if (g.dtype !== 'float32') throw new Error(`GradientAccumulator: gradient "${name}" has dtype ${g.dtype}, expected float32`);
      const sum = this.sums.get(name);
      if (sum !== undefined && !shapesEqual(sum.shape, g.shape) && this.present.has(name)) {
        throw new Error(`GradientAccumulator: gradient "${name}" has shape [${g.shape}], earlier micro-batches had [${sum.shape}]`);
      }
    }
    for (const [name, g] of entries) {
      const sum = this.sums.get(name);
      if (sum === undefined || !shapesEqual(sum.shape, g.shape)) {
        sum?.dispose();
        this.sums.set(name, tf.variable(g, false)); // shares g's data; a later assign replaces it
      } else if (!this.present.has(name)) {
        sum.assign(g);
      } else {
        tf.tidy(() => sum.assign(tf.add(sum, g)));
      }
      this.present.add(name);
    }
    this.n++;
  }

  /** The sums Σⱼ gⱼ of the current cycle, as new tensors (caller disposes). */
  sum(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const name of this.present) out.set(name, tf.clone(this.sums.get(name)!));
    return out;
  }

  /** The means Σⱼ gⱼ / k of the current cycle, as new tensors (caller disposes). */
  mean(): Map<string, tf.Tensor> {
    if (this.n === 0) throw new Error('GradientAccumulator.mean: no micro-batch has been added');
    const k = this.n;
    const out = new Map<string, tf.Tensor>();
    for (const name of this.present) {
      const sum = this.sums.get(name)!;
      out.set(name, k === 1 ? tf.clone(sum) : tf.tidy(() => tf.div(sum, tf.scalar(k, 'float32'))));
    }
    return out;
  }

  /** mean() followed by reset(). */
  takeMean(): Map<string, tf.Tensor> {
    const m = this.mean();
    this.reset();
    return m;
  }

  /** Starts a new cycle (the sums' memory is kept for reuse). */
  reset(): void {
    this.present.clear();
    this.n = 0;
  }

  /** Frees the running sums. */
  dispose(): void {
    for (const v of this.sums.values()) v.dispose();
    this.sums.clear();
    this.present.clear();
    this.n = 0;
  }
}

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
