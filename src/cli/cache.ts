import type { Command } from 'commander';
import { planGc, applyGc, blobRefsIn, verifyStore } from '../store/maintenance.ts';
import { shortHash } from '../util/hash.ts';
import { EXIT, cacheDirFor, openStore, reportError } from './common.ts';
import { CacheBusyError } from '../engine/scheduler.ts';
import type { Store } from '../store/store.ts';
import { registerCacheGet } from './cache-get.ts';

function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function parseAge(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhd])$/.exec(text.trim());
  if (!m) throw new Error(`--keep-partial expects a duration such as 7d, 12h, 30m (got ${text})`);
  return Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

async function withStore(opts: { cache?: string }, fn: (store: Store) => Promise<void>): Promise<void> {
  try {
    const store = openStore(cacheDirFor(undefined, opts));
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  } catch (e) {
    process.exitCode = reportError(e);
  }
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect and maintain the cache');
  registerCacheGet(cache);

  cache
    .command('ls')
    .description('list cached stage results')
    .option('--cache <dir>', 'cache directory')
    .action((opts: { cache?: string }) =>
      withStore(opts, async (store) => {
        const blobs = store.listBlobs();
        const rows = [...store.stages.getRange()].map(({ value }) => value).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
        if (rows.length === 0) process.stdout.write('the cache holds no stage results\n');
        for (const r of rows) {
          const refs = new Set<string>();
          blobRefsIn(r.outputs, refs);
          for (const k of r.items?.keys ?? []) blobRefsIn(store.getItem(k)?.output, refs);
          const size = [...refs].reduce((s, h) => s + (blobs.get(h) ?? 0), 0);
          const items = r.items ? `${r.items.keys.length} items` : '';
          process.stdout.write(`${shortHash(r.key)}  ${r.pipelineName}/${r.stage.padEnd(16)} ${r.components.kind.padEnd(14)} ${r.createdAt}  ${items.padStart(11)}  ${fmtBytes(size).padStart(10)}\n`);
        }
      }),
    );

  cache
    .command('du')
    .description('disk usage of the cache')
    .option('--cache <dir>', 'cache directory')
    .action((opts: { cache?: string }) =>
      withStore(opts, async (store) => {
        const blobs = store.listBlobs();
        const blobBytes = [...blobs.values()].reduce((a, b) => a + b, 0);
        const lmdb = store.lmdbBytes();
        const count = (db: { getKeysCount(): number }) => db.getKeysCount();
        process.stdout.write(
          `${store.root}\n  records (LMDB)  ${fmtBytes(lmdb).padStart(10)}  ${count(store.stages)} stages, ${count(store.items)} items, ${count(store.runs)} runs\n` +
            `  blobs           ${fmtBytes(blobBytes).padStart(10)}  ${blobs.size} files\n  total           ${fmtBytes(lmdb + blobBytes).padStart(10)}\n`,
        );
      }),
    );

  cache
    .command('gc')
    .description('delete results no lockfile references (partial work is kept for --keep-partial)')
    .option('--cache <dir>', 'cache directory')
    .option('-n, --dry-run', 'only list what would be deleted')
    .option('--keep-partial <age>', 'keep unfinished items and checkpoints younger than this', '7d')
    .action((opts: { cache?: string; dryRun?: boolean; keepPartial: string }) =>
      withStore(opts, async (store) => {
        const lock = store.tryAcquireRunLock('voco cache gc');
        if (!lock.acquired) throw new CacheBusyError(lock.holder, store.root);
        try {
          const plan = planGc(store, parseAge(opts.keepPartial));
          process.stdout.write(
            `${opts.dryRun ? 'would delete' : 'deleting'}: ${plan.deadStages.length} stage results, ${plan.deadItems.length} items, ` +
              `${plan.deadBlobs.length} blobs (${fmtBytes(plan.bytes)}), ${plan.deadCheckpoints.length} checkpoints; keeping ${plan.liveStages.size} stage results referenced by lockfiles\n`,
          );
          for (const r of plan.deadStages) process.stdout.write(`  stage ${r.pipelineName}/${r.stage} ${shortHash(r.key)} (${r.createdAt})\n`);
          if (!opts.dryRun) await applyGc(store, plan);
        } finally {
          store.releaseRunLock(lock.owner);
        }
      }),
    );

  cache
    .command('verify')
    .description('recompute every checksum and check every reference')
    .option('--cache <dir>', 'cache directory')
    .option('--repair', 'drop damaged records so the next run recomputes them')
    .action((opts: { cache?: string; repair?: boolean }) =>
      withStore(opts, async (store) => {
        const r = await verifyStore(store, { repair: opts.repair });
        const problems = r.corruptBlobs.length + r.missingBlobs.length + r.missingItems.length;
        for (const h of r.corruptBlobs) process.stdout.write(`corrupt blob ${h}\n`);
        for (const m of r.missingBlobs) process.stdout.write(`missing blob ${m.hash}, referenced by ${m.referencedBy}\n`);
        for (const m of r.missingItems) process.stdout.write(`missing item ${m.item} of stage ${m.stage}\n`);
        process.stdout.write(`${r.blobsChecked} blobs checked, ${problems} problem${problems === 1 ? '' : 's'}${opts.repair && problems ? ' (damaged records dropped)' : ''}\n`);
        if (problems > 0 && !opts.repair) process.exitCode = EXIT.failed;
      }),
    );
}
