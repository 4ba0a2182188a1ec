import { resolve } from 'node:path';
import { PipelineError } from '../engine/diagnostics.ts';
import { resolvePipeline, type ResolvedPipeline } from '../engine/resolve.ts';
import { Store } from '../store/store.ts';

export interface PipelineCliOptions {
  set?: string[];
  file?: string[];
  cache?: string;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export async function loadPipeline(file: string, opts: PipelineCliOptions): Promise<ResolvedPipeline> {
  return resolvePipeline(file, { overlays: opts.file ?? [], sets: opts.set ?? [] });
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
