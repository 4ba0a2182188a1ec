/** Teacher EMA (src/train/ema.ts): exact float32 arithmetic, name mapping, checks, memory. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { emaUpdate } from '../../src/train/ema.ts';
import { setupTestBackend } from '../models/ops/grad-check.ts';

beforeAll(async () => {
  await setupTestBackend();
});

const fr = Math.fround;

function variable(values: number[], shape?: number[]): tf.Variable {
  const t = tf.tensor(values, shape ?? [values.length], 'float32');
  const v = tf.variable(t);
  t.dispose();
  return v;
}

/** θ_t·m + θ_s·(1 − m), each operation rounded to float32 as the tensor ops do. */
function expected(t: number[], s: number[], m: number): number[] {
  const mf = fr(m);
  const om = fr(1 - m);
  return t.map((x, i) => fr(fr(fr(x) * mf) + fr(fr(s[i]!) * om)));
}

describe('emaUpdate', () => {
  it('θ_t ← m·θ_t + (1 − m)·θ_s, exactly in float32, in place', () => {
    const t0 = [1, -2, 0.5, 3.25, 100, -0.001];
    const s0 = [0, 2, 0.75, -1, 99.5, 0.002];
    const teacher = new Map([['w', variable(t0, [2, 3])]]);
    const student = new Map([['w', variable(s0, [2, 3])]]);
    const w = teacher.get('w')!;
    emaUpdate(teacher, student, 0.99);
    expect(teacher.get('w')).toBe(w); // same variable, updated in place
    expect(Array.from(w.dataSync())).toEqual(expected(t0, s0, 0.99));
    // hand values for m = 0.5: midpoints
    emaUpdate(teacher, student, 0.5);
    const afterHalf = expected(expected(t0, s0, 0.99), s0, 0.5);
    expect(Array.from(w.dataSync())).toEqual(afterHalf);
    expect(w.dataSync()[0]).toBeCloseTo((0.99 * 1 + 0) / 2, 7);
    expect(Array.from(student.get('w')!.dataSync())).toEqual(s0.map(fr)); // student untouched
    tf.dispose([...teacher.values(), ...student.values()]);
  });

  it('momentum 1 keeps the teacher, momentum 0 copies the student', () => {
    const teacher = new Map([['a', variable([1, 2])]]);
    const student = new Map([['a', variable([5, 6])]]);
    emaUpdate(teacher, student, 1);
    expect(Array.from(teacher.get('a')!.dataSync())).toEqual([1, 2]);
    emaUpdate(teacher, student, 0);
    expect(Array.from(teacher.get('a')!.dataSync())).toEqual([5, 6]);
    // the copy is independent of the student afterwards
    const seven = tf.tensor([7, 7]);
    student.get('a')!.assign(seven);
    expect(Array.from(teacher.get('a')!.dataSync())).toEqual([5, 6]);
    tf.dispose([seven, ...teacher.values(), ...student.values()]);
  });

  it('maps teacher names to student names; extra student variables are ignored', () => {
    const teacher = new Map([['teacher.w', variable([4])]]);
    const student = new Map([
      ['student.w', variable([8])],
      ['student.head', variable([1, 1, 1])],
    ]);
    emaUpdate(teacher, student, 0.75, (n) => n.replace(/^teacher\./, 'student.'));
    expect(teacher.get('teacher.w')!.dataSync()[0]).toBe(5);
    tf.dispose([...teacher.values(), ...student.values()]);
  });

  it('checks names, shapes and momentum before changing anything', () => {
    const teacher = new Map([
      ['a', variable([1, 2])],
      ['b', variable([1, 2, 3, 4], [2, 2])],
    ]);
    const student = new Map([
      ['a', variable([3, 4])],
      ['b', variable([1, 2, 3, 4], [4])],
    ]);
    expect(() => emaUpdate(teacher, student, 0.9)).toThrow(/shape mismatch for "b": teacher \[2,2\], student \[4\]/);
    expect(Array.from(teacher.get('a')!.dataSync())).toEqual([1, 2]); // 'a' not updated either
    expect(() => emaUpdate(teacher, student, 0.9, (n) => `s.${n}`)).toThrow(/"a" \(student "s.a"\) has no student variable/);
    expect(() => emaUpdate(teacher, student, 1.5)).toThrow(/momentum/);
    expect(() => emaUpdate(teacher, student, Number.NaN)).toThrow(/momentum/);
    tf.dispose([...teacher.values(), ...student.values()]);
  });

  it('leaks no tensors across repeated updates', () => {
    const teacher = new Map([['a', variable([1, 2, 3])], ['b', variable([4])]]);
    const student = new Map([['a', variable([0, 0, 0])], ['b', variable([1])]]);
    emaUpdate(teacher, student, 0.9);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) emaUpdate(teacher, student, 0.9);
    emaUpdate(teacher, student, 0);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...teacher.values(), ...student.values()]);
  });
});
