import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import { crc32, encodePng, labelColor, percentileWindow, renderSlices } from '../../src/volume/preview.ts';
import { readNifti } from '../../src/volume/nifti-read.ts';
import type { Affine, Shape4, Volume } from '../../src/volume/volume.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Independent CRC-32 (bitwise, no table) to check the PNG chunks. */
function crcRef(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

interface Png {
  width: number;
  height: number;
  pixel(x: number, y: number): [number, number, number];
}

/** Parses our PNGs back: signature, chunk order and CRCs, IHDR fields, IDAT rows (filter 0). */
function parsePng(png: Uint8Array): Png {
  expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const types: string[] = [];
  const idat: Uint8Array[] = [];
  let width = 0;
  let height = 0;
  let o = 8;
  while (o < png.length) {
    const len = dv.getUint32(o);
    const type = String.fromCharCode(...png.subarray(o + 4, o + 8));
    const body = png.subarray(o + 8, o + 8 + len);
    expect(dv.getUint32(o + 8 + len)).toBe(crcRef(png.subarray(o + 4, o + 8 + len)));
    types.push(type);
    if (type === 'IHDR') {
      expect(len).toBe(13);
      width = dv.getUint32(o + 8);
      height = dv.getUint32(o + 12);
      expect(Array.from(body.subarray(8))).toEqual([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, filter 0, no interlace
    }
    if (type === 'IDAT') idat.push(body);
    o += 12 + len;
  }
  expect(o).toBe(png.length);
  expect(types[0]).toBe('IHDR');
  expect(types.at(-1)).toBe('IEND');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3 + 1;
  expect(raw.length).toBe(stride * height);
  for (let y = 0; y < height; y++) expect(raw[y * stride]).toBe(0);
  return {
    width,
    height,
    pixel: (x, y) => {
      const i = y * stride + 1 + x * 3;
      return [raw[i]!, raw[i + 1]!, raw[i + 2]!];
    },
  };
}

function diag(sx: number, sy: number, sz: number): Affine {
  return [
    [sx, 0, 0, 0],
    [0, sy, 0, 0],
    [0, 0, sz, 0],
    [0, 0, 0, 1],
  ];
}

/** 40 (x) × 30 (y) × 20 (z) RAS volume, 0 everywhere except a bright box. */
function boxVolume(affine: Affine = diag(1, 1, 1)): { vol: Volume<Float32Array>; label: Volume<Uint8Array> } {
  const shape: Shape4 = [1, 40, 30, 20];
  const data = new Float32Array(40 * 30 * 20);
  const ldata = new Uint8Array(data.length);
  for (let x = 0; x < 40; x++) {
    for (let y = 0; y < 30; y++) {
      for (let z = 0; z < 20; z++) {
        const i = (x * 30 + y) * 20 + z;
        // bright box at high x (patient's right), high y (anterior), high z (superior)
        if (x >= 30 && x < 36 && y >= 20 && y < 26 && z >= 12 && z < 16) data[i] = 1;
        // label 3 in a box at low x (patient's left), low y (posterior), low z (inferior)
        if (x >= 4 && x < 8 && y >= 3 && y < 7 && z >= 2 && z < 5) ldata[i] = 3;
      }
    }
  }
  return { vol: { data, shape, affine }, label: { data: ldata, shape, affine } };
}

describe('encodePng', () => {
  it('writes a valid RGB PNG with the pixels given', () => {
    const rgb = new Uint8Array(3 * 2 * 3);
    rgb.set([255, 0, 0], 0); // (0,0) red
    rgb.set([0, 0, 255], (1 * 3 + 2) * 3); // (x=2, y=1) blue
    const png = parsePng(encodePng(3, 2, rgb));
    expect([png.width, png.height]).toEqual([3, 2]);
    expect(png.pixel(0, 0)).toEqual([255, 0, 0]);
    expect(png.pixel(2, 1)).toEqual([0, 0, 255]);
    expect(png.pixel(1, 0)).toEqual([0, 0, 0]);
    expect(() => encodePng(3, 2, new Uint8Array(5))).toThrow(RangeError);
  });

  it('crc32 matches the PNG reference value', () => {
    expect(crc32(new TextEncoder().encode('IEND'))).toBe(0xae426082);
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});

describe('renderSlices', () => {
  it('draws a bright box where a radiologist expects it in all three views', () => {
    const { vol } = boxVolume();
    const p = renderSlices(vol, { window: [0, 1], slices: { axial: 13, coronal: 22, sagittal: 32 } });
    const ax = parsePng(p.axial);
    const co = parsePng(p.coronal);
    const sa = parsePng(p.sagittal);
    // axial: columns R→L (x = 39 − col), rows A→P (y = 29 − row)
    expect([ax.width, ax.height]).toEqual([40, 30]);
    expect(ax.pixel(39 - 32, 29 - 22)).toEqual([255, 255, 255]);
    expect(ax.pixel(32, 22)).toEqual([0, 0, 0]); // the mirrored position is empty
    // coronal: columns R→L, rows S→I (z = 19 − row)
    expect([co.width, co.height]).toEqual([40, 20]);
    expect(co.pixel(39 - 32, 19 - 13)).toEqual([255, 255, 255]);
    expect(co.pixel(32, 13)).toEqual([0, 0, 0]);
    // sagittal: columns A→P (y = 29 − col), rows S→I
    expect([sa.width, sa.height]).toEqual([30, 20]);
    expect(sa.pixel(29 - 22, 19 - 13)).toEqual([255, 255, 255]);
    expect(sa.pixel(22, 13)).toEqual([0, 0, 0]);
  });

  it('shows an LPS-stored volume exactly like its RAS equivalent', () => {
    const { vol, label } = boxVolume();
    // Same anatomy stored LPS: voxel x' = 39 − x, y' = 29 − y, with the affine flipped to match.
    const lps = new Float32Array(vol.data.length);
    const lpsLabel = new Uint8Array(vol.data.length);
    for (let x = 0; x < 40; x++) {
      for (let y = 0; y < 30; y++) {
        for (let z = 0; z < 20; z++) {
          lps[((39 - x) * 30 + (29 - y)) * 20 + z] = vol.data[(x * 30 + y) * 20 + z]!;
          lpsLabel[((39 - x) * 30 + (29 - y)) * 20 + z] = label.data[(x * 30 + y) * 20 + z]!;
        }
      }
    }
    const affine: Affine = [
      [-1, 0, 0, 39],
      [0, -1, 0, 29],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ];
    const a = renderSlices(vol, { window: [0, 1], label, slices: { axial: 13, coronal: 22, sagittal: 32 } });
    const b = renderSlices(
      { data: lps, shape: vol.shape, affine },
      { window: [0, 1], label: { data: lpsLabel, shape: vol.shape, affine }, slices: { axial: 13, coronal: 29 - 22, sagittal: 39 - 32 } },
    );
    expect(b.axial).toEqual(a.axial);
    expect(b.coronal).toEqual(a.coronal);
    expect(b.sagittal).toEqual(a.sagittal);
  });

  it('accounts for anisotropic spacing (square display pixels)', () => {
    const { vol } = boxVolume(diag(0.5, 0.5, 2));
    const p = renderSlices(vol, { window: [0, 1], slices: { coronal: 22 } });
    expect([parsePng(p.axial).width, parsePng(p.axial).height]).toEqual([40, 30]);
    const co = parsePng(p.coronal);
    expect([co.width, co.height]).toEqual([40, 80]); // 20 slices × 2 mm at 0.5 mm pixels
    // z = 12..15 → rows (19 − z)·4 .. +3: rows 16..31 are bright at column 39 − 32
    expect(co.pixel(7, 16)).toEqual([255, 255, 255]);
    expect(co.pixel(7, 31)).toEqual([255, 255, 255]);
    expect(co.pixel(7, 15)).toEqual([0, 0, 0]);
    expect(co.pixel(7, 32)).toEqual([0, 0, 0]);
    expect([parsePng(p.sagittal).width, parsePng(p.sagittal).height]).toEqual([30, 80]);
  });

  it('blends the label colour over the grey image', () => {
    const { vol, label } = boxVolume();
    vol.data.fill(0.5);
    const p = renderSlices(vol, { window: [0, 1], label, alpha: 0.5, slices: { axial: 3 } });
    const ax = parsePng(p.axial);
    const [r, g, b] = labelColor(3);
    const grey = Math.round(0.5 * 255);
    const blend = (c: number) => Math.round(0.5 * grey + 0.5 * c);
    expect(ax.pixel(39 - 5, 29 - 4)).toEqual([blend(r), blend(g), blend(b)]);
    expect(ax.pixel(39 - 20, 29 - 20)).toEqual([grey, grey, grey]);
    expect(labelColor(3)).not.toEqual(labelColor(4));
    expect(labelColor(1)).not.toEqual(labelColor(2));
  });

  it('defaults to centre slices and a 1st–99th percentile window', () => {
    const shape: Shape4 = [1, 10, 10, 10];
    const data = new Float32Array(1000);
    for (let i = 0; i < 1000; i++) data[i] = i;
    const vol = { data, shape, affine: diag(1, 1, 1) };
    const [lo, hi] = percentileWindow(vol);
    // numpy's percentiles are 9.99 and 989.01; the histogram gives them to within a value
    expect(Math.abs(lo - 9.99)).toBeLessThan(1.1);
    expect(Math.abs(hi - 989.01)).toBeLessThan(1.1);
    const ax = parsePng(renderSlices(vol).axial);
    // centre axial slice z = 5; pixel (col, row) shows x = 9 − col, y = 9 − row
    const v = (4 * 10 + 4) * 10 + 5; // x = 4, y = 4 → column 5, row 5
    expect(ax.pixel(5, 5)[0]).toBe(Math.round(((v - lo) * 255) / (hi - lo)));
    expect(ax.pixel(0, 0)[0]).toBe(255); // x = 9, y = 9: 995 > hi
    expect(ax.pixel(9, 9)[0]).toBe(0); // x = 0, y = 0: 5 < lo
  });

  it('rejects a label on another grid, out-of-range slices and bad windows', () => {
    const { vol } = boxVolume();
    expect(() => renderSlices(vol, { label: { data: new Uint8Array(8), shape: [1, 2, 2, 2], affine: diag(1, 1, 1) } })).toThrow(/label shape/);
    expect(() => renderSlices(vol, { slices: { axial: 20 } })).toThrow(/axial slice 20 is outside \[0, 19\]/);
    expect(() => renderSlices(vol, { window: [0, NaN] })).toThrow(/window/);
  });

  it('renders the real TotalSegmentator CT with its segmentation', async () => {
    const img = (await readNifti(join(REPO, 'data', 'ct', 'totalseg_example_ct_sm.nii.gz'))).toVolume({ dtype: 'float32' });
    const seg = (await readNifti(join(REPO, 'data', 'ct', 'totalseg_example_ct_sm_seg.nii.gz'))).toVolume({ dtype: 'raw' });
    const p = renderSlices(img, { label: seg });
    const ax = parsePng(p.axial);
    const co = parsePng(p.coronal);
    const sa = parsePng(p.sagittal);
    expect([ax.width, ax.height]).toEqual([122, 101]); // 3 mm isotropic
    expect([co.width, co.height]).toEqual([122, 30]);
    expect([sa.width, sa.height]).toEqual([101, 30]);
    // The liver (label 5) is on the patient's right: the image's left half in axial view.
    const opaque = parsePng(renderSlices(img, { label: seg, alpha: 1 }).axial);
    const liver = labelColor(5);
    let left = 0;
    let right = 0;
    for (let y = 0; y < opaque.height; y++) {
      for (let x = 0; x < opaque.width; x++) {
        const px = opaque.pixel(x, y);
        if (px[0] === liver[0] && px[1] === liver[1] && px[2] === liver[2]) {
          if (x < opaque.width / 2) left++;
          else right++;
        }
      }
    }
    expect(left).toBeGreaterThan(500);
    expect(left).toBeGreaterThan(5 * right);
  });
});
