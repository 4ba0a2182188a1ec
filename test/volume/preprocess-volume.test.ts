import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeVolume } from '../../src/volume/codec.ts';
import { writeNifti } from '../../src/volume/nifti-write.ts';
import { preprocessVolume } from '../../src/volume/preprocess-volume.ts';
import { createVolume, identityAffine } from '../../src/volume/volume.ts';
import { tempDir } from '../helpers.ts';

async function floatNifti(values: number[]): Promise<string> {
  const file = join(tempDir(), 'float.nii.gz');
  await writeNifti(file, createVolume(Float32Array.from(values), [1, values.length, 1, 1], identityAffine()));
  return file;
}

describe('preprocessVolume: load_dtype (MONAI LoadImaged dtype)', () => {
  const values = [-1024.75, -0.5, 0.5, 1.25, 99.9, 250.5];

  it('int16 truncates toward zero like numpy astype(int16); float32 keeps the values', async () => {
    const file = await floatNifti(values);
    const asInt = await preprocessVolume({ image: file, chain: [], maxAbsError: 1e-4, loadDtype: 'int16' });
    expect(Array.from(decodeVolume(asInt.image.bytes).data)).toEqual([-1024, -0, 0, 1, 99, 250]);
    const asFloat = await preprocessVolume({ image: file, chain: [], maxAbsError: 1e-4 });
    const decoded = Array.from(decodeVolume(asFloat.image.bytes).data);
    decoded.forEach((v, i) => expect(Math.abs(v - values[i]!)).toBeLessThanOrEqual(1e-4));
  });

  it('refuses values outside int16, naming the file and the voxel', async () => {
    const file = await floatNifti([0, 40000]);
    await expect(preprocessVolume({ image: file, chain: [], maxAbsError: 1e-4, loadDtype: 'int16' })).rejects.toThrow(
      /float\.nii\.gz.*voxel 1 holds 40000, outside int16's range/,
    );
  });
});
