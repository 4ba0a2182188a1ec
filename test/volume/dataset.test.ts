import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError, listDataset } from '../../src/volume/dataset.ts';
import { tempDir } from '../helpers.ts';

function touch(path: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, 'x');
  return path;
}

describe('listDataset', () => {
  it('folder + glob, pairing labels by suffix and leaving label files out of the images', async () => {
    const dir = tempDir();
    touch(join(dir, 'cts', 'a.nii.gz'));
    touch(join(dir, 'cts', 'a_seg.nii.gz'));
    touch(join(dir, 'cts', 'sub', 'b.nii.gz'));
    touch(join(dir, 'cts', 'sub', 'b_seg.nii.gz'));
    const entries = await listDataset({ folder: 'cts', labels: { suffix: '_seg' } }, dir);
    expect(entries.map((e) => [e.id, e.label?.slice(dir.length)])).toEqual([
      ['a.nii.gz', '/cts/a_seg.nii.gz'],
      ['sub/b.nii.gz', '/cts/sub/b_seg.nii.gz'],
    ]);
  });

  it('labels in another folder with the same names (the MSD imagesTr/labelsTr layout)', async () => {
    const dir = tempDir();
    touch(join(dir, 'imagesTr', 'x.nii.gz'));
    touch(join(dir, 'labelsTr', 'x.nii.gz'));
    const [e] = await listDataset({ folder: 'imagesTr', labels: { folder: 'labelsTr' } }, dir);
    expect(e!.label).toBe(join(dir, 'labelsTr', 'x.nii.gz'));
  });

  it('a missing label is an error naming the image, unless labels are optional', async () => {
    const dir = tempDir();
    touch(join(dir, 'cts', 'a.nii.gz'));
    await expect(listDataset({ folder: 'cts', labels: { suffix: '_seg' } }, dir)).rejects.toThrow(
      new RegExp(`${join(dir, 'cts', 'a.nii.gz')} dataset.labels: no label map for this image`),
    );
    expect(await listDataset({ folder: 'cts', labels: { suffix: '_seg', required: false } }, dir)).toHaveLength(1);
  });

  it('a MONAI datalist: paths relative to the JSON, chosen sections, duplicates merged', async () => {
    const dir = tempDir();
    touch(join(dir, 'data', 'imgs', '1.nii.gz'));
    touch(join(dir, 'data', 'imgs', '2.nii.gz'));
    touch(join(dir, 'data', 'labs', '1.nii.gz'));
    writeFileSync(
      join(dir, 'data', 'dataset_0.json'),
      JSON.stringify({
        training: [{ image: 'imgs/1.nii.gz', label: 'labs/1.nii.gz' }, 'imgs/2.nii.gz'],
        validation: [{ image: 'imgs/1.nii.gz' }],
      }),
    );
    const train = await listDataset({ datalist: 'data/dataset_0.json' }, dir);
    expect(train.map((e) => [e.id, e.section, Boolean(e.label)])).toEqual([
      ['imgs/1.nii.gz', 'training', true],
      ['imgs/2.nii.gz', 'training', false],
    ]);
    const both = await listDataset({ datalist: 'data/dataset_0.json', sections: ['training', 'validation'] }, dir);
    expect(both).toHaveLength(2);
  });

  it('datalist errors name the file and the entry', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'd.json'), JSON.stringify({ training: [{ image: 'missing.nii.gz' }] }));
    await expect(listDataset({ datalist: 'd.json' }, dir)).rejects.toThrow(/d\.json training\[0\]\.image: image not found: .*missing\.nii\.gz/);
    await expect(listDataset({ datalist: 'd.json', sections: ['test'] }, dir)).rejects.toThrow(/has no "test" list \(it has: training\)/);
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    await expect(listDataset({ datalist: 'bad.json' }, dir)).rejects.toBeInstanceOf(DatasetError);
    await expect(listDataset({ folder: 'nowhere' }, dir)).rejects.toThrow(/nowhere dataset\.folder: dataset folder not found/);
  });
});
