/**
 * Child process for the kill test: resumes from the latest checkpoint in <dir> (if any), then saves
 * checkpoints in a loop, pruning as it goes, printing `saved <step>` after each until it is
 * killed. Tensor values are a function of the step, so a mixed or torn checkpoint is detectable.
 *   node --import tsx test/train/checkpoint-saver.ts <dir> <fingerprint> <values per tensor>
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadLatestCheckpoint, pruneCheckpoints, saveCheckpoint } from '../../src/train/checkpoint.ts';

export const SAVER_TENSORS = ['student.w', 'teacher.w', 'adam.m'];

export function tensorsForStep(step: number, n: number): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  SAVER_TENSORS.forEach((name, k) => {
    const data = new Float32Array(n).fill(step * 10 + k);
    for (let i = 0; i < n; i += 4099) data[i] = -step - i; // a little structure beyond a constant
    out.set(name, { shape: [n], data });
  });
  return out;
}

async function main(): Promise<void> {
  const [dir, fingerprint, n] = process.argv.slice(2);
  if (!dir || !fingerprint || !n) throw new Error('usage: checkpoint-saver.ts <dir> <fingerprint> <values per tensor>');
  const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(`resumed ${checkpoint?.step ?? 0}\n`);
  for (let step = (checkpoint?.step ?? 0) + 1; ; step++) {
    await saveCheckpoint(dir, {
      step,
      tensors: tensorsForStep(step, Number(n)),
      state: { epoch: 0, batchInEpoch: step, rng: { data: [step, 1, 2, 3] }, metricsCount: step, fingerprint },
    });
    await pruneCheckpoints(dir, 2);
    process.stdout.write(`saved ${step}\n`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
