import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, VOCO_BIN, writePipeline } from '../helpers.ts';

function voco(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [VOCO_BIN, ...args], { encoding: 'utf8', cwd });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const PIPE = `version: 1
name: cli
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with: { count: 3, factor: 2 }
  ckpt:
    uses: {{stages}}/blob-writer.ts
    with: { text: weights }
  total:
    uses: {{stages}}/sum.ts
    inputs: { numbers: numbers.numbers }
`;

describe('voco CLI', () => {
  it('validate prints every problem as file:line:col path: message and exits 2', () => {
    const dir = tempDir();
    const file = writePipeline(dir, 'bad.yaml', PIPE.replace('count: 3', 'count: three').replace('numbers.numbers', 'ckpt.checkpoint'));
    const r = voco(['validate', file], dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain('bad.yaml:6:20 stages.numbers.with.count: must be integer (got string "three")');
    expect(r.err).toContain('bad.yaml:12:24 stages.total.inputs.numbers: type mismatch');
    expect(r.err).toContain('2 problems found.');
  });

  it('run, status --check, dag, runs, cache ls/du/verify/gc', () => {
    const dir = tempDir();
    const file = writePipeline(dir, 'p.yaml', PIPE);
    const cache = join(dir, 'cache');
    const run = voco(['run', file, '--cache', cache]);
    expect(run.code).toBe(0);
    expect(run.err).toMatch(/✔ total done/);

    const check = voco(['status', file, '--cache', cache, '--check']);
    expect(check.code).toBe(0);
    expect(check.out).toMatch(/^numbers\s+fresh\s+[0-9a-f]{10}/m);
    const drift = voco(['status', file, '--cache', cache, '--check', '--set', 'stages.ckpt.with.text=other']);
    expect(drift.code).toBe(1);
    expect(drift.out).toMatch(/^ckpt\s+stale\s+[0-9a-f]{10} \[lockfile differs\]\s+param with.text: "weights" → "other"/m);
    expect(drift.err).toContain('ckpt: differs from the lockfile: param with.text: "weights" → "other"');

    const dag = voco(['dag', file]);
    expect(dag.out).toContain('numbers -- "numbers: numbers" --> total');
    expect(dag.out).toContain('"numbers" -> "total" [label="numbers: numbers"];');

    const runs = voco(['runs', '--cache', cache]);
    expect(runs.out).toMatch(/succeeded\s+cli\s/);

    expect(voco(['cache', 'ls', '--cache', cache]).out).toMatch(/cli\/numbers\s+test-numbers .* 3 items/);
    expect(voco(['cache', 'du', '--cache', cache]).out).toMatch(/3 stages, 3 items, 1 runs/);
    expect(voco(['cache', 'verify', '--cache', cache]).out).toContain('1 blobs checked, 0 problems');

    // Corrupt the blob: verify finds it, --repair drops the record, the next run recomputes it.
    const blobDir = join(cache, 'blobs');
    const sub = readdirSync(blobDir)[0]!;
    const blob = join(blobDir, sub, readdirSync(join(blobDir, sub))[0]!);
    writeFileSync(blob, 'tampered');
    const verify = voco(['cache', 'verify', '--cache', cache]);
    expect(verify.code).toBe(1);
    expect(verify.out).toMatch(/corrupt blob sha256:[0-9a-f]{64}/);
    expect(voco(['cache', 'verify', '--cache', cache, '--repair']).code).toBe(0);
    const rerun = voco(['run', file, '--cache', cache]);
    expect(rerun.err).toMatch(/▶ ckpt running/);
    expect(rerun.err).toMatch(/✔ numbers cached/);
    expect(voco(['cache', 'verify', '--cache', cache]).code).toBe(0);

    // gc keeps what the lockfile references and drops the rest.
    expect(voco(['run', file, '--cache', cache, '--set', 'stages.ckpt.with.text=v2']).code).toBe(0);
    const dry = voco(['cache', 'gc', '--cache', cache, '--dry-run']);
    expect(dry.out).toMatch(/would delete: 1 stage results, 0 items, 1 blobs/);
    expect(voco(['cache', 'gc', '--cache', cache]).code).toBe(0);
    expect(voco(['cache', 'gc', '--cache', cache, '--dry-run']).out).toMatch(/would delete: 0 stage results, 0 items, 0 blobs/);
    expect(voco(['status', file, '--cache', cache, '--check', '--set', 'stages.ckpt.with.text=v2']).code).toBe(0);
  }, 60_000);
});
