/**
 * Throughput and ETA for the training progress line, e.g.
 *   step 120/250000 · loss 3.21 · 4.8 crops/s · ETA 2d 3h
 * Pure functions plus a tiny moving-average holder; nothing here reads the clock.
 */

/** Exponential moving average: the first sample starts it, later ones move it by `alpha`. */
export function emaUpdate(prev: number | undefined, sample: number, alpha = 0.1): number {
  if (!Number.isFinite(sample)) return prev ?? sample;
  return prev === undefined || !Number.isFinite(prev) ? sample : prev + alpha * (sample - prev);
}

/** Keeps the moving average of step times in milliseconds. */
export class StepTimeEma {
  private value: number | undefined;

  constructor(readonly alpha = 0.1) {}

  add(stepMs: number): number | undefined {
    this.value = emaUpdate(this.value, stepMs, this.alpha);
    return this.value;
  }

  get ms(): number | undefined {
    return this.value;
  }
}

/** Seconds left at `stepMs` per step, or undefined while the step time is unknown. */
export function etaSeconds(stepMs: number | undefined, stepsRemaining: number): number | undefined {
  if (stepMs === undefined || !Number.isFinite(stepMs) || stepMs < 0) return undefined;
  return (Math.max(0, stepsRemaining) * stepMs) / 1000;
}

/** The two largest units: `2d 3h`, `3h 12m`, `4m 5s`, `12s`. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ];
  for (let i = 0; i < units.length - 1; i++) {
    const [name, size] = units[i]!;
    if (s >= size) {
      const [nextName, nextSize] = units[i + 1]!;
      return `${Math.floor(s / size)}${name} ${Math.floor((s % size) / nextSize)}${nextName}`;
    }
  }
  return `${s}s`;
}

/** 3 significant digits for ordinary magnitudes, exponent form for very small or large. */
export function formatLoss(loss: number): string {
  if (!Number.isFinite(loss)) return String(loss);
  if (loss === 0) return '0';
  const a = Math.abs(loss);
  if (a >= 1e-3 && a < 1e5) return loss.toPrecision(3);
  return loss.toExponential(2);
}

/** Crops per second: two significant digits below 10, one decimal below 100, whole numbers above. */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '?';
  if (perSecond >= 100) return String(Math.round(perSecond));
  if (perSecond >= 10) return perSecond.toFixed(1);
  return perSecond.toPrecision(2);
}

export interface ProgressInput {
  /** Steps done so far. */
  step: number;
  totalSteps: number;
  loss?: number;
  /** Moving average of the step time in ms (undefined before the first step). */
  stepMs?: number;
  /** Crops processed per step (batch size × crops per volume), for the throughput. */
  cropsPerStep: number;
}

/** `step 120/250000 · loss 3.21 · 4.8 crops/s · ETA 2d 3h` (loss omitted when absent). */
export function formatProgress(p: ProgressInput): string {
  const parts = [`step ${p.step}/${p.totalSteps}`];
  if (p.loss !== undefined) parts.push(`loss ${formatLoss(p.loss)}`);
  const known = p.stepMs !== undefined && Number.isFinite(p.stepMs) && p.stepMs > 0;
  parts.push(`${known ? formatRate((p.cropsPerStep * 1000) / p.stepMs!) : '?'} crops/s`);
  const remaining = p.totalSteps - p.step;
  parts.push(`ETA ${remaining <= 0 ? '0s' : formatDuration(known ? etaSeconds(p.stepMs, remaining) : undefined)}`);
  return parts.join(' · ');
}
