import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { EventBus } from '../../src/engine/events.ts';
import { readLockfile } from '../../src/engine/lockfile.ts';
import { lockDrift, planPipeline } from '../../src/engine/plan.ts';
import { resolvePipeline } from '../../src/engine/resolve.ts';
import { Store } from '../../src/store/store.ts';
import { readMarker, runInProcess, tempDir, writePipeline } from '../helpers.ts';

/** numbers → total, and an independent constant → total2 branch. */
function chainPipeline(dir: string, marker: string, extra = ''): string {
  return writePipeline(
    dir,
    'chain.yaml',
    `version: 1
name: chain
seed: 3
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with: { count: 6, factor: 2, marker: ${marker} }
  total:
    uses: {{stages}}/sum.ts
    with: { marker: ${marker} }
    inputs: { numbers: numbers.numbers }
  constant:
    uses: {{stages}}/constant.ts
    with: { value: 5, marker: ${marker} }
  total2:
    uses: {{stages}}/sum.ts
    with: { marker: ${marker} }
    inputs: { numbers: constant.numbers }
${extra}`,
  );
}

const executed = (marker: string) =>
  readMarker(marker)
    .filter((m) => m.item || m.event === 'start')
    .map((m) => (m.item ? `${m.stage}/${m.item}` : m.stage));

