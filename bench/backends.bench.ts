import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, selectBackend, withWebGpuErrorScope, type BackendInfo, type BackendName } from '../src/models/backend.ts';
import { registerMissingGradients } from '../src/models/ops/gradients.ts';
import type { BenchRow } from './table.ts';

/**
 * The three cases of shared/spec/BACKENDS.md, forward + backward through tf.variableGrads, on every
 * backend that works here; the baseline is the pure-JS `cpu` backend measured in the same run.
 * To keep the bench short, `cpu` runs only cases b and c (case a takes ~85 s a step on it), so
 * case a has no baseline: compare it with case c, which is the same network at 1/16 the voxels.
 */
interface Case {
  id: 'a' | 'b' | 'c';
  label: string;
  /** Builds the trainable variables (and constants to dispose) and returns the loss function. */
  setup(): { vars: tf.Variable[]; consts: tf.Tensor[]; loss: () => tf.Scalar };
}

function uniform(shape: number[], seed: number): tf.Tensor {
  let a = seed >>> 0;
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    v[i] = (a / 4294967296 - 0.5) * 0.2;
  }
  return tf.tensor(v, shape);
}

function convCase(id: 'a' | 'c', shape: [number, number, number, number, number]): Case {
  return {
    id,
    label: `${id}: 3× conv3d 3³ ×16 + relu, [${shape.join(',')}], fwd+bwd`,
    setup() {
      const x = uniform(shape, 1) as tf.Tensor5D;
      const w = [1, 16, 16].map((cin, i) => tf.variable(uniform([3, 3, 3, cin, 16], 10 + i)) as tf.Variable<tf.Rank.R5>);
      const loss = () => {
        let h: tf.Tensor5D = x;
        for (const wi of w) h = tf.relu(tf.conv3d(h, wi, 1, 'same'));
        return tf.mean(h) as tf.Scalar;
      };
      return { vars: w, consts: [x], loss };
    },
  };
}

const CASES: Case[] = [
  convCase('a', [2, 64, 64, 64, 1]),
  {
    id: 'b',
    label: 'b: batched matmul [64,343,32]×[64,32,343], fwd+bwd',
    setup() {
      const a = tf.variable(uniform([64, 343, 32], 2)) as tf.Variable<tf.Rank.R3>;
      const b = tf.variable(uniform([64, 32, 343], 3)) as tf.Variable<tf.Rank.R3>;
      return { vars: [a, b], consts: [], loss: () => tf.mean(tf.matMul(a, b)) as tf.Scalar };
    },
  },
  convCase('c', [1, 32, 32, 32, 1]),
];

async function step(loss: () => tf.Scalar, vars: tf.Variable[]): Promise<number> {
  const t = performance.now();
  const { value, grads } = tf.variableGrads(loss, vars);
  await Promise.all([value.data(), ...Object.values(grads).map((g) => g.data())]);
  tf.dispose([value, ...Object.values(grads)]);
  return (performance.now() - t) / 1000;
}

/** Median of 3 steps after a warm-up; 1 step when the warm-up alone takes over 20 s. */
async function timeCase(c: Case, backend: string): Promise<{ seconds: number; runs: number }> {
  await tf.setBackend(backend);
  const { vars, consts, loss } = c.setup();
  try {
    const run = () => withWebGpuErrorScope(() => step(loss, vars));
    const warm = await run();
    const runs = warm > 20 ? 1 : 3;
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await run());
    times.sort((x, y) => x - y);
    return { seconds: times[Math.floor(times.length / 2)]!, runs };
  } finally {
    tf.dispose([...vars, ...consts]);
  }
}

export async function benchBackends(): Promise<BenchRow[]> {
  registerMissingGradients();
  const available: BackendInfo[] = [];
  const skipped: string[] = [];
  for (const name of ['tensorflow-gpu', 'tensorflow', 'webgpu'] as BackendName[]) {
    try {
      const info = await selectBackend(name);
      // tfjs-node-gpu without a usable GPU reports itself as tensorflow: do not time it twice
      if (!available.some((a) => a.name === info.name)) available.push(info);
    } catch (err) {
      if (!(err instanceof BackendUnavailableError)) throw err;
      skipped.push(`${name}: ${err.message}`);
    }
  }
  for (const s of skipped) process.stderr.write(`  backends: skipped ${s}\n`);
  const cpu = await selectBackend('cpu');
  registerMissingGradients(); // re-assert voco's gradients should tfjs-node's union have replaced them
  const rows: BenchRow[] = [];
  const baseline = new Map<string, number>();
  for (const c of CASES.filter((x) => x.id !== 'a')) {
    process.stderr.write(`  backends: ${c.id} on cpu...\n`);
    const r = await timeCase(c, 'cpu');
    baseline.set(c.id, r.seconds);
    const notMeasured = rows.length === 0 && skipped.length ? `; not measured here: ${skipped.map((s) => s.split(':')[0]).join(', ')}` : '';
    rows.push({ bench: 'backends', case: `${c.label}, cpu`, value: r.seconds, unit: 's', note: `baseline; ${cpu.device}; median of ${r.runs}${notMeasured}` });
  }
  for (const info of available) {
    const tfName = info.name === 'tensorflow-gpu' ? 'tensorflow' : info.name;
    for (const c of CASES) {
      process.stderr.write(`  backends: ${c.id} on ${info.name}...\n`);
      try {
        const r = await timeCase(c, tfName);
        rows.push({
          bench: 'backends',
          case: `${c.label}, ${info.name}`,
          value: r.seconds,
          unit: 's',
          baseline: baseline.get(c.id),
          note: `${info.device}; median of ${r.runs}${c.id === 'a' ? '; cpu not run on a (BACKENDS.md: 85.6 s)' : ''}`,
        });
      } catch (err) {
        rows.push({ bench: 'backends', case: `${c.label}, ${info.name}`, value: NaN, unit: 's', note: `FAILED: ${(err as Error).message.split('\n')[0]}` });
      }
    }
  }
  return rows;
}
