import type { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { currentStageRecord, findVolumeItem, volumeItems } from '../engine/stage-result.ts';
import type { BlobRef } from '../engine/stage.ts';
import { cacheDirFor, withPipelineOptions, loadPipeline, openStore, reportError, type PipelineCliOptions } from './common.ts';

export function registerPreview(program: Command): void {
  withPipelineOptions(program
    .command('preview')
    .description('write PNG slices (axial, coronal, sagittal, label overlay) of cached volumes')
    .argument('<pipeline>', 'pipeline YAML file')
    .argument('<stage>', 'a stage with a volumes output')
    .argument('[item]', 'item id (default: every item)')
    .option('-o, --output <dir>', 'folder for the PNG files', 'preview')
    .option('--no-label', 'leave out the label overlay'))
    .action(async (file: string, stage: string, item: string | undefined, opts: PipelineCliOptions & { output: string; label: boolean }) => {
      try {
        const p = await loadPipeline(file, opts);
        const store = openStore(cacheDirFor(p, opts));
        try {
          // Loaded on use: other commands should not pay for the codec and renderer.
          const { decodeVolume } = await import('../volume/codec.ts');
          const { renderSlices } = await import('../volume/preview.ts');
          const record = await currentStageRecord(p, store, stage);
          const items = item === undefined ? volumeItems(record) : [findVolumeItem(record, item)];
          const outDir = resolve(opts.output);
          mkdirSync(outDir, { recursive: true });
          for (const it of items) {
            const image = decodeVolume(await store.getBlob(it.output.image as BlobRef));
            const labelRef = opts.label ? (it.output.label as BlobRef | undefined) : undefined;
            const label = labelRef ? decodeVolume(await store.getBlob(labelRef)) : undefined;
            const pngs = renderSlices(image, { label });
            const stem = it.id.replace(/\.(nii(\.gz)?|hdr(\.gz)?)$/, '').replace(/[^A-Za-z0-9._-]+/g, '_');
            for (const [view, bytes] of Object.entries(pngs)) {
              const path = join(outDir, `${stem}_${view}.png`);
              writeFileSync(path, bytes);
              process.stderr.write(`wrote ${path}\n`);
            }
          }
        } finally {
          await store.close();
        }
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
