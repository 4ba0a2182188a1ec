import type { Command } from 'commander';
import { withPipelineOptions, loadPipeline, reportError, type PipelineCliOptions } from './common.ts';

export function registerValidate(program: Command): void {
  withPipelineOptions(program
    .command('validate')
    .description('check a pipeline: YAML, schemas, stage kinds, wiring, port types and cycles')
    .argument('<pipeline>', 'pipeline YAML file')
    .option('--print', 'print the fully resolved pipeline as JSON'), { cache: false })
    .action(async (file: string, opts: PipelineCliOptions & { print?: boolean }) => {
      try {
        const p = await loadPipeline(file, opts);
        if (opts.print) process.stdout.write(`${JSON.stringify(p.config, null, 2)}\n`);
        process.stderr.write(`${file}: valid (${p.order.length} stages: ${p.order.join(' → ')})\n`);
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
