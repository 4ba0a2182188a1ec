/** Learning-rate schedules (src/train/schedule.ts) against hand-computed values. */
import { describe, expect, it } from 'vitest';
import { constant, warmupCosine } from '../../src/train/schedule.ts';

describe('warmupCosine', () => {
  // VoCo v1: lr 1e-4, warm-up 5000, T = 250,000.
  const voco = warmupCosine({ baseLr: 1e-4, warmupSteps: 5000, totalSteps: 250_000 });

  it('warms up linearly from 0: the first update (s = 0) uses lr 0', () => {
    expect(voco(0)).toBe(0);
    expect(voco(1)).toBeCloseTo(2e-8, 20);
    expect(voco(2500)).toBeCloseTo(5e-5, 18);
    expect(voco(4999)).toBeCloseTo(9.998e-5, 18);
  });

  it('peaks at s = warmup and follows ½(1 + cos(π·progress)) after it', () => {
    expect(voco(5000)).toBe(1e-4);
    // progress 0.25: ½(1 + √2/2)
    expect(voco(5000 + 61_250)).toBeCloseTo(1e-4 * 0.8535533905932737, 18);
    // mid-way, progress 0.5
    expect(voco(127_500)).toBeCloseTo(5e-5, 18);
    // progress 0.75: ½(1 − √2/2)
    expect(voco(5000 + 183_750)).toBeCloseTo(1e-4 * 0.14644660940672624, 18);
    expect(voco(249_999)).toBeGreaterThan(0);
    expect(voco(249_999)).toBeLessThan(1e-13);
    expect(voco(250_000)).toBe(0);
  });

  it('beyond T: the reference formula rises again (continue), or holds minLr (clamp)', () => {
    // progress 1.5: ½(1 + cos(1.5π)) = ½
    expect(voco(250_000 + 122_500)).toBeCloseTo(5e-5, 18);
    // progress 2: back to the peak
    expect(voco(250_000 + 245_000)).toBeCloseTo(1e-4, 18);
    const clamped = warmupCosine({ baseLr: 1e-4, warmupSteps: 5000, totalSteps: 250_000, afterTotal: 'clamp' });
    expect(clamped(250_000)).toBe(0);
    expect(clamped(372_500)).toBe(0);
    expect(clamped(249_999)).toBe(voco(249_999));
  });

  it('small schedule, every step by hand (W = 4, T = 12, lr 1)', () => {
    const s = warmupCosine({ baseLr: 1, warmupSteps: 4, totalSteps: 12 });
    const c = (p: number): number => 0.5 * (1 + Math.cos(Math.PI * p));
    const expected = [0, 0.25, 0.5, 0.75, 1, c(1 / 8), c(2 / 8), c(3 / 8), 0.5, c(5 / 8), c(6 / 8), c(7 / 8), 0];
    expected.forEach((e, i) => expect(s(i), `s=${i}`).toBeCloseTo(e, 15));
  });

  it('decays to minLr when given', () => {
    const s = warmupCosine({ baseLr: 1, warmupSteps: 4, totalSteps: 12, minLr: 0.1 });
    expect(s(2)).toBe(0.5); // warm-up unchanged
    expect(s(4)).toBe(1);
    expect(s(8)).toBeCloseTo(0.55, 15);
    expect(s(12)).toBeCloseTo(0.1, 15);
  });

  it('without warm-up starts at the peak', () => {
    const s = warmupCosine({ baseLr: 2, warmupSteps: 0, totalSteps: 10 });
    expect(s(0)).toBe(2);
    expect(s(5)).toBeCloseTo(1, 15);
    expect(s(10)).toBe(0);
  });

  it('rejects bad parameters and steps with clear errors', () => {
    expect(() => warmupCosine({ baseLr: -1, warmupSteps: 1, totalSteps: 2 })).toThrow(/baseLr/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1.5, totalSteps: 2 })).toThrow(/warmupSteps/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 10, totalSteps: 10 })).toThrow(/totalSteps must be an integer > warmupSteps/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1, totalSteps: 10, minLr: 2 })).toThrow(/minLr/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1, totalSteps: 10, afterTotal: 'stop' as 'clamp' })).toThrow(/afterTotal/);
    expect(() => voco(-1)).toThrow(/step must be an integer >= 0/);
    expect(() => voco(0.5)).toThrow(/step/);
  });
});

describe('constant', () => {
  it('returns the same rate at every step and validates', () => {
    const s = constant(3e-4);
    expect([s(0), s(1), s(1_000_000)]).toEqual([3e-4, 3e-4, 3e-4]);
    expect(() => constant(Number.NaN)).toThrow(/lr/);
    expect(() => s(-2)).toThrow(/step/);
  });
});
