/** Paths and readers for the SwinUNETR / VoCo fixtures (see test/fixtures/swinunetr/SOURCES.md). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/swinunetr/', import.meta.url));
export const FS12_PT = join(FIXTURES, 'swinunetr_fs12.pt');
export const HEAD_PT = join(FIXTURES, 'voco', 'voco_proj_head_fs12.pt');

export interface KeyInfo {
  key: string;
  shape: number[];
  dtype: string;
  numel: number;
}

export function fs12Keys(): { keys: KeyInfo[]; num_params_float: number; num_keys: number } {
  return JSON.parse(readFileSync(join(FIXTURES, 'swinunetr_fs12_state_dict.json'), 'utf8'));
}

/** A raw little-endian float32 fixture and the shape its JSON gives. */
export function readF32(rel: string): { shape: number[]; data: Float32Array } {
  const meta = JSON.parse(readFileSync(join(FIXTURES, `${rel}.json`), 'utf8')) as { shape: number[] };
  const b = readFileSync(join(FIXTURES, `${rel}.f32`));
  const data = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const n = meta.shape.reduce((a, s) => a * s, 1);
  if (data.length !== n) throw new Error(`${rel}.f32 has ${data.length} values, its JSON says ${n}`);
  return { shape: meta.shape, data };
}
