import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventBus } from '../src/engine/events.ts';
import { resolvePipeline } from '../src/engine/resolve.ts';
import { runPipeline } from '../src/engine/scheduler.ts';
import type { BlobRef } from '../src/engine/stage.ts';
import { Store } from '../src/store/store.ts';
import { decodeVolume, readEncodedInfo } from '../src/volume/codec.ts';
import type { BenchRow } from './table.ts';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
/** MONAI's PersistentDataset entry for one VoCo v1 volume (shared/spec/BASELINES.md). */
const MONAI_BYTES = 56_627_659;
const MONAI_TORCH_LOAD_MS = 35;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * The VoCo v1 data path on the real CTs in data/ct: preprocess throughput on this machine's
 * cores, bytes per cached volume, and how fast a cached volume reads back — against reading the
 * same volume as raw float32 from disk in the same run (what an uncompressed cache such as
 * MONAI's PersistentDataset costs at best; torch.load adds unpickling on top).
 */
export async function benchVolumes(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'voco-bench-vol-'));
  const cache = join(dir, 'cache');
  const p = await resolvePipeline(join(REPO, 'pipelines', 'demo.yaml'));
  const store = Store.open(cache);
  const rows: BenchRow[] = [];
  try {
    const t0 = performance.now();
    const summary = await runPipeline(p, store, new EventBus(), { until: 'preprocess' });
    const preprocessMs = performance.now() - t0;
    if (summary.status !== 'succeeded') throw new Error(`preprocess failed: ${JSON.stringify(summary.stages)}`);
    const record = store.getStage(summary.stages.preprocess!.key!)!;
    const items = (record.outputs.volumes!.value as { items: Array<{ id: string; output: { image: BlobRef } }> }).items;
    rows.push({
      bench: 'volumes',
      case: `preprocess, VoCo v1 chain, ${items.length} CTs, ${p.stages.get('preprocess')!.resources.cpu} workers`,
      value: items.length / (preprocessMs / 1000),
      unit: 'volumes/s',
      note: `${(preprocessMs / items.length).toFixed(0)} ms per volume (MONAI build: 85–300 ms, BASELINES.md)`,
    });
    for (const item of items) {
      const bytes = await store.getBlob(item.output.image);
      const info = readEncodedInfo(bytes);
      const floatBytes = info.voxels * 4;
      const rawFile = join(dir, `${item.id}.f32`);
      const decodedOnce = decodeVolume(bytes);
      writeFileSync(rawFile, Buffer.from(decodedOnce.data.buffer, decodedOnce.data.byteOffset, decodedOnce.data.byteLength));
      const raw: number[] = [];
      const ours: number[] = [];
      const reuse = new Float32Array(info.voxels);
      for (let i = 0; i < 7; i++) {
        let t = performance.now();
        const buf = readFileSync(rawFile);
        new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
        raw.push(performance.now() - t);
        t = performance.now();
        decodeVolume(await store.getBlob(item.output.image, { verify: false }), { out: reuse });
        ours.push(performance.now() - t);
      }
      const readMs = median(ours);
      const rawMs = median(raw);
      rows.push({
        bench: 'volumes',
        case: `${item.id}: bytes per cached volume`,
        value: bytes.byteLength,
        unit: 'B',
        baseline: MONAI_BYTES,
        note: `goal ≤ 0.25× MONAI's 56.6 MB: ${bytes.byteLength <= 0.25 * MONAI_BYTES ? 'met' : 'NOT met'}; max error ${info.maxAbsError.toExponential(2)}`,
      });
      rows.push({
        bench: 'volumes',
        case: `${item.id}: read + decode (${(floatBytes / 1e6).toFixed(1)} MB float32)`,
        value: readMs,
        unit: 'ms',
        baseline: rawMs,
        note: `${(floatBytes / 1e9 / (readMs / 1000)).toFixed(2)} GB/s; baseline = raw float32 file read ${rawMs.toFixed(1)} ms; ${(MONAI_TORCH_LOAD_MS / readMs).toFixed(1)}× faster than torch.load's 35 ms (BASELINES.md)`,
      });
    }
  } finally {
    await store.close();
  }
  return rows;
}
