import { EventBus } from './events.ts';
import { readLockfile } from './lockfile.ts';
import { planPipeline } from './plan.ts';
import type { ResolvedPipeline } from './resolve.ts';
import type { Store, StageRecord } from '../store/store.ts';

/** The cached result of a stage for the pipeline as it is now; a clear error when there is none. */
export async function currentStageRecord(p: ResolvedPipeline, store: Store, stage: string): Promise<StageRecord> {
  if (!p.stages.has(stage)) throw new Error(`no stage "${stage}" in ${p.file} (stages: ${p.order.join(', ')})`);
  const plan = await planPipeline(p, store, readLockfile(p.file), new EventBus());
  const s = plan.get(stage)!;
  const record = s.key ? store.getStage(s.key) : undefined;
  if (!record) {
    throw new Error(`stage "${stage}" has no cached result for the pipeline as it is now (${s.state}: ${s.reasons.join('; ') || 'not run'}); run \`voco run ${p.file} --until ${stage}\` first`);
  }
  return record;
}

export interface VolumeItem {
  id: string;
  output: Record<string, unknown>;
}

/** The volume items of a stage's `volumes` output. */
export function volumeItems(record: StageRecord): VolumeItem[] {
  const artifact = Object.values(record.outputs).find((a) => a.type === 'volumes');
  if (!artifact) throw new Error(`stage "${record.stage}" (${record.components.kind}) has no volumes output`);
  const value = artifact.value as { items: Array<{ id: string; output?: Record<string, unknown> } & Record<string, unknown>> };
  // preprocess lists { id, output }; cache lists the volumes flat.
  return value.items.map((i) => ({ id: i.id, output: (i.output ?? i) as Record<string, unknown> }));
}

export function findVolumeItem(record: StageRecord, id: string | undefined): VolumeItem {
  const items = volumeItems(record);
  if (items.length === 0) throw new Error(`stage "${record.stage}" holds no volumes`);
  if (id === undefined) return items[0]!;
  const hit = items.find((i) => i.id === id) ?? items.find((i) => i.id.endsWith(id));
  if (!hit) throw new Error(`no item "${id}" in stage "${record.stage}"; items: ${items.map((i) => i.id).join(', ')}`);
  return hit;
}
