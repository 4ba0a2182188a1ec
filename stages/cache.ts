import { defineStage } from '../src/engine/stage.ts';
import { readSchemaFile } from '../src/engine/schema.ts';
import { createDecodeBuffer, decodeVolume, readEncodedInfo } from '../src/volume/codec.ts';
import type { JsonValue } from '../src/util/hash.ts';
import type { CachedVolume } from './preprocess.ts';

interface CacheParams {
  verify: boolean;
  min_volumes: number;
}

/**
 * The persistent volume cache that training reads (voco's PersistentDataset). The volumes
 * themselves were stored by `preprocess`; this stage checks every record decodes and matches its
 * checksums, measures how fast they read back, and records per-volume and dataset statistics.
 */
export default defineStage<CacheParams>({
  kind: 'cache',
  version: 1,
  description: 'verify and index preprocessed volumes for training; dataset report',
  paramsSchema: readSchemaFile(new URL('../schemas/stages/cache.schema.json', import.meta.url)),
  inputs: { volumes: 'volumes' },
  outputs: { volumes: 'volumes', report: 'report' },
  async run(ctx) {
    const items = (ctx.inputs.volumes!.value as { items: Array<{ id: string; output: Omit<CachedVolume, 'id'> }> }).items;
    if (items.length < ctx.params.min_volumes) {
      throw new Error(`only ${items.length} volumes were preprocessed; min_volumes is ${ctx.params.min_volumes}`);
    }
    let imageBytes = 0;
    let labelBytes = 0;
    let floatBytes = 0;
    let decodeMs = 0;
    let maxAbsError = 0;
    const volumes: JsonValue[] = [];
    // One reused output: a fresh 57 MB array per volume would cost more in page faults than the decode.
    let buffer: Float32Array | undefined;
    for (const [i, { id, output }] of items.entries()) {
      const bytes = await ctx.store.getBlob(output.image);
      const t0 = performance.now();
      const info = readEncodedInfo(bytes, { verify: ctx.params.verify });
      if (ctx.params.verify) {
        if (info.storage === 'quantized' && info.voxels > 0) {
          if (buffer?.length !== info.voxels) buffer = createDecodeBuffer(info.voxels, 'float32');
          decodeVolume(bytes, { verify: false, out: buffer });
        } else {
          decodeVolume(bytes, { verify: false });
        }
      }
      decodeMs += performance.now() - t0;
      if (output.label) {
        const label = await ctx.store.getBlob(output.label);
        if (ctx.params.verify) decodeVolume(label);
        labelBytes += label.byteLength;
      }
      imageBytes += bytes.byteLength;
      floatBytes += info.voxels * 4;
      maxAbsError = Math.max(maxAbsError, info.maxAbsError);
      volumes.push({ id, ...output } as unknown as JsonValue);
      ctx.progress(i + 1, items.length, `verified ${i + 1}/${items.length}`);
    }
    const report = {
      volumes: items.length,
      with_labels: items.filter((i) => i.output.label).length,
      image_bytes: imageBytes,
      label_bytes: labelBytes,
      image_float32_bytes: floatBytes,
      image_ratio_vs_float32: floatBytes ? imageBytes / floatBytes : 0,
      max_abs_error: maxAbsError,
      verified: ctx.params.verify,
    };
    // Timing is logged, not part of the report: outputs must be the same bytes on every run.
    if (ctx.params.verify && decodeMs > 0) {
      ctx.log.info(`decoded ${(floatBytes / 1e9).toFixed(2)} GB of float32 in ${decodeMs.toFixed(0)} ms (${(floatBytes / 1e9 / (decodeMs / 1000)).toFixed(2)} GB/s)`);
    }
    ctx.log.info(
      `${report.volumes} volumes: images ${(imageBytes / 2 ** 20).toFixed(1)} MiB (${(report.image_ratio_vs_float32 * 100).toFixed(1)}% of float32, max error ${maxAbsError.toExponential(2)}), labels ${(labelBytes / 2 ** 20).toFixed(2)} MiB`,
    );
    return { volumes: { items: volumes }, report };
  },
});
