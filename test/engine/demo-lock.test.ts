import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO, tempDir, VOCO_BIN } from '../helpers.ts';

describe('the committed demo lockfile', () => {
  it('matches a fresh computation of every stage key (the CI reproducibility check)', () => {
    // An empty cache, as on a clean clone: keys are checked against the lockfile alone.
    const r = spawnSync(process.execPath, [VOCO_BIN, 'status', join(REPO, 'pipelines', 'demo.yaml'), '--check', '--cache', join(tempDir(), 'cache')], {
      encoding: 'utf8',
    });
    expect(r.stderr).toContain('lockfile check passed');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^preprocess\s+missing\s+[0-9a-f]{10}\s+matches the lockfile/m);
  });
});
