import { resolve } from 'node:path';
import type { Command } from 'commander';
import { PipelineError } from '../engine/diagnostics.ts';
import { resolvePipeline, type ResolvedPipeline } from '../engine/resolve.ts';
import { Store } from '../store/store.ts';

export interface PipelineCliOptions {
  set?: string[];
  file?: string[];
  cache?: string;
  backend?: string;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** The options every command that reads a pipeline takes: overrides, overlays and the cache. */
export function withPipelineOptions<C extends Command>(cmd: C, opts: { cache?: boolean } = {}): C {
  cmd
    .option('-s, --set <path=value>', 'override a value, typed by the schema (repeatable)', collect)
    .option('-f, --file <overlay.yaml>', 'merge an overlay file over the pipeline (repeatable, in order)', collect)
    .option('--backend <name>', 'compute backend for every stage that has one: auto, tensorflow-gpu, tensorflow, webgpu or cpu (overrides the pipeline and its stages)');
  if (opts.cache !== false) cmd.option('--cache <dir>', "cache directory (default: $VOCO_CACHE, the pipeline's cache:, or ./cache)");
  return cmd;
}

export async function loadPipeline(file: string, opts: PipelineCliOptions): Promise<ResolvedPipeline> {
  return resolvePipeline(file, { overlays: opts.file ?? [], sets: opts.set ?? [], backend: opts.backend });
}

/** `--cache` > $VOCO_CACHE > the pipeline's `cache:` > ./cache */
export function cacheDirFor(p: ResolvedPipeline | undefined, opts: { cache?: string }): string {
  return resolve(opts.cache ?? process.env.VOCO_CACHE ?? p?.cacheDir ?? 'cache');
}

export function openStore(dir: string): Store {
  return Store.open(dir);
}

/** Exit codes: 1 the work failed, 2 the pipeline or command line is invalid, 3 the cache is busy. */
export const EXIT = { failed: 1, invalid: 2, busy: 3, interrupted: 130 } as const;

export function reportError(e: unknown): number {
  if (e instanceof PipelineError) {
    const n = e.diagnostics.length;
    process.stderr.write(`${e.message}\n${n} problem${n === 1 ? '' : 's'} found.\n`);
    return EXIT.invalid;
  }
  if (e instanceof Error && e.name === 'CacheBusyError') {
    process.stderr.write(`voco: ${e.message}\n`);
    return EXIT.busy;
  }
  process.stderr.write(`voco: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.VOCO_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return EXIT.failed;
}
