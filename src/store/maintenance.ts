import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readLockfile } from '../engine/lockfile.ts';
import { CorruptRecordError, type Store, type StageRecord } from './store.ts';

/** Every blob hash referenced anywhere inside a JSON value. */
export function blobRefsIn(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const v of value) blobRefsIn(v, out);
  else if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if (typeof obj.$blob === 'string') out.add(obj.$blob);
    for (const v of Object.values(obj)) blobRefsIn(v, out);
  }
  return out;
}

export interface GcPlan {
  liveStages: Set<string>;
  deadStages: StageRecord[];
  deadItems: string[];
  deadBlobs: Array<{ hash: string; size: number }>;
  deadCheckpoints: string[];
  bytes: number;
}

/**
 * What gc would delete. Kept: stage records referenced by the lockfile beside any pipeline that
 * has used this cache, their items and blobs; and partial work (items of unfinished stages,
 * checkpoints) younger than `keepPartialMs`, so an interrupted run can still resume.
 */
export function planGc(store: Store, keepPartialMs: number): GcPlan {
  const liveStages = new Set<string>();
  for (const { value } of store.pipelines.getRange()) {
    if (!existsSync(value.file)) continue;
    try {
      const lock = readLockfile(value.file);
      for (const entry of Object.values(lock?.stages ?? {})) liveStages.add(entry.key);
    } catch {
      // An unreadable lockfile protects nothing.
    }
  }
  const liveItems = new Set<string>();
  const liveBlobs = new Set<string>();
  const deadStages: StageRecord[] = [];
  const referencedItems = new Set<string>();
  for (const { value: rec } of store.stages.getRange()) {
    for (const k of rec.items?.keys ?? []) referencedItems.add(k);
    if (liveStages.has(rec.key)) {
      for (const k of rec.items?.keys ?? []) liveItems.add(k);
      blobRefsIn(rec.outputs, liveBlobs);
    } else deadStages.push(rec);
  }
  const now = Date.now();
  const deadItems: string[] = [];
  for (const { value: item } of store.items.getRange()) {
    const partial = !referencedItems.has(item.key) && now - Date.parse(item.createdAt) < keepPartialMs;
    if (liveItems.has(item.key) || partial) blobRefsIn(item.output, liveBlobs);
    else deadItems.push(item.key);
  }
  const deadBlobs: GcPlan['deadBlobs'] = [];
  let bytes = 0;
  for (const [hash, size] of store.listBlobs()) {
    if (!liveBlobs.has(hash)) {
      deadBlobs.push({ hash, size });
      bytes += size;
    }
  }
  const deadCheckpoints: string[] = [];
  const cpDir = join(store.root, 'checkpoints');
  for (const name of existsSync(cpDir) ? readdirSync(cpDir) : []) {
    if (now - statSync(join(cpDir, name)).mtimeMs >= keepPartialMs) deadCheckpoints.push(join(cpDir, name));
  }
  return { liveStages, deadStages, deadItems, deadBlobs, deadCheckpoints, bytes };
}

export async function applyGc(store: Store, plan: GcPlan): Promise<void> {
  for (const rec of plan.deadStages) await store.removeStage(rec.key);
  for (const key of plan.deadItems) await store.removeItem(key);
  for (const { hash } of plan.deadBlobs) await store.deleteBlob(hash);
  for (const dir of plan.deadCheckpoints) rmSync(dir, { recursive: true, force: true });
}

export interface VerifyReport {
  blobsChecked: number;
  corruptBlobs: string[];
  missingBlobs: Array<{ hash: string; referencedBy: string }>;
  missingItems: Array<{ item: string; stage: string }>;
}

/** Recomputes every blob's checksum and checks that every record's references exist. */
export async function verifyStore(store: Store, opts: { repair?: boolean } = {}): Promise<VerifyReport> {
  const report: VerifyReport = { blobsChecked: 0, corruptBlobs: [], missingBlobs: [], missingItems: [] };
  const blobs = store.listBlobs();
  for (const hash of blobs.keys()) {
    report.blobsChecked++;
    try {
      await store.getBlob(hash, { verify: true });
    } catch (e) {
      if (e instanceof CorruptRecordError) report.corruptBlobs.push(hash);
      else throw e;
    }
  }
  const bad = new Set(report.corruptBlobs);
  const badStages: string[] = [];
  const badItems: string[] = [];
  for (const { value: rec } of store.stages.getRange()) {
    let broken = false;
    for (const ref of blobRefsIn(rec.outputs)) {
      if (!blobs.has(ref) || bad.has(ref)) {
        if (!blobs.has(ref)) report.missingBlobs.push({ hash: ref, referencedBy: `stage ${rec.stage} (${rec.key})` });
        broken = true;
      }
    }
    for (const k of rec.items?.keys ?? []) {
      if (!store.getItem(k)) {
        report.missingItems.push({ item: k, stage: rec.stage });
        broken = true;
      }
    }
    if (broken) badStages.push(rec.key);
  }
  for (const { value: item } of store.items.getRange()) {
    for (const ref of blobRefsIn(item.output)) {
      if (!blobs.has(ref) || bad.has(ref)) {
        if (!blobs.has(ref)) report.missingBlobs.push({ hash: ref, referencedBy: `item ${item.id} of ${item.stage}` });
        badItems.push(item.key);
      }
    }
  }
  if (opts.repair) {
    // Dropping a damaged record makes the next run recompute it instead of reading bad data.
    for (const hash of report.corruptBlobs) await store.deleteBlob(hash);
    for (const key of badStages) await store.removeStage(key);
    for (const key of badItems) await store.removeItem(key);
  }
  return report;
}
