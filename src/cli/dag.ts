import type { Command } from 'commander';
import { toDot, toMermaid } from '../engine/dag-render.ts';
import { withPipelineOptions, loadPipeline, reportError, type PipelineCliOptions } from './common.ts';

export function registerDag(program: Command): void {
  withPipelineOptions(program
    .command('dag')
    .description('print the stage graph as Mermaid and/or DOT')
    .argument('<pipeline>', 'pipeline YAML file')
    .option('--format <format>', 'mermaid, dot, or both', 'both'), { cache: false })
    .action(async (file: string, opts: PipelineCliOptions & { format: string }) => {
      try {
        const p = await loadPipeline(file, opts);
        if (!['mermaid', 'dot', 'both'].includes(opts.format)) throw new Error(`--format must be mermaid, dot or both (got ${opts.format})`);
        const parts: string[] = [];
        if (opts.format !== 'dot') parts.push(opts.format === 'both' ? `\`\`\`mermaid\n${toMermaid(p)}\`\`\`\n` : toMermaid(p));
        if (opts.format !== 'mermaid') parts.push(opts.format === 'both' ? `\`\`\`dot\n${toDot(p)}\`\`\`\n` : toDot(p));
        process.stdout.write(parts.join('\n'));
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
