import type { Command } from 'commander';
import { resolve } from 'node:path';
import { currentStageRecord, findVolumeItem } from '../engine/stage-result.ts';
import type { BlobRef } from '../engine/stage.ts';
import { cacheDirFor, withPipelineOptions, loadPipeline, openStore, reportError, type PipelineCliOptions } from './common.ts';

export function registerCacheGet(cache: Command): void {
  withPipelineOptions(cache
    .command('get')
    .description('write a cached volume (or its label map) back as NIfTI, exactly as training sees it')
    .argument('<pipeline>', 'pipeline YAML file')
    .argument('<stage>', 'a stage with a volumes output (e.g. preprocess or cache)')
    .argument('<item>', 'item id (e.g. the image path relative to the dataset)')
    .requiredOption('-o, --output <file.nii.gz>', 'where to write the NIfTI file')
    .option('--label', 'write the label map instead of the image'))
    .action(async (file: string, stage: string, item: string, opts: PipelineCliOptions & { output: string; label?: boolean }) => {
      try {
        const p = await loadPipeline(file, opts);
        const store = openStore(cacheDirFor(p, opts));
        try {
          const { decodeVolume } = await import('../volume/codec.ts');
          const { writeNifti } = await import('../volume/nifti-write.ts');
          const found = findVolumeItem(await currentStageRecord(p, store, stage), item);
          const ref = (opts.label ? found.output.label : found.output.image) as BlobRef | undefined;
          if (!ref) throw new Error(`item "${found.id}" has no ${opts.label ? 'label map' : 'image'}`);
          const volume = decodeVolume(await store.getBlob(ref));
          await writeNifti(resolve(opts.output), volume, { description: `voco ${stage} ${found.id}` });
          process.stderr.write(`wrote ${opts.output}: ${volume.shape.slice(1).join('×')} ${opts.label ? 'label map' : 'image'} of ${found.id}\n`);
        } finally {
          await store.close();
        }
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
