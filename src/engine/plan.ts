import { computeComponents } from './execute-stage.ts';
import type { EventBus } from './events.ts';
import { KEY_ALGORITHM, diffComponents, stageKey } from './keys.ts';
import { componentsFromLock, type Lockfile } from './lockfile.ts';
import type { ResolvedPipeline } from './resolve.ts';
import type { Store } from '../store/store.ts';

export type StageState =
  /** A cached result exists for the current key. */
  | 'fresh'
  /** The current key differs from what was last run. */
  | 'stale'
  /** Never run, or its result is not in this cache. */
  | 'missing';

export interface StageStatus {
  stage: string;
  state: StageState;
  /** Current key; absent when an upstream stage must run first. */
  key?: string;
  reasons: string[];
  /** Lockfile agreement: 'match', 'drift' (lock has another key), 'absent' (not in lock), 'unknown'. */
  lock: 'match' | 'drift' | 'absent' | 'unknown';
  /** When the lockfile drifts: what differs between its entry and the current computation. */
  lockReasons?: string[];
  /** Output hashes, when known (from the cache or the lockfile). */
  outputs?: Record<string, string>;
}

/**
 * Computes every stage's key and state without running anything. Upstream output hashes come
 * from the cache, or from the lockfile when the cache lacks them (a clean CI checkout).
 */
export async function planPipeline(
  p: ResolvedPipeline,
  store: Store,
  lock: Lockfile | undefined,
  bus: EventBus,
  force: ReadonlySet<string> = new Set(),
): Promise<Map<string, StageStatus>> {
  const out = new Map<string, StageStatus>();
  for (const name of p.order) {
    const st = p.stages.get(name)!;
    const lockEntry = lock?.stages[name];
    const inputHashes: Record<string, string> = {};
    const blocked: string[] = [];
    for (const [port, ref] of Object.entries(st.inputs)) {
      const up = out.get(ref.stage);
      const hash = up?.outputs?.[ref.port];
      if (hash && !force.has(ref.stage)) inputHashes[port] = hash;
      else blocked.push(ref.stage);
    }
    if (blocked.length > 0) {
      const ups = [...new Set(blocked)];
      out.set(name, {
        stage: name,
        state: 'stale',
        reasons: ups.map((u) => `upstream "${u}" must run first (this stage may stay cached if its outputs come out identical)`),
        lock: lockEntry ? 'unknown' : 'absent',
      });
      continue;
    }
    const components = await computeComponents(p, st, inputHashes, store, bus);
    const key = stageKey(components);
    const record = store.getStage(key);
    const lockState: StageStatus['lock'] = !lockEntry ? 'absent' : lockEntry.key === key ? 'match' : 'drift';
    const lockReasons =
      lockState === 'drift' ? diffComponents(componentsFromLock(lockEntry!, name, lock!.seed, KEY_ALGORITHM), components) : undefined;
    if (force.has(name)) {
      out.set(name, { stage: name, state: 'stale', key, reasons: ['forced with --force'], lock: lockState, lockReasons });
      continue;
    }
    if (record) {
      const outputs = Object.fromEntries(Object.entries(record.outputs).map(([k, a]) => [k, a.hash]));
      out.set(name, { stage: name, state: 'fresh', key, reasons: [], lock: lockState, lockReasons, outputs });
      continue;
    }
    if (lockEntry && lockEntry.key === key) {
      out.set(name, { stage: name, state: 'missing', key, reasons: ['matches the lockfile, but its result is not in this cache'], lock: lockState, outputs: lockEntry.outputs });
      continue;
    }
    const previous =
      store.latestStageRecord(p.file, name)?.components ??
      (lockEntry ? componentsFromLock(lockEntry, name, lock!.seed, KEY_ALGORITHM) : undefined);
    if (!previous) {
      out.set(name, { stage: name, state: 'missing', key, reasons: ['never run'], lock: lockState, lockReasons });
      continue;
    }
    const reasons = diffComponents(previous, components);
    out.set(name, {
      stage: name,
      state: 'stale',
      key,
      reasons: reasons.length > 0 ? reasons : ['its key changed'],
      lock: lockState,
      lockReasons,
    });
  }
  return out;
}

/** Reasons the lockfile disagrees with a fresh computation of keys; empty when it agrees. */
export function lockDrift(p: ResolvedPipeline, plan: Map<string, StageStatus>, lock: Lockfile | undefined): string[] {
  if (!lock) return [`no lockfile for ${p.file}: run the pipeline to create it`];
  const problems: string[] = [];
  if (lock.seed !== p.seed) problems.push(`seed: lockfile has ${lock.seed}, pipeline has ${p.seed}`);
  for (const name of p.order) {
    const s = plan.get(name)!;
    const entry = lock.stages[name];
    if (!entry) problems.push(`${name}: not in the lockfile`);
    else if (s.lock === 'drift') {
      const why = s.lockReasons?.length ? s.lockReasons : ['its key changed'];
      problems.push(`${name}: differs from the lockfile: ${why.join('; ')}`);
    } else if (s.lock === 'unknown') problems.push(`${name}: cannot be checked because an upstream stage drifted`);
  }
  for (const name of Object.keys(lock.stages)) {
    if (!p.stages.has(name)) problems.push(`${name}: in the lockfile but no longer in the pipeline`);
  }
  return problems;
}
