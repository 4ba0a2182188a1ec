import type { Command } from 'commander';
import { EventBus } from '../engine/events.ts';
import { readLockfile } from '../engine/lockfile.ts';
import { lockDrift, planPipeline } from '../engine/plan.ts';
import { shortHash } from '../util/hash.ts';
import { EXIT, cacheDirFor, withPipelineOptions, loadPipeline, openStore, reportError, type PipelineCliOptions } from './common.ts';

export function registerStatus(program: Command): void {
  withPipelineOptions(program
    .command('status')
    .description('show each stage as fresh, stale (and why) or missing; --check verifies the lockfile')
    .argument('<pipeline>', 'pipeline YAML file')
    .option('--check', 'exit 1 when the lockfile and a fresh computation of keys disagree (for CI)')
    .option('--json', 'print the status as JSON'))
    .action(async (file: string, opts: PipelineCliOptions & { check?: boolean; json?: boolean }) => {
      try {
        const p = await loadPipeline(file, opts);
        const store = openStore(cacheDirFor(p, opts));
        try {
          const lock = readLockfile(p.file);
          const plan = await planPipeline(p, store, lock, new EventBus());
          if (opts.json) {
            process.stdout.write(`${JSON.stringify([...plan.values()], null, 2)}\n`);
          } else {
            const width = Math.max(...p.order.map((n) => n.length), 5);
            for (const name of p.order) {
              const s = plan.get(name)!;
              const lockNote = s.lock === 'drift' ? ' [lockfile differs]' : s.lock === 'absent' ? ' [not in lockfile]' : '';
              const key = s.key ? shortHash(s.key) : '-'.repeat(10);
              process.stdout.write(`${name.padEnd(width)}  ${s.state.padEnd(7)}  ${key}${lockNote}${s.reasons.length ? `  ${s.reasons.join('; ')}` : ''}\n`);
            }
          }
          if (opts.check) {
            const problems = lockDrift(p, plan, lock);
            if (problems.length > 0) {
              process.stderr.write(`lockfile check failed:\n${problems.map((x) => `  ${x}`).join('\n')}\n`);
              process.exitCode = EXIT.failed;
            } else process.stderr.write('lockfile check passed: every stage key matches\n');
          }
        } finally {
          await store.close();
        }
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
