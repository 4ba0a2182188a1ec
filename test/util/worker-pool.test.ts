import { describe, expect, it } from 'vitest';
import { WorkerPool } from '../../src/util/worker-pool.ts';

const MOD = new URL('./worker-task.ts', import.meta.url);

describe('WorkerPool', () => {
  it('runs TypeScript functions on worker threads in parallel and returns typed arrays', async () => {
    const pool = new WorkerPool(2);
    try {
      const results = await Promise.all([1, 2, 3, 4].map((n) => pool.run<{ threadId: number; data: Float32Array }>(MOD, 'fill', [n, 1000])));
      expect(results.map((r) => r.data[999])).toEqual([1, 2, 3, 4]);
      expect(results[0]!.data).toBeInstanceOf(Float32Array);
      expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it('turns a thrown error into a rejection with its message, file and field', async () => {
    const pool = new WorkerPool(1);
    try {
      await expect(pool.run(MOD, 'fail', ['scan.nii.gz'])).rejects.toMatchObject({ message: 'scan.nii.gz: dim[1] is 0', file: 'scan.nii.gz', field: 'dim' });
      await expect(pool.run(MOD, 'nope', [])).rejects.toThrow(/has no exported function nope/);
    } finally {
      await pool.close();
    }
  });
});
