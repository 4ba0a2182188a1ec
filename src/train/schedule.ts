/**
 * Learning-rate schedules, as functions of the optimiser step index.
 *
 * Step indexing (as PyTorch's LambdaLR, which VoCo's WarmupCosineSchedule is): schedule(s) is the
 * learning rate of the update made when s updates have already been made, s = 0, 1, 2, … The
 * scheduler is built with lr = baseLr·λ(0) and advanced after each optimizer.step(), so the first
 * update uses schedule(0) — 0 during warm-up (that update still moves AdamW's moments and step
 * count, it just does not move the weights) — and update number k (1-based) uses schedule(k − 1).
 * Training for T steps uses schedule(0) … schedule(T − 1).
 */

/** A learning rate per step index s (integer ≥ 0). */
export type LrSchedule = (step: number) => number;

export interface WarmupCosineOptions {
  /** Peak learning rate, reached at s = warmupSteps (VoCo: 1e-4). */
  baseLr: number;
  /** Linear warm-up length in steps, integer ≥ 0 (VoCo: 5000). */
  warmupSteps: number;
  /** Total steps T, integer > warmupSteps (VoCo v1: 250,000; v2: 2,000,000). */
  totalSteps: number;
  /**
   * Learning rate the cosine decays to (default 0, VoCo's). With minLr the post-warm-up rate is
   * minLr + (baseLr − minLr)·½(1 + cos(π·progress)).
   */
  minLr?: number;
  /**
   * After s = T the reference formula keeps going: progress > 1 and the cosine rises again
   * (½(1 + cos(π·progress)) is never negative, so its floor at 0 never acts). 'continue' (default)
   * reproduces that exactly; 'clamp' holds the rate at minLr for s ≥ T.
   */
  afterTotal?: 'continue' | 'clamp';
}

function checkStep(step: number, where: string): void {
  if (!(Number.isInteger(step) && step >= 0)) throw new Error(`${where}: step must be an integer >= 0, got ${step}`);
}

/**
 * VoCo's WarmupCosineSchedule (REFERENCE §1.7) with the base rate folded in:
 *   s < W:  lr(s) = baseLr · s / W
 *   s ≥ W:  lr(s) = baseLr · max(0, ½(1 + cos(π·progress))),  progress = (s − W) / (T − W)
 * (with minLr: minLr + (baseLr − minLr)·max(0, ½(1 + cos(π·progress))) after warm-up).
 */
export function warmupCosine(opts: WarmupCosineOptions): LrSchedule {
  const { baseLr, warmupSteps, totalSteps } = opts;
  const minLr = opts.minLr ?? 0;
  const afterTotal = opts.afterTotal ?? 'continue';
  if (!(Number.isFinite(baseLr) && baseLr >= 0)) throw new Error(`warmupCosine: baseLr must be a finite number >= 0, got ${baseLr}`);
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0)) {
    throw new Error(`warmupCosine: warmupSteps must be an integer >= 0, got ${warmupSteps}`);
  }
  if (!(Number.isInteger(totalSteps) && totalSteps > warmupSteps)) {
    throw new Error(`warmupCosine: totalSteps must be an integer > warmupSteps (${warmupSteps}), got ${totalSteps}`);
  }
  if (!(Number.isFinite(minLr) && minLr >= 0 && minLr <= baseLr)) {
    throw new Error(`warmupCosine: minLr must be a finite number in [0, baseLr = ${baseLr}], got ${minLr}`);
  }
  if (afterTotal !== 'continue' && afterTotal !== 'clamp') {
    throw new Error(`warmupCosine: afterTotal must be 'continue' or 'clamp', got ${String(afterTotal)}`);
  }
  return (step: number): number => {
    checkStep(step, 'warmupCosine');
    if (step < warmupSteps) return baseLr * (step / warmupSteps); // LambdaLR: base · λ(s)
    if (afterTotal === 'clamp' && step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / (totalSteps - warmupSteps);
    const factor = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    return minLr === 0 ? baseLr * factor : minLr + (baseLr - minLr) * factor;
  };
}

/** The same learning rate at every step. */
export function constant(lr: number): LrSchedule {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`constant: lr must be a finite number >= 0, got ${lr}`);
  return (step: number): number => {
    checkStep(step, 'constant');
    return lr;
  };
}
