import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Store } from '../../src/store/store.ts';
import { readMarker, runInProcess, tempDir, VOCO_BIN, writePipeline } from '../helpers.ts';

function slowPipeline(dir: string, marker: string): string {
  return writePipeline(
    dir,
    'slow.yaml',
    `version: 1
name: slow
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with: { count: 40, delayMs: 60, marker: ${marker} }
    resources: { cpu: 2 }
  total:
    uses: {{stages}}/sum.ts
    inputs: { numbers: numbers.numbers }
`,
  );
}

/** Starts `voco run --json` and SIGKILLs it once `itemsBeforeKill` items are done. */
function runAndKill(file: string, cache: string, itemsBeforeKill: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VOCO_BIN, 'run', file, '--cache', cache, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let done = 0;
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line.includes('"item-done"')) done++;
        if (done >= itemsBeforeKill && child.exitCode === null && !child.killed) child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code} before the kill`))));
    child.on('error', reject);
  });
}

describe('crash safety', () => {
  it('kill -9 in the middle of an item-level stage, then run again: no finished item is recomputed', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = slowPipeline(dir, marker);
    const cache = join(dir, 'cache');
    await runAndKill(file, cache, 8);

    const store = Store.open(cache);
    const committed = new Set([...store.items.getRange()].map(({ value }) => value.id));
    const holder = store.runLockHolder();
    await store.close();
    expect(committed.size).toBeGreaterThanOrEqual(8);
    expect(committed.size).toBeLessThan(40);
    expect(holder).toBeUndefined(); // the dead run's lock is recognised as stale

    const before = readMarker(marker).length;
    const { summary, events } = await runInProcess(file, cache);
    expect(summary.status).toBe('succeeded');
    const redone = readMarker(marker)
      .slice(before)
      .map((m) => m.item!);
    expect(redone.filter((id) => committed.has(id))).toEqual([]);
    expect(redone.length).toBe(40 - committed.size);
    expect(events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 40, cached: committed.size });

    const again = await runInProcess(file, cache);
    expect(again.summary.stages.numbers!.status).toBe('cached');
  }, 60_000);

  it('a second voco run on a busy cache stops with a clear message and exit code 3', async () => {
    const dir = tempDir();
    const file = slowPipeline(dir, join(dir, 'marker'));
    const cache = join(dir, 'cache');
    const first = spawn(process.execPath, [VOCO_BIN, 'run', file, '--cache', cache, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((ok, fail) => {
      first.stdout.on('data', (c: Buffer) => c.toString().includes('item-done') && ok());
      first.on('exit', (code) => fail(new Error(`the first run exited (${code}) before starting its items`)));
    });
    const second = spawnSync(process.execPath, [VOCO_BIN, 'run', file, '--cache', cache], { encoding: 'utf8' });
    first.kill('SIGKILL');
    expect(second.status).toBe(3);
    expect(second.stderr).toMatch(/the cache .* is in use by another voco run \(pid \d+ on .*\). Wait for it to finish, or pass --wait/);
  }, 60_000);
});
