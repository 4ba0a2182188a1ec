/**
 * schemas/transforms.schema.json accepts exactly what parseTransformChain accepts, under the same
 * ajv settings as the pipeline loader (draft 2020-12, strict).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type { Ajv2020 as Ajv2020Type } from 'ajv/dist/2020.js';
import { parseTransformChain } from '../../../src/volume/transforms/index.ts';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020.js') as typeof Ajv2020Type;
const schema = JSON.parse(readFileSync(new URL('../../../schemas/transforms.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
const validate = ajv.compile(schema);

const valid: unknown[] = [
  [],
  [
    { orientation: 'RAS' },
    { spacing: [1.5, 1.5, 1.5] },
    { scale_intensity_range: { a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true } },
    { crop_foreground: { threshold: 0.3 } },
    { resize: [384, 384, 96] },
    { spatial_pad: [96, 96, 96] },
  ],
  [{ orientation: { axcodes: 'LPS' } }, { orientation: 'PIR' }],
  [{ spacing: 1.5 }, { spacing: { pixdim: [1, 2, 3], mode: 'nearest', label_mode: 'bilinear' } }, { spacing: { pixdim: 0.7 } }],
  [{ scale_intensity_range: { a_min: 0, a_max: 1 } }],
  [{ crop_foreground: null }, { crop_foreground: {} }, { crop_foreground: { margin: [1, 2, 3], allow_smaller: false, k_divisible: 16 } }],
  [{ resize: [-1, 64, 64] }, { resize: { spatial_size: [8, 8, 8], mode: 'bilinear', align_corners: true, label_mode: 'nearest' } }],
  [{ resize: { spatial_size: [8, 8, 8], mode: 'nearest', align_corners: false } }],
  [{ spatial_pad: { spatial_size: [96, -1, 96], method: 'end', value: -1000 } }],
];

const invalid: unknown[] = [
  { orientation: 'RAS' },
  ['orientation'],
  [{}],
  [{ orientation: 'RAS', spacing: 1 }],
  [{ spaceing: [1, 1, 1] }],
  [{ orientation: 'ras' }],
  [{ orientation: 'RAX' }],
  [{ orientation: 'RLS' }],
  [{ orientation: 'RASS' }],
  [{ orientation: { axcodes: 'RAS', extra: 1 } }],
  [{ spacing: [1.5, 0, 1.5] }],
  [{ spacing: [1.5, 1.5] }],
  [{ spacing: -1 }],
  [{ spacing: 'x' }],
  [{ spacing: { pixdim: [1, 1, 1], mode: 'linear' } }],
  [{ spacing: { mode: 'nearest' } }],
  [{ scale_intensity_range: { a_min: '-175', a_max: 250 } }],
  [{ scale_intensity_range: { a_max: 250 } }],
  [{ scale_intensity_range: { a_min: 0, a_max: 1, b_min: 0 } }],
  [{ scale_intensity_range: { a_min: 0, a_max: 1, b_min: null, b_max: null } }],
  [{ scale_intensity_range: { a_min: 0, a_max: 1, clip: 'yes' } }],
  [{ scale_intensity_range: [0, 1] }],
  [{ crop_foreground: { treshold: 0.3 } }],
  [{ crop_foreground: { margin: 1.5 } }],
  [{ crop_foreground: { margin: -1 } }],
  [{ crop_foreground: { k_divisible: [1, 0, 1] } }],
  [{ crop_foreground: 0.3 }],
  [{ resize: [384, 384, 0] }],
  [{ resize: [384, 384.5, 96] }],
  [{ resize: [384, 384] }],
  [{ resize: { spatial_size: [2, 2, 2], mode: 'nearest', align_corners: true } }],
  [{ resize: { spatial_size: [2, 2, 2], mode: 'area' } }],
  [{ resize: { mode: 'nearest' } }],
  [{ spatial_pad: { spatial_size: [96, 96, 96], method: 'center' } }],
  [{ spatial_pad: { size: [96, 96, 96] } }],
  [{ spatial_pad: [96, 96, -2] }],
];

const parses = (spec: unknown) => {
  try {
    parseTransformChain(spec);
    return true;
  } catch {
    return false;
  }
};

describe('schemas/transforms.schema.json', () => {
  it('compiles in strict draft 2020-12 mode', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(typeof validate).toBe('function');
  });

  it.each(valid.map((v) => [JSON.stringify(v), v]))('accepts %s (and so does the parser)', (_s, spec) => {
    expect(validate(spec), JSON.stringify(validate.errors)).toBe(true);
    expect(parses(spec)).toBe(true);
  });

  it.each(invalid.map((v) => [JSON.stringify(v), v]))('rejects %s (and so does the parser)', (_s, spec) => {
    expect(validate(spec)).toBe(false);
    expect(parses(spec)).toBe(false);
  });

  it('points at the offending field', () => {
    validate([{ orientation: 'RAS' }, { crop_foreground: { treshold: 0.3 } }]);
    expect(validate.errors).toContainEqual(
      expect.objectContaining({ instancePath: '/1/crop_foreground', keyword: 'additionalProperties', params: { additionalProperty: 'treshold' } }),
    );
    validate([{ orientation: 'RAS' }, { spacing: 1.5 }, { scale_intensity_range: { a_min: 'x', a_max: 250 } }]);
    expect(validate.errors).toContainEqual(expect.objectContaining({ instancePath: '/2/scale_intensity_range/a_min', keyword: 'type' }));
    validate([{ spaceing: [1, 1, 1] }]);
    expect(validate.errors).toContainEqual(expect.objectContaining({ instancePath: '/0', keyword: 'additionalProperties', params: { additionalProperty: 'spaceing' } }));
  });
});
