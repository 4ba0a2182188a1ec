/**
 * Exponential moving average of weights (teacher ← student), in place:
 *   θ_t ← m·θ_t + (1 − m)·θ_s
 * computed in float32 as (θ_t·m) + (θ_s·(1 − m)), 1 − m in float64 first.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Updates every teacher variable from the student variable named nameMap(teacherName) (default:
 * the same name). All names, shapes and dtypes are checked before anything is changed; a missing
 * or mismatched student variable is an error. Student variables not used by the teacher are
 * ignored. momentum ∈ [0, 1]: 1 keeps the teacher, 0 copies the student.
 */
export function emaUpdate(
  teacher: Map<string, tf.Variable>,
  student: Map<string, tf.Variable>,
  momentum: number,
  nameMap?: (teacherName: string) => string,
): void {
  if (!(Number.isFinite(momentum) && momentum >= 0 && momentum <= 1)) {
    throw new Error(`emaUpdate: momentum must be a number in [0, 1], got ${momentum}`);
  }
  const pairs: Array<[tf.Variable, tf.Variable]> = [];
  for (const [name, t] of teacher) {
    const studentName = nameMap ? nameMap(name) : name;
    const s = student.get(studentName);
    const label = studentName === name ? `"${name}"` : `"${name}" (student "${studentName}")`;
    if (s === undefined) throw new Error(`emaUpdate: teacher variable ${label} has no student variable`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new Error(`emaUpdate: shape mismatch for ${label}: teacher [${t.shape}], student [${s.shape}]`);
    }
    if (t.dtype !== 'float32' || s.dtype !== 'float32') {
      throw new Error(`emaUpdate: ${label} must be float32 (teacher ${t.dtype}, student ${s.dtype})`);
    }
    pairs.push([t, s]);
  }
  if (momentum === 1) return;
  tf.tidy(() => {
    const m = tf.scalar(momentum, 'float32');
    const oneMinusM = tf.scalar(1 - momentum, 'float32');
    for (const [t, s] of pairs) {
      t.assign(momentum === 0 ? tf.clone(s) : tf.add(tf.mul(t, m), tf.mul(s, oneMinusM)));
    }
  });
}
