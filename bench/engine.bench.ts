import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRow } from './table.ts';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(REPO, 'bin', 'voco.js');
const N = Number(process.env.VOCO_BENCH_ITEMS ?? 10_000);

function timeCommand(args: string[]): number {
  const t0 = process.hrtime.bigint();
  execFileSync(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Engine overhead: the same trivial item-level stage cold, fully cached, and `voco status`. */
export function benchEngine(): BenchRow[] {
  const dir = mkdtempSync(join(tmpdir(), 'voco-bench-'));
  const file = join(dir, 'bench.yaml');
  writeFileSync(
    file,
    `version: 1\nname: bench\nstages:\n  trivial:\n    uses: ${join(REPO, 'bench', 'stages', 'trivial.ts')}\n    with: { count: ${N} }\n    resources: { cpu: 2 }\n`,
  );
  const cache = join(dir, 'cache');
  // Baseline in the same run: starting the CLI and doing nothing (`voco --version`).
  const startup = Math.min(timeCommand(['--version']), timeCommand(['--version']));
  const cold = timeCommand(['run', file, '--cache', cache]);
  const cached = Math.min(timeCommand(['run', file, '--cache', cache]), timeCommand(['run', file, '--cache', cache]));
  const status = Math.min(timeCommand(['status', file, '--cache', cache]), timeCommand(['status', file, '--cache', cache]));
  return [
    { bench: 'engine', case: `CLI start-up (voco --version), baseline`, value: startup, unit: 'ms', baseline: startup },
    { bench: 'engine', case: `cold run, ${N} items`, value: cold, unit: 'ms', baseline: startup, note: `${((cold - startup) / N * 1000).toFixed(0)} µs engine overhead per item` },
    { bench: 'engine', case: `fully cached run, ${N} items`, value: cached, unit: 'ms', baseline: startup, note: `goal < 1000 ms: ${cached < 1000 ? 'met' : 'NOT met'}` },
    { bench: 'engine', case: `voco status, ${N} items`, value: status, unit: 'ms', baseline: startup, note: `goal < 1000 ms: ${status < 1000 ? 'met' : 'NOT met'}` },
  ];
}
