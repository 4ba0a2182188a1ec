import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../src/store/store.ts';
import { runInProcess, tempDir, writePipeline } from '../helpers.ts';

describe('checkpoint directory', () => {
  it('survives a failed attempt and is handed to the retry of the same stage key, then removed', async () => {
    const dir = tempDir();
    const flag = join(dir, 'crashed');
    const file = writePipeline(dir, 'p.yaml', `version: 1\nname: ck\nstages:\n  long:\n    uses: {{stages}}/resumable.ts\n    with: { steps: 10, crashAt: 6, crashFlag: ${flag} }\n`);
    const cache = join(dir, 'cache');
    const first = await runInProcess(file, cache);
    expect(first.summary.stages.long!.error).toBe('simulated crash at step 6');
    expect(existsSync(flag)).toBe(true);
    const second = await runInProcess(file, cache);
    const key = second.summary.stages.long!.key!;
    const store = Store.open(cache);
    try {
      expect(store.getStage(key)!.outputs.report!.value).toEqual({ steps: 10, resumedFrom: 6 });
    } finally {
      await store.close();
    }
    expect(existsSync(join(cache, 'checkpoints', key.slice(7, 31)))).toBe(false);
  });
});
