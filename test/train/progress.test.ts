import { describe, expect, it } from 'vitest';
import { emaUpdate, etaSeconds, formatDuration, formatLoss, formatProgress, formatRate, StepTimeEma } from '../../src/train/progress.ts';

describe('progress line', () => {
  it('formats the example line', () => {
    // 8 crops per 1666.7 ms step = 4.8 crops/s; 249880 steps left × 1.6667 s = 416467 s = 4d 19h 41m.
    expect(formatProgress({ step: 120, totalSteps: 250_000, loss: 3.2149, stepMs: (8 * 1000) / 4.8, cropsPerStep: 8 })).toBe(
      'step 120/250000 · loss 3.21 · 4.8 crops/s · ETA 4d 19h',
    );
    // 3.6 crops per 750 ms step = 4.8 crops/s; 249880 × 0.75 s = 187410 s = 2d 4h 3m.
    expect(formatProgress({ step: 120, totalSteps: 250_000, loss: 3.2149, stepMs: 750, cropsPerStep: 3.6 })).toBe(
      'step 120/250000 · loss 3.21 · 4.8 crops/s · ETA 2d 4h',
    );
  });

  it('handles the start, the end and a missing loss', () => {
    expect(formatProgress({ step: 0, totalSteps: 100, cropsPerStep: 4 })).toBe('step 0/100 · ? crops/s · ETA ?');
    expect(formatProgress({ step: 100, totalSteps: 100, stepMs: 500, cropsPerStep: 4, loss: Number.NaN })).toBe('step 100/100 · loss NaN · 8.0 crops/s · ETA 0s');
  });

  it('keeps an exponential moving average of step times', () => {
    expect(emaUpdate(undefined, 100)).toBe(100);
    expect(emaUpdate(100, 200, 0.5)).toBe(150);
    expect(emaUpdate(100, Number.NaN)).toBe(100);
    const ema = new StepTimeEma(0.5);
    expect(ema.ms).toBeUndefined();
    ema.add(100);
    ema.add(300);
    expect(ema.add(300)).toBe(250);
    expect(ema.ms).toBe(250);
  });

  it('formats durations with their two largest units', () => {
    expect(formatDuration(12)).toBe('12s');
    expect(formatDuration(65)).toBe('1m 5s');
    expect(formatDuration(3 * 3600 + 12 * 60 + 40)).toBe('3h 12m');
    expect(formatDuration(2 * 86400 + 3 * 3600 + 59 * 60)).toBe('2d 3h');
    expect(formatDuration(undefined)).toBe('?');
    expect(etaSeconds(200, 50)).toBe(10);
    expect(etaSeconds(undefined, 50)).toBeUndefined();
    expect(etaSeconds(200, -3)).toBe(0);
  });

  it('formats losses and rates', () => {
    expect(formatLoss(0.000012345)).toBe('1.23e-5');
    expect(formatLoss(12.3456)).toBe('12.3');
    expect(formatLoss(0)).toBe('0');
    expect(formatLoss(-Infinity)).toBe('-Infinity');
    expect(formatRate(0.523)).toBe('0.52');
    expect(formatRate(56.78)).toBe('56.8');
    expect(formatRate(1234.5)).toBe('1235');
  });
});
