import type { Command } from 'commander';
import { EventBus } from '../engine/events.ts';
import { consoleObserver } from '../engine/observers/console.ts';
import { ndjsonLogObserver } from '../engine/observers/ndjson-log.ts';
import { runPipeline } from '../engine/scheduler.ts';
import { join } from 'node:path';
import { EXIT, cacheDirFor, collect, withPipelineOptions, loadPipeline, openStore, reportError, type PipelineCliOptions } from './common.ts';

interface RunCliOptions extends PipelineCliOptions {
  only?: string[];
  from?: string;
  until?: string;
  force?: string[];
  dryRun?: boolean;
  explain?: boolean;
  keepGoing?: boolean;
  jobs?: string;
  wait?: boolean;
  json?: boolean;
  verbose?: boolean;
}

export function registerRun(program: Command): void {
  withPipelineOptions(program
    .command('run')
    .description('run a pipeline, reusing cached stage and item results')
    .argument('<pipeline>', 'pipeline YAML file')
    .option('--only <stages>', 'run only these stages (comma-separated); their inputs must be cached', (v: string, prev: string[] = []) => [...prev, ...v.split(',')])
    .option('--from <stage>', 'run this stage and everything downstream of it')
    .option('--until <stage>', 'run this stage and everything upstream of it')
    .option('--force <stage>', 're-run a stage even if cached ("*" for all; repeatable)', collect)
    .option('-n, --dry-run', 'show what would run, and run nothing')
    .option('--explain', 'with --dry-run: say why each stage would run')
    .option('-k, --keep-going', 'keep running independent stages after a failure')
    .option('-j, --jobs <n>', 'stages that may run at once (default: CPU count)')
    .option('--wait', 'if another run holds the cache, wait for it instead of stopping')
    .option('--json', 'print events as NDJSON on stdout instead of the progress view')
    .option('-v, --verbose', 'show debug messages'))
    .action(async (file: string, opts: RunCliOptions) => {
      process.exitCode = await runCommand(file, opts);
    });
}

async function runCommand(file: string, opts: RunCliOptions): Promise<number> {
  const bus = new EventBus();
  let stopConsole: (() => void) | undefined;
  let closeLog: (() => void) | undefined;
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (abort.signal.aborted) process.exit(EXIT.interrupted);
    process.stderr.write(`\nvoco: ${sig} received, stopping after the items in flight (again to quit at once)\n`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const pipeline = await loadPipeline(file, opts);
    const store = openStore(cacheDirFor(pipeline, opts));
    try {
      if (opts.json) bus.subscribe((e) => process.stdout.write(`${JSON.stringify(e)}\n`));
      else {
        const c = consoleObserver({ verbose: opts.verbose, live: opts.dryRun ? false : undefined });
        bus.subscribe(c.observer);
        stopConsole = c.stop;
      }
      if (!opts.dryRun) {
        const log = ndjsonLogObserver((runId) => join(store.root, 'runs', `${runId}.ndjson`));
        bus.subscribe(log.observer);
        closeLog = log.close;
      }
      const summary = await runPipeline(pipeline, store, bus, {
        only: opts.only,
        from: opts.from,
        until: opts.until,
        force: opts.force,
        dryRun: opts.dryRun,
        keepGoing: opts.keepGoing,
        jobs: opts.jobs ? Number(opts.jobs) : undefined,
        wait: opts.wait,
        signal: abort.signal,
        command: `voco run ${process.argv.slice(3).join(' ')}`.trim(),
      });
      if (summary.status === 'planned' && opts.explain && summary.plan) {
        // The planned events already carry the reasons; add keys for the curious.
        for (const [name, s] of summary.plan) if (s.key && opts.verbose) process.stderr.write(`  ${name}: key ${s.key}\n`);
      }
      if (summary.status === 'interrupted') return EXIT.interrupted;
      return summary.status === 'failed' ? EXIT.failed : 0;
    } finally {
      stopConsole?.();
      closeLog?.();
      await store.close();
    }
  } catch (e) {
    stopConsole?.();
    return reportError(e);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
