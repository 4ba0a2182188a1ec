import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { withJs } from './decoder-mode.ts';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventBus } from '../src/engine/events.ts';
import { resolvePipeline } from '../src/engine/resolve.ts';
import { runPipeline } from '../src/engine/scheduler.ts';
import type { BlobRef } from '../src/engine/stage.ts';
import { Store } from '../src/store/store.ts';
import { createDecodeBuffer, decodeVolume, decodeVolumeParallel, readEncodedInfo, wasmStatus } from '../src/volume/codec.ts';
import { startDecodeWorkers, stopDecodeWorkers } from '../src/volume/codec-wasm.ts';
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
  const wasm = wasmStatus().enabled;
  if (wasm) await startDecodeWorkers(1);
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
      const ours2: number[] = [];
      // The fast path: the WebAssembly kernel decoding in place into a reused decode buffer.
      const reuse = wasm && info.codec === 'pbp32' ? createDecodeBuffer(info.voxels, 'float32') : new Float32Array(info.voxels);
      // Separate loops: the 57 MB raw reads leave garbage whose collection would land in the others.
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        const buf = readFileSync(rawFile);
        new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
        raw.push(performance.now() - t);
      }
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        decodeVolume(await store.getBlob(item.output.image, { verify: false }), { out: reuse });
        ours.push(performance.now() - t);
      }
      for (let i = 0; i < 7 && reuse.buffer instanceof SharedArrayBuffer; i++) {
        const t = performance.now();
        await decodeVolumeParallel(await store.getBlob(item.output.image, { verify: false }), { out: reuse, workers: 2 });
        ours2.push(performance.now() - t);
      }
      const readMs = median(ours);
      const rawMs = median(raw);
      if (item === items[0]) {
        // Decoder speed alone (record already in memory, checksum included): JS decoder vs the kernel.
        const js = timeMedian(() => withJs(() => decodeVolume(bytes, { out: reuse })));
        const kernel = timeMedian(() => decodeVolume(bytes, { out: reuse }));
        rows.push({
          bench: 'volumes',
          case: `decode speed, ${item.id} (checksum included)`,
          value: kernel,
          unit: 'ms',
          baseline: js,
          note: `baseline = JavaScript decoder ${js.toFixed(1)} ms; decoder ${wasm ? 'WebAssembly' : 'JavaScript (kernel unavailable)'}; read + decode on 2 threads ${ours2.length ? `${median(ours2).toFixed(1)} ms` : 'n/a'}`,
        });
      }
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
        note:
          `${(floatBytes / 1e9 / (readMs / 1000)).toFixed(2)} GB/s; baseline = raw float32 file read ${rawMs.toFixed(1)} ms; ${(MONAI_TORCH_LOAD_MS / readMs).toFixed(1)}× faster than torch.load's 35 ms (BASELINES.md)` +
          (ours2.length ? `; on 2 threads ${median(ours2).toFixed(1)} ms (${(MONAI_TORCH_LOAD_MS / median(ours2)).toFixed(1)}×)` : ''),
      });
    }
  } finally {
    await store.close();
    await stopDecodeWorkers();
  }
  return rows;
}

function timeMedian(fn: () => void, reps = 7): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  return median(ts);
}

