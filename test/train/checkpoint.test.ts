import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  listCheckpoints,
  loadLatestCheckpoint,
  pruneCheckpoints,
  readCheckpoint,
  saveCheckpoint,
  type CheckpointState,
  type CheckpointTensor,
} from '../../src/train/checkpoint.ts';
import { createRng } from '../../src/util/rng.ts';
import { REPO, tempDir } from '../helpers.ts';
import { tensorsForStep } from './checkpoint-saver.ts';

const FP = 'sha256:run-a';

function state(step: number, fingerprint = FP): CheckpointState {
  return { epoch: 2, batchInEpoch: step % 7, rng: { crops: [1, 2, 3, step], init: [4294967295, 0, 7, 9] }, metricsCount: step, fingerprint, extra: { lr: 1e-4, note: 'x' } };
}

function tensors(step: number): Map<string, CheckpointTensor> {
  return tensorsForStep(step, 64);
}

async function saveSteps(dir: string, steps: number[]): Promise<void> {
  for (const step of steps) await saveCheckpoint(dir, { step, tensors: tensors(step), state: state(step) });
}

const bits = (a: Float32Array): number[] => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('checkpoints', () => {
  it('round-trips tensors bit-exactly and the state as saved', async () => {
    const dir = tempDir();
    const rng = createRng(7, 'ckpt');
    const weird = new Float32Array([Number.NaN, -0, Infinity, -Infinity, 1.401298464324817e-45, 3.4028234663852886e38, 0.1]);
    new Uint32Array(weird.buffer)[0] = 0x7fc01234; // a NaN payload must survive too
    const input = new Map<string, CheckpointTensor>([
      ['student.layers.0.weight', { shape: [3, 4, 5], data: Float32Array.from({ length: 60 }, () => rng.normal()) }],
      ['teacher.scalar', { shape: [], data: new Float32Array([42.5]) }],
      ['adam/v/empty', { shape: [0, 3], data: new Float32Array(0) }],
      ['weird', { shape: [7], data: weird }],
    ]);
    const path = await saveCheckpoint(dir, { step: 120, tensors: input, state: state(120) });
    expect(path).toBe(join(dir, 'ckpt-0000000120'));
    expect(JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8'))).toEqual({ step: 120, name: 'ckpt-0000000120' });

    const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint: FP });
    expect(warnings).toEqual([]);
    expect(checkpoint!.step).toBe(120);
    expect(checkpoint!.state).toEqual(state(120));
    expect([...checkpoint!.tensors.keys()].sort()).toEqual([...input.keys()].sort());
    for (const [name, t] of input) {
      const got = checkpoint!.tensors.get(name)!;
      expect(got.shape).toEqual(t.shape);
      expect(got.data).toBeInstanceOf(Float32Array);
      expect(bits(got.data)).toEqual(bits(t.data));
    }
    // Plain objects are accepted as well as maps.
    await saveCheckpoint(dir, { step: 121, tensors: { a: { shape: [2], data: new Float32Array([1, 2]) } }, state: state(121) });
    expect([...(await loadLatestCheckpoint(dir, { fingerprint: FP })).checkpoint!.tensors.keys()]).toEqual(['a']);
  });

  it('returns null with no warnings for an empty or missing directory', async () => {
    const dir = tempDir();
    expect(await loadLatestCheckpoint(dir, { fingerprint: FP })).toEqual({ checkpoint: null, warnings: [] });
    expect(await loadLatestCheckpoint(join(dir, 'nope'), { fingerprint: FP })).toEqual({ checkpoint: null, warnings: [] });
    expect(await listCheckpoints(join(dir, 'nope'))).toEqual([]);
  });

  it('rejects bad input with a message naming the problem', async () => {
    const dir = tempDir();
    await expect(saveCheckpoint(dir, { step: -1, tensors: tensors(1), state: state(1) })).rejects.toThrow(/step must be a non-negative integer/);
    await expect(saveCheckpoint(dir, { step: 1, tensors: { w: { shape: [3], data: new Float32Array(2) } }, state: state(1) })).rejects.toThrow(
      /tensor "w": shape \(3,\) needs 3 values, data has 2/,
    );
    await expect(saveCheckpoint(dir, { step: 1, tensors: tensors(1), state: { ...state(1), fingerprint: '' } })).rejects.toThrow(/fingerprint/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it.each([
    ['a torn save left as a temp directory', (dir: string) => {
      rmSync(join(dir, 'ckpt-0000000030'), { recursive: true });
      mkdirSync(join(dir, 'ckpt-0000000030.tmp-999999'));
      writeFileSync(join(dir, 'ckpt-0000000030.tmp-999999', 'tensors.safetensors'), 'partial');
    }, /ckpt-0000000030\.tmp-999999 is an incomplete save/],
    ['a truncated tensor file', (dir: string) => {
      const f = join(dir, 'ckpt-0000000030', 'tensors.safetensors');
      truncateSync(f, 100);
    }, /skipped checkpoint ckpt-0000000030: .*tensors\.safetensors has 100 bytes, the state file recorded \d+: truncated\?/],
    ['a bad checksum', (dir: string) => {
      const f = join(dir, 'ckpt-0000000030', 'tensors.safetensors');
      const b = readFileSync(f);
      b[b.length - 1] = b[b.length - 1]! ^ 1;
      writeFileSync(f, b);
    }, /tensors\.safetensors fails its checksum/],
    ['a missing state file', (dir: string) => rmSync(join(dir, 'ckpt-0000000030', 'state.json')), /state\.json is missing/],
    ['a damaged state file', (dir: string) => writeFileSync(join(dir, 'ckpt-0000000030', 'state.json'), '{"format": "voco-'), /state\.json is not valid JSON/],
    ['a wrong fingerprint', async (dir: string) => {
      rmSync(join(dir, 'ckpt-0000000030'), { recursive: true });
      await saveCheckpoint(dir, { step: 30, tensors: tensors(30), state: state(30, 'sha256:other-params') });
    }, /belongs to a run with different params \(fingerprint sha256:other-params, this run sha256:run-a\)/],
  ])('ignores %s and falls back to the previous checkpoint', async (_what, damage, warning) => {
    const dir = tempDir();
    await saveSteps(dir, [10, 20, 30]);
    await damage(dir);
    const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint: FP });
    expect(checkpoint!.step).toBe(20);
    expect(bits(checkpoint!.tensors.get('student.w')!.data)).toEqual(bits(tensors(20).get('student.w')!.data));
    expect(warnings.join('\n')).toMatch(warning);
  });

  it('uses a complete checkpoint that latest.json does not point to yet (crash before the pointer moved)', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10, 20]);
    writeFileSync(join(dir, 'latest.json'), JSON.stringify({ step: 10, name: 'ckpt-0000000010' }));
    const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint: FP });
    expect(checkpoint!.step).toBe(20);
    expect(warnings).toEqual([]);
    writeFileSync(join(dir, 'latest.json'), 'garbage');
    expect((await loadLatestCheckpoint(dir, { fingerprint: FP })).warnings.join('\n')).toMatch(/latest\.json is not valid JSON/);
  });

  it('reports every checkpoint when none is usable', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10, 20]);
    const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint: 'sha256:someone-else' });
    expect(checkpoint).toBeNull();
    expect(warnings).toHaveLength(2);
  });

  it('a re-save of the same step supersedes the earlier one', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10]);
    await saveCheckpoint(dir, { step: 10, tensors: tensors(11), state: state(10) });
    expect((await listCheckpoints(dir)).map((c) => c.name)).toEqual(['ckpt-0000000010.1']);
    const { checkpoint } = await loadLatestCheckpoint(dir, { fingerprint: FP });
    expect(bits(checkpoint!.tensors.get('adam.m')!.data)).toEqual(bits(tensors(11).get('adam.m')!.data));
  });

  it('prunes to the newest N, never deleting the newest valid one, and clears dead temp directories', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10, 20, 30, 40, 50]);
    mkdirSync(join(dir, 'ckpt-0000000060.tmp-999999'));
    const deleted = await pruneCheckpoints(dir, 2);
    expect(deleted.map((p) => p.slice(dir.length + 1)).sort()).toEqual(['ckpt-0000000010', 'ckpt-0000000020', 'ckpt-0000000030', 'ckpt-0000000060.tmp-999999']);
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([40, 50]);

    // The two newest are damaged: with keepLast 1 the newest valid one (40… now also damaged → 30 gone) is kept.
    await saveSteps(dir, [60]);
    truncateSync(join(dir, 'ckpt-0000000060', 'tensors.safetensors'), 10);
    rmSync(join(dir, 'ckpt-0000000050', 'state.json'));
    await pruneCheckpoints(dir, 1);
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([40, 60]);
    expect((await loadLatestCheckpoint(dir, { fingerprint: FP })).checkpoint!.step).toBe(40);

    await expect(pruneCheckpoints(dir, -1)).rejects.toThrow(/keepLast must be a non-negative integer/);
    await pruneCheckpoints(dir, 0);
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([40]);
  });

  it('with a fingerprint, pruning keeps the newest checkpoint of this run even behind foreign ones', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10, 20]);
    await saveCheckpoint(dir, { step: 30, tensors: tensors(30), state: state(30, 'sha256:other') });
    await pruneCheckpoints(dir, 1, { fingerprint: FP });
    expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([20, 30]);
    expect((await loadLatestCheckpoint(dir, { fingerprint: FP })).checkpoint!.step).toBe(20);
  });

  it('readCheckpoint checks the step in the directory name', async () => {
    const dir = tempDir();
    await saveSteps(dir, [10]);
    await expect(readCheckpoint(join(dir, 'ckpt-0000000010'), { step: 11 })).rejects.toThrow(/says step 10 but its directory name says step 11/);
  });

  it('after kill -9 at varied moments while saving, the latest checkpoint is always complete and valid', async () => {
    const dir = tempDir();
    const values = 250_000; // 3 MB per checkpoint: enough for a kill to land mid-save
    // Each round resumes from the previous round's checkpoint and is killed at a different point
    // of a save, as a fraction of the measured time between saves.
    for (const fraction of [0.3, 0.7]) {
      const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/train/checkpoint-saver.ts'), dir, FP, String(values)], {
        cwd: REPO,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const { resumed, saved } = await new Promise<{ resumed: number; saved: number }>((resolve, reject) => {
        let resumed = -1;
        const times: number[] = [];
        let saved = 0;
        let buffer = '';
        let killScheduled = false;
        child.stdout.on('data', (chunk: Buffer) => {
          buffer += chunk.toString();
          const lines = buffer.split('\n');
          buffer = lines.pop()!;
          for (const line of lines) {
            const [what, n] = line.split(' ');
            if (what === 'resumed') resumed = Number(n);
            else {
              saved = Number(n);
              times.push(performance.now());
            }
          }
          if (times.length >= 3 && !killScheduled) {
            killScheduled = true;
            const interval = times[2]! - times[1]!;
            setTimeout(() => child.kill('SIGKILL'), interval * fraction);
          }
        });
        // 'close', not 'exit': every line the child printed has been read by then.
        child.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve({ resumed, saved }) : reject(new Error(`saver exited ${code}: ${stderr}`))));
        child.on('error', reject);
      });
      expect(stderr).not.toMatch(/skipped checkpoint/); // a crash never leaves a damaged committed checkpoint

      const { checkpoint, warnings } = await loadLatestCheckpoint(dir, { fingerprint: FP });
      expect(warnings.filter((w) => !/is an incomplete save/.test(w))).toEqual([]);
      const step = checkpoint!.step;
      expect(step).toBeGreaterThanOrEqual(saved);
      expect(step).toBeLessThanOrEqual(saved + 1);
      expect(saved).toBeGreaterThan(resumed);
      expect(checkpoint!.state.batchInEpoch).toBe(step);
      for (const [name, t] of tensorsForStep(step, values)) expect(sameBits(checkpoint!.tensors.get(name)!.data, t.data), name).toBe(true);
    }
  }, 20_000);
});