describe('scheduler', () => {
  it('runs stages in dependency order, and a second run executes nothing', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const cache = join(dir, 'cache');
    const first = await runInProcess(file, cache);
    expect(first.summary.status).toBe('succeeded');
    const log = readMarker(marker);
    const lastNumber = Math.max(...log.filter((m) => m.stage === 'numbers').map((m) => log.indexOf(m)));
    const totalStart = log.findIndex((m) => m.stage === 'total' && m.event === 'start');
    expect(totalStart).toBeGreaterThan(lastNumber);
    expect(executed(marker)).toHaveLength(6 + 3);

    const second = await runInProcess(file, cache);
    expect(Object.values(second.summary.stages).map((s) => s.status)).toEqual(['cached', 'cached', 'cached', 'cached']);
    expect(executed(marker)).toHaveLength(9);
    expect(second.events.filter((e) => e.type === 'item-done')).toHaveLength(0);
  });

  it('re-runs only the changed stage and its dependants', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const cache = join(dir, 'cache');
    await runInProcess(file, cache);
    writeFileSync(marker, '');
    const { summary } = await runInProcess(file, cache, { sets: ['stages.constant.with.value=6'] });
    expect(summary.stages).toMatchObject({
      numbers: { status: 'cached' },
      total: { status: 'cached' },
      constant: { status: 'ran' },
      total2: { status: 'ran' },
    });
    expect(executed(marker).sort()).toEqual(['constant', 'total2']);
  });

  it('keeps item results when only some items change (factor changes every item, count adds items)', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const cache = join(dir, 'cache');
    await runInProcess(file, cache, { only: ['numbers'] });
    writeFileSync(marker, '');
    const { summary } = await runInProcess(file, cache, { only: ['numbers'], sets: ['stages.numbers.with.count=9'] });
    expect(summary.stages.numbers!.status).toBe('ran');
    expect(executed(marker)).toEqual(['numbers/n00006', 'numbers/n00007', 'numbers/n00008']);
  });

  it('early cutoff: an upstream re-run with identical outputs leaves downstream cached', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const cache = join(dir, 'cache');
    await runInProcess(file, cache);
    writeFileSync(marker, '');
    const { summary } = await runInProcess(file, cache, { sets: ['stages.constant.with.note=same output'] });
    expect(summary.stages.constant!.status).toBe('ran');
    expect(summary.stages.total2!.status).toBe('cached');
    expect(executed(marker)).toEqual(['constant']);
  });

  it('respects resource tokens: two cpu:2 stages on 2 cpus never overlap, cpu:1 stages do', async () => {
    const overlap = async (cpu: number) => {
      const dir = tempDir();
      const marker = join(dir, 'marker');
      const file = writePipeline(
        dir,
        'p.yaml',
        `version: 1
name: tokens
stages:
  a:
    uses: {{stages}}/constant.ts
    with: { value: 1, marker: ${marker}, delayMs: 150 }
    resources: { cpu: ${cpu} }
  b:
    uses: {{stages}}/constant.ts
    with: { value: 2, marker: ${marker}, delayMs: 150 }
    resources: { cpu: ${cpu} }
`,
      );
      await runInProcess(file, join(dir, 'cache'), { capacity: { cpu: 2 } });
      const m = readMarker(marker);
      const span = (s: string) => [m.find((x) => x.stage === s && x.event === 'start')!.t, m.find((x) => x.stage === s && x.event === 'end')!.t];
      const [a0, a1] = span('a');
      const [b0, b1] = span('b');
      return a0! < b1! && b0! < a1!;
    };
    expect(await overlap(2)).toBe(false);
    expect(await overlap(1)).toBe(true);
  });

  it('bounds item-level concurrency by the stage cpu tokens', async () => {
    const dir = tempDir();
    const file = writePipeline(
      dir,
      'p.yaml',
      `version: 1
name: items
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with: { count: 8, delayMs: 40 }
    resources: { cpu: 2 }
`,
    );
    const bus = new EventBus();
    let inFlight = 0;
    let maxInFlight = 0;
    // Count concurrency from the plugin's own view: wrap its run.
    const p = await resolvePipeline(file);
    const def = p.stages.get('numbers')!.def;
    const run = def.items!.run;
    def.items!.run = async (ctx) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        return await run(ctx);
      } finally {
        inFlight--;
      }
    };
    const store = Store.open(join(dir, 'cache'));
    const { runPipeline } = await import('../../src/engine/scheduler.ts');
    await runPipeline(p, store, bus, { capacity: { cpu: 4 } });
    await store.close();
    def.items!.run = run;
    expect(maxInFlight).toBe(2);
  });

  it('--only, --from, --until, --force and --dry-run select what runs', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const cache = join(dir, 'cache');
    const dry = await runInProcess(file, cache, { dryRun: true });
    expect(dry.summary.status).toBe('planned');
    expect(dry.events.filter((e) => e.type === 'stage-planned').map((e) => (e as { action: string }).action)).toEqual(['run', 'run', 'run', 'run']);
    expect(executed(marker)).toEqual([]);

    const until = await runInProcess(file, cache, { until: 'total' });
    expect(Object.keys(until.summary.stages).sort()).toEqual(['numbers', 'total']);
    const only = await runInProcess(file, cache, { only: ['total2'] });
    expect(only.summary.status).toBe('failed');
    expect(only.summary.stages.constant!.error).toMatch(/not cached and was not selected/);
    const from = await runInProcess(file, cache, { from: 'constant' });
    expect(from.summary.stages).toEqual({ constant: expect.objectContaining({ status: 'ran' }), total2: expect.objectContaining({ status: 'ran' }) });
    writeFileSync(marker, '');
    const forced = await runInProcess(file, cache, { force: ['total'] });
    expect(forced.summary.stages.total!.status).toBe('ran');
    expect(executed(marker)).toEqual(['total']);
    const explain = await runInProcess(file, cache, { dryRun: true, sets: ['stages.numbers.with.factor=3'] });
    const planned = explain.events.filter((e) => e.type === 'stage-planned') as Array<{ stage: string; action: string; reasons: string[] }>;
    expect(planned.find((e) => e.stage === 'numbers')!.reasons).toEqual(['param with.factor: 2 → 3']);
    expect(planned.find((e) => e.stage === 'total')!.reasons[0]).toMatch(/upstream "numbers" must run first/);
    expect(planned.find((e) => e.stage === 'total2')!.action).toBe('cached');
  });

  it('a failure stops dependants; --keep-going still runs independent stages', async () => {
    const dir = tempDir();
    const marker = join(dir, 'marker');
    const file = chainPipeline(dir, marker);
    const broken = ['stages.numbers.with.failOn=3', 'stages.numbers.with.delayMs=30'];
    const failed = await runInProcess(file, join(dir, 'c1'), { sets: broken, keepGoing: true });
    expect(failed.summary.status).toBe('failed');
    expect(failed.summary.stages.numbers!.error).toBe('item "n00003": item 3 is broken on purpose');
    expect(failed.summary.stages.total!.status).toBe('skipped');
    expect(failed.summary.stages.total2!.status).toBe('ran');
  });

  it('on_error: skip records the bad item and finishes the stage', async () => {
    const dir = tempDir();
    const file = chainPipeline(dir, join(dir, 'marker'));
    const { summary, events } = await runInProcess(file, join(dir, 'c'), { sets: ['stages.numbers.with.failOn=2', 'stages.numbers.with.on_error=skip'] });
    expect(summary.status).toBe('succeeded');
    expect(events.find((e) => e.type === 'item-failed')).toMatchObject({ item: 'n00002', skipped: true });
    const store = Store.open(join(dir, 'c'));
    const rec = store.getStage(summary.stages.numbers!.key!)!;
    expect(rec.items!.skipped).toEqual([{ id: 'n00002', error: 'item 2 is broken on purpose' }]);
    expect((rec.outputs.numbers!.value as { items: unknown[] }).items).toHaveLength(5);
    await store.close();
  });

  it('is deterministic: a fresh cache reproduces the same output hashes and random draws', async () => {
    const dir = tempDir();
    const file = chainPipeline(dir, join(dir, 'marker'));
    await runInProcess(file, join(dir, 'c1'));
    const lock1 = readFileSync(join(dir, 'chain.lock.yaml'), 'utf8');
    await runInProcess(file, join(dir, 'c2'));
    expect(readFileSync(join(dir, 'chain.lock.yaml'), 'utf8')).toBe(lock1);
    const seed3 = readLockfile(file)!.stages.numbers!;
    const reseeded = await runInProcess(file, join(dir, 'c3'), { sets: ['seed=4'] });
    expect(reseeded.summary.stages.numbers!.key).not.toBe(seed3.key);
    expect(readLockfile(file)!.stages.numbers!.outputs.numbers).not.toBe(seed3.outputs.numbers);
  });

  it('status: fresh, stale with the reason, missing; --check passes unchanged and fails on drift', async () => {
    const dir = tempDir();
    const file = chainPipeline(dir, join(dir, 'marker'));
    const cache = join(dir, 'cache');
    const status = async (sets: string[] = [], cacheDir = cache) => {
      const p = await resolvePipeline(file, { sets });
      const store = Store.open(cacheDir);
      try {
        const plan = await planPipeline(p, store, readLockfile(file), new EventBus());
        return { plan, drift: lockDrift(p, plan, readLockfile(file)) };
      } finally {
        await store.close();
      }
    };
    const before = await status();
    expect([...before.plan.values()].map((s) => s.state)).toEqual(['missing', 'stale', 'missing', 'stale']);
    expect(before.drift[0]).toMatch(/no lockfile/);

    await runInProcess(file, cache);
    const after = await status();
    expect([...after.plan.values()].every((s) => s.state === 'fresh' && s.lock === 'match')).toBe(true);
    expect(after.drift).toEqual([]);

    // A clean checkout (empty cache) still verifies against the lockfile alone.
    const clean = await status([], join(dir, 'empty-cache'));
    expect(clean.drift).toEqual([]);
    expect(clean.plan.get('total')!.state).toBe('missing');

    const drifted = await status(['stages.numbers.with.factor=4']);
    expect(drifted.plan.get('numbers')).toMatchObject({ state: 'stale', reasons: ['param with.factor: 2 → 4'], lock: 'drift' });
    expect(drifted.drift).toEqual([
      'numbers: differs from the lockfile: param with.factor: 2 → 4',
      'total: cannot be checked because an upstream stage drifted',
    ]);
  });

  it('rejects a second run on the same cache while one holds it', async () => {
    const dir = tempDir();
    const file = chainPipeline(dir, join(dir, 'marker'), '');
    const cache = join(dir, 'cache');
    const slow = runInProcess(file, cache, { sets: ['stages.numbers.with.delayMs=60'] });
    await new Promise((r) => setTimeout(r, 100));
    await expect(runInProcess(file, cache)).rejects.toThrow(/is in use by another voco run \(pid \d+/);
    const waited = runInProcess(file, cache, { wait: true });
    expect((await slow).summary.status).toBe('succeeded');
    expect((await waited).summary.status).toBe('succeeded');
  });
});

describe('stage environment', () => {
  it('enters the key and the run record: a new backend re-runs the stage', async () => {
    const dir = tempDir();
    const cache = join(dir, 'cache');
    const file = writePipeline(dir, 'p.yaml', 'version: 1\nname: env\nbackend: cpu\nstages:\n  a:\n    uses: {{stages}}/backend-param.ts\n');
    expect((await runInProcess(file, cache)).summary.stages['a']!.status).toBe('ran');
    expect((await runInProcess(file, cache)).summary.stages['a']!.status).toBe('cached');
    const other = await runInProcess(file, cache, { backend: 'tensorflow' });
    expect(other.summary.stages['a']!.status).toBe('ran');
    const store = Store.open(cache);
    try {
      const runs = store.listRuns();
      expect(runs).toHaveLength(3);
      expect(runs[0]!.stages['a']!.environment).toEqual({ backend: 'cpu' });
      expect(runs[2]!.stages['a']!.environment).toEqual({ backend: 'tensorflow' });
    } finally {
      await store.close();
    }
  });
});
