import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventBus, type TimedEvent } from '../src/engine/events.ts';
import { resolvePipeline, type ResolveOptions } from '../src/engine/resolve.ts';
import { runPipeline, type RunOptions } from '../src/engine/scheduler.ts';
import { Store } from '../src/store/store.ts';

export const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const STAGES = join(REPO, 'test', 'stages');
export const VOCO_BIN = join(REPO, 'bin', 'voco.js');

export function tempDir(prefix = 'voco-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a pipeline file; `{{stages}}` in the text becomes the absolute test/stages path. */
export function writePipeline(dir: string, name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text.replaceAll('{{stages}}', STAGES));
  return file;
}

export interface MarkerEntry {
  stage: string;
  item?: string;
  event?: string;
  pid: number;
  t: number;
}

export function readMarker(file: string): MarkerEntry[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as MarkerEntry);
}

/** Resolves and runs a pipeline in this process, collecting its events. */
export async function runInProcess(
  file: string,
  cacheDir: string,
  opts: RunOptions & ResolveOptions = {},
): Promise<{ summary: Awaited<ReturnType<typeof runPipeline>>; events: TimedEvent[] }> {
  const p = await resolvePipeline(file, { sets: opts.sets, overlays: opts.overlays, backend: opts.backend });
  const store = Store.open(cacheDir);
  const bus = new EventBus();
  const events: TimedEvent[] = [];
  bus.subscribe((e) => events.push(e));
  try {
    const summary = await runPipeline(p, store, bus, { capacity: { cpu: 2 }, ...opts });
    return { summary, events };
  } finally {
    await store.close();
  }
}
