import type { Command } from 'commander';
import { cacheDirFor, openStore, reportError } from './common.ts';

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('list past runs recorded in the cache')
    .option('--cache <dir>', 'cache directory')
    .option('-n, --last <n>', 'show only the last n runs', '20')
    .option('--json', 'print run records as JSON')
    .action(async (opts: { cache?: string; last: string; json?: boolean }) => {
      try {
        const store = openStore(cacheDirFor(undefined, opts));
        try {
          const runs = store.listRuns().slice(-Number(opts.last));
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
            return;
          }
          if (runs.length === 0) process.stdout.write('no runs recorded in this cache\n');
          for (const r of runs) {
            const stages = Object.values(r.stages);
            const count = (s: string) => stages.filter((x) => x.status === s).length;
            const dur = r.finishedAt ? `${((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1)}s` : '-';
            process.stdout.write(
              `${r.id}  ${r.status.padEnd(11)} ${r.pipelineName.padEnd(16)} ${r.startedAt}  ${dur.padStart(8)}  ran ${count('ran')}, cached ${count('cached')}, failed ${count('failed')}  log ${r.eventLog}\n`,
            );
            for (const [stage, s] of Object.entries(r.stages)) {
              if (s.environment && s.status === 'ran') {
                const env = Object.entries(s.environment).map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`);
                process.stdout.write(`    ${stage}: ${env.join(', ')}
`);
              }
              for (const skip of s.skipped ?? []) process.stdout.write(`    skipped ${stage} item ${skip.id}: ${skip.error}\n`);
            }
          }
        } finally {
          await store.close();
        }
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
