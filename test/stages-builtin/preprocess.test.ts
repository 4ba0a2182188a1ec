import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeVolume } from '../../src/volume/codec.ts';
import { readNifti } from '../../src/volume/nifti-read.ts';
import { applyTransformChain, parseTransformChain } from '../../src/volume/transforms/index.ts';
import { Store } from '../../src/store/store.ts';
import type { BlobRef } from '../../src/engine/stage.ts';
import { REPO, runInProcess, tempDir, VOCO_BIN, writePipeline } from '../helpers.ts';

const CT = join(REPO, 'data', 'ct');
const CHAIN = [
  { orientation: 'RAS' },
  { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
  { crop_foreground: { threshold: 0.3 } },
  { resize: { spatial_size: [48, 48, 24], align_corners: true } },
];

/** A dataset folder with two image/label pairs copied from data/ct. */
function dataset(dir: string): string {
  const folder = join(dir, 'data');
  mkdirSync(folder, { recursive: true });
  copyFileSync(join(CT, 'totalseg_example_ct_sm.nii.gz'), join(folder, 'sm.nii.gz'));
  copyFileSync(join(CT, 'totalseg_example_ct_sm_seg.nii.gz'), join(folder, 'sm_seg.nii.gz'));
  copyFileSync(join(CT, 'totalseg_aorta_ct_cropped.nii.gz'), join(folder, 'aorta.nii.gz'));
  copyFileSync(join(CT, 'totalseg_aorta_ct_cropped_aorta_mask.nii.gz'), join(folder, 'aorta_seg.nii.gz'));
  return folder;
}

function pipeline(dir: string, extra = ''): string {
  return writePipeline(
    dir,
    'pre.yaml',
    `version: 1
name: pre
stages:
  preprocess:
    uses: preprocess
    with:
      dataset: { folder: data, glob: "*.nii.gz", labels: { suffix: _seg } }
      transforms: ${JSON.stringify(CHAIN)}
${extra}    resources: { cpu: 2 }
  cache:
    uses: cache
    inputs: { volumes: preprocess.volumes }
`,
  );
}

type Item = { id: string; output: { image: BlobRef; label?: BlobRef } };

async function items(cache: string, key: string): Promise<{ store: Store; items: Item[] }> {
  const store = Store.open(cache);
  const rec = store.getStage(key)!;
  return { store, items: (rec.outputs.volumes!.value as { items: Item[] }).items };
}

describe('preprocess and cache stages', () => {
  it('stores each volume within the error bound, labels exactly, and equal to the chain applied directly', async () => {
    const dir = tempDir();
    const folder = dataset(dir);
    const cache = join(dir, 'cache');
    const { summary, events } = await runInProcess(pipeline(dir), cache);
    expect(summary.status).toBe('succeeded');
    expect(events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 2, cached: 0 });
    const { store, items: list } = await items(cache, summary.stages.preprocess!.key!);
    try {
      expect(list.map((i) => i.id)).toEqual(['aorta.nii.gz', 'sm.nii.gz']);
      for (const item of list) {
        const decoded = decodeVolume(await store.getBlob(item.output.image));
        const image = (await readNifti(join(folder, item.id))).toVolume({ dtype: 'float32' });
        const label = (await readNifti(join(folder, item.id.replace('.nii.gz', '_seg.nii.gz')))).toVolume({ dtype: 'raw' });
        const direct = applyTransformChain(parseTransformChain(CHAIN), { image, label });
        expect(decoded.shape).toEqual([1, 48, 48, 24]);
        let maxErr = 0;
        for (let i = 0; i < decoded.data.length; i++) maxErr = Math.max(maxErr, Math.abs(decoded.data[i]! - direct.image.data[i]!));
        expect(maxErr).toBeLessThanOrEqual(1e-4);
        expect(decoded.affine).toEqual(direct.image.affine);
        const decodedLabel = decodeVolume(await store.getBlob(item.output.label!));
        expect(Array.from(decodedLabel.data)).toEqual(Array.from(direct.label!.data));
      }
      const report = store.getStage(summary.stages.cache!.key!)!.outputs.report!.value as Record<string, number>;
      expect(report).toMatchObject({ volumes: 2, with_labels: 2 });
      expect(report.max_abs_error).toBeLessThanOrEqual(1e-4);
      // Tiny 48×48×24 crops compress far less than real 384×384×96 volumes (see the benchmark).
      expect(report.image_ratio_vs_float32).toBeLessThan(0.5);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('re-processes exactly what changed: a new file, an edited transform; a moved dataset reuses every item', async () => {
    const dir = tempDir();
    const folder = dataset(dir);
    const cache = join(dir, 'cache');
    await runInProcess(pipeline(dir), cache);
    copyFileSync(join(CT, 'totalseg_example_ct.nii.gz'), join(folder, 'big.nii.gz'));
    // big.nii.gz has no label and labels are required by default: one clear error naming the file.
    const added = await runInProcess(pipeline(dir), cache);
    expect(added.summary.stages.preprocess!.error).toMatch(/big\.nii\.gz dataset\.labels: no label map for this image/);

    const file = pipeline(dir);
    writeFileSync(file, readFileSync(file, 'utf8').replace('labels: { suffix: _seg }', 'labels: { suffix: _seg, required: false }'));
    const run2 = await runInProcess(file, cache);
    expect(run2.events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 3, cached: 2 });

    const moved = join(dir, 'moved');
    mkdirSync(moved);
    for (const f of ['sm.nii.gz', 'sm_seg.nii.gz', 'aorta.nii.gz', 'aorta_seg.nii.gz', 'big.nii.gz']) copyFileSync(join(folder, f), join(moved, f));
    const run3 = await runInProcess(join(dir, 'pre.yaml'), cache, { sets: ['stages.preprocess.with.dataset.folder=moved'] });
    expect(run3.events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 3, cached: 3 });

    const run4 = await runInProcess(join(dir, 'pre.yaml'), cache, { sets: ['stages.preprocess.with.transforms[3].resize.spatial_size=[40,40,20]'] });
    expect(run4.events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 3, cached: 0 });
  }, 90_000);

  it('bad input: a truncated volume fails with its name, or is skipped and listed; the cache never holds it', async () => {
    const dir = tempDir();
    const folder = dataset(dir);
    const good = readFileSync(join(folder, 'sm.nii.gz'));
    writeFileSync(join(folder, 'sm.nii.gz'), good.subarray(0, good.length >> 1));
    const cache = join(dir, 'cache');
    const failed = await runInProcess(pipeline(dir), cache);
    expect(failed.summary.status).toBe('failed');
    expect(failed.summary.stages.preprocess!.error).toMatch(/item "sm\.nii\.gz": NIfTI file ".*sm\.nii\.gz": .*(truncated|ends)/i);

    const skipped = await runInProcess(pipeline(dir), cache, { sets: ['stages.preprocess.with.on_error=skip'] });
    expect(skipped.summary.status).toBe('succeeded');
    expect(skipped.events.find((e) => e.type === 'items-listed')).toMatchObject({ total: 2, cached: 1 });
    const store = Store.open(cache);
    try {
      const rec = store.getStage(skipped.summary.stages.preprocess!.key!)!;
      expect(rec.items!.skipped.map((s) => s.id)).toEqual(['sm.nii.gz']);
      expect((rec.outputs.volumes!.value as { items: Item[] }).items.map((i) => i.id)).toEqual(['aorta.nii.gz']);
      expect([...store.items.getRange()].map(({ value }) => value.id)).toEqual(['aorta.nii.gz']);
      const run = store.listRuns().find((r) => r.id === skipped.summary.runId)!;
      expect(run.stages.preprocess!.skipped).toEqual([{ id: 'sm.nii.gz', error: expect.stringMatching(/sm\.nii\.gz/) }]);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('a label map on another grid than its image is refused with both names', async () => {
    const dir = tempDir();
    const folder = dataset(dir);
    copyFileSync(join(CT, 'totalseg_aorta_ct_cropped_aorta_mask.nii.gz'), join(folder, 'sm_seg.nii.gz'));
    const { summary } = await runInProcess(pipeline(dir), join(dir, 'cache'));
    expect(summary.stages.preprocess!.error).toMatch(/sm_seg\.nii\.gz": label map is 120×126×164 but its image sm\.nii\.gz is 122×101×30/);
  }, 60_000);

  it('voco cache get writes exactly what training reads as NIfTI', async () => {
    const dir = tempDir();
    dataset(dir);
    const cache = join(dir, 'cache');
    const { summary } = await runInProcess(pipeline(dir), cache);
    const out = join(dir, 'sm.nii.gz');
    const r = spawnSync(process.execPath, [VOCO_BIN, 'cache', 'get', join(dir, 'pre.yaml'), 'cache', 'sm.nii.gz', '-o', out, '--cache', cache], { encoding: 'utf8' });
    expect(r.stderr).toContain('wrote');
    expect(r.status).toBe(0);
    const { store, items: list } = await items(cache, summary.stages.preprocess!.key!);
    try {
      const decoded = decodeVolume(await store.getBlob(list.find((i) => i.id === 'sm.nii.gz')!.output.image));
      const written = await readNifti(out);
      const vol = written.toVolume({ dtype: 'float32' });
      expect(vol.shape).toEqual(decoded.shape);
      expect(Array.from(vol.data)).toEqual(Array.from(decoded.data));
      for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) expect(written.affine[r]![c]!).toBeCloseTo(decoded.affine[r]![c]!, 4);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('voco preview writes axial, coronal and sagittal PNGs with the label overlay', async () => {
    const dir = tempDir();
    dataset(dir);
    const cache = join(dir, 'cache');
    await runInProcess(pipeline(dir), cache);
    const out = join(dir, 'png');
    const r = spawnSync(process.execPath, [VOCO_BIN, 'preview', join(dir, 'pre.yaml'), 'preprocess', '-o', out, '--cache', cache], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const stem of ['aorta', 'sm']) {
      for (const view of ['axial', 'coronal', 'sagittal']) {
        const png = readFileSync(join(out, `${stem}_${view}.png`));
        expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      }
    }
    const missing = spawnSync(process.execPath, [VOCO_BIN, 'preview', join(dir, 'pre.yaml'), 'preprocess', 'nope.nii.gz', '--cache', cache], { encoding: 'utf8' });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('no item "nope.nii.gz" in stage "preprocess"; items: aorta.nii.gz, sm.nii.gz');
  }, 60_000);
});
