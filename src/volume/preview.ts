/**
 * Slice previews: axial, coronal and sagittal PNGs of a volume, with an optional label overlay.
 *
 * Orientation (radiological convention, whatever the voxel order on disk): each view is laid out
 * in world (RAS) directions found from the affine (nibabel's `io_orientation`, via
 * `transforms/orientation.ts`), so an LPS or permuted volume shows the same picture as its RAS
 * reorientation:
 * - axial: viewed from the feet — patient's right on the image left, anterior up;
 * - coronal: viewed from the front — patient's right on the image left, superior up;
 * - sagittal: viewed from the patient's left — anterior on the image left, superior up.
 *
 * Aspect: voxel spacings are the affine's column norms; each view is resampled (nearest voxel)
 * to square display pixels of the smaller in-plane spacing, at most {@link MAX_SIDE} pixels a side.
 *
 * Intensities: channel 0, mapped linearly from `window` [lo, hi] to 0..255 (default: the 1st and
 * 99th percentiles of the whole channel, from a 65,536-bin histogram). Labels (any integer label
 * volume on the same grid) are alpha-blended over the grey image, one colour per label value
 * ({@link labelColor}), 0 = background (no overlay).
 *
 * PNG: 8-bit RGB, one IDAT (node:zlib deflate), filter type 0 on every row; CRC-32 from
 * `zlib.crc32` (Node ≥ 20.15) or a table.
 */
import * as zlib from 'node:zlib';
import { ioOrientation } from './transforms/orientation.ts';
import type { Volume } from './volume.ts';

export type ViewName = 'axial' | 'coronal' | 'sagittal';

export interface RenderSlicesOptions {
  /** Label volume on the same spatial grid (C must be 1); drawn as a coloured overlay. */
  label?: Volume;
  /**
   * Slice index per view, counted along the *voxel* axis perpendicular to that view (the one
   * closest to world S for axial, A for coronal, R for sagittal). Default: the centre voxel.
   */
  slices?: { axial?: number; coronal?: number; sagittal?: number };
  /** Display range [lo, hi] in the volume's units (default: 1st–99th percentile). */
  window?: [number, number];
  /** Overlay opacity, 0..1 (default 0.45). */
  alpha?: number;
}

export type RenderedSlices = Record<ViewName, Uint8Array>;

/** Largest width or height of a rendered view, in pixels. */
export const MAX_SIDE = 1024;
const DEFAULT_ALPHA = 0.45;

// ---------------------------------------------------------------------------------------------
// PNG

let crcTable: Uint32Array | undefined;

/** CRC-32 (ISO 3309 / PNG), continuing from `crc` (0 to start). */
export function crc32(data: Uint8Array, crc = 0): number {
  const native = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
  if (typeof native === 'function') return native(data, crc) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** Encodes an 8-bit RGB image (row-major, 3 bytes per pixel) as PNG file bytes. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new RangeError(`encodePng: bad size ${width}×${height}`);
  }
  if (rgb.length !== width * height * 3) throw new RangeError(`encodePng: ${rgb.length} bytes for ${width}×${height} RGB (${width * height * 3} needed)`);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method 0
  ihdr[12] = 0; // no interlace
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter type None
    raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const idat = new Uint8Array(zlib.deflateSync(raw, { level: 6 }));
  const parts = [Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Colours and window

/** Overlay colour of a label value (> 0): hues spaced by the golden angle, so neighbours differ. */
export function labelColor(value: number): [number, number, number] {
  const h = ((value * 137.508) % 360) / 60;
  const s = 0.85;
  const v = 1;
  const c = v * s;
  const x = c * (1 - Math.abs((h % 2) - 1));
  const m = v - c;
  const [r, g, b] = h < 1 ? [c, x, 0] : h < 2 ? [x, c, 0] : h < 3 ? [0, c, x] : h < 4 ? [0, x, c] : h < 5 ? [x, 0, c] : [c, 0, x];
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

/** [lowPct, highPct] percentiles of the finite values of channel 0 (65,536-bin histogram over [min, max]). */
export function percentileWindow(vol: Volume, lowPct = 1, highPct = 99): [number, number] {
  const [, X, Y, Z] = vol.shape;
  const n = X * Y * Z;
  const d = vol.data;
  let min = Infinity;
  let max = -Infinity;
  let finite = 0;
  for (let i = 0; i < n; i++) {
    const v = d[i]!;
    if (!Number.isFinite(v)) continue;
    finite++;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (finite === 0) return [0, 1];
  if (!(max > min)) return [min, min];
  const bins = 65536;
  const hist = new Uint32Array(bins);
  const k = (bins - 1) / (max - min);
  for (let i = 0; i < n; i++) {
    const v = d[i]!;
    if (Number.isFinite(v)) hist[Math.floor((v - min) * k)]!++;
  }
  const at = (pct: number): number => {
    const target = (pct / 100) * (finite - 1);
    let acc = 0;
    for (let b = 0; b < bins; b++) {
      acc += hist[b]!;
      if (acc > target) return Math.min(max, min + b / k);
    }
    return max;
  };
  const lo = at(lowPct);
  let hi = at(highPct);
  if (!(hi > lo)) hi = max > lo ? max : lo;
  return [lo, hi];
}

// ---------------------------------------------------------------------------------------------
// Views

interface Axis {
  /** Voxel axis (0, 1, 2 = X, Y, Z of the volume). */
  voxel: number;
  /** +1 when the voxel index grows towards the world direction R, A or S. */
  sign: number;
  size: number;
  spacing: number;
}

/**
 * For world axes R, A, S (0, 1, 2): the voxel axis closest to it, its direction, size and spacing.
 */
function worldAxes(vol: Volume): [Axis, Axis, Axis] {
  const ornt = ioOrientation(vol.affine);
  const [, X, Y, Z] = vol.shape;
  const sizes = [X, Y, Z];
  const out: Axis[] = [];
  for (let inAx = 0; inAx < 3; inAx++) {
    const [world, sign] = ornt[inAx]!;
    const spacing = Math.hypot(vol.affine[0]![inAx]!, vol.affine[1]![inAx]!, vol.affine[2]![inAx]!) || 1;
    out[world] = { voxel: inAx, sign, size: sizes[inAx]!, spacing };
  }
  return out as [Axis, Axis, Axis];
}

interface ViewSpec {
  /** World axis along the image columns, and whether column 0 is at its + end. */
  col: { world: number; fromPlus: boolean };
  /** World axis along the image rows, row 0 at its + end (up = A or S). */
  row: { world: number };
  /** World axis through the slice. */
  normal: number;
}

const VIEWS: Record<ViewName, ViewSpec> = {
  // R, A, S are world axes 0, 1, 2; RAS+ means +x = patient's right.
  axial: { col: { world: 0, fromPlus: true }, row: { world: 1 }, normal: 2 },
  coronal: { col: { world: 0, fromPlus: true }, row: { world: 2 }, normal: 1 },
  sagittal: { col: { world: 1, fromPlus: true }, row: { world: 2 }, normal: 0 },
};

/** Voxel index along `axis` for display position p (0 = the + end when fromPlus) of n pixels. */
function indexTable(axis: Axis, pixels: number, fromPlus: boolean): Int32Array {
  const t = new Int32Array(pixels);
  for (let p = 0; p < pixels; p++) {
    // position along the world direction, from its − end, in voxels
    const q = Math.min(axis.size - 1, Math.floor(((p + 0.5) * axis.size) / pixels));
    const along = fromPlus ? axis.size - 1 - q : q; // voxel count from the − end of the world axis
    t[p] = axis.sign > 0 ? along : axis.size - 1 - along;
  }
  return t;
}

function renderView(
  vol: Volume,
  axes: [Axis, Axis, Axis],
  spec: ViewSpec,
  slice: number,
  lo: number,
  hi: number,
  label: Volume | undefined,
  alpha: number,
): Uint8Array {
  const cAx = axes[spec.col.world]!;
  const rAx = axes[spec.row.world]!;
  const nAx = axes[spec.normal]!;
  let px = Math.min(cAx.spacing, rAx.spacing);
  let width = Math.max(1, Math.round((cAx.size * cAx.spacing) / px));
  let height = Math.max(1, Math.round((rAx.size * rAx.spacing) / px));
  const shrink = Math.max(width, height) / MAX_SIDE;
  if (shrink > 1) {
    px *= shrink;
    width = Math.max(1, Math.round((cAx.size * cAx.spacing) / px));
    height = Math.max(1, Math.round((rAx.size * rAx.spacing) / px));
  }
  const colIdx = indexTable(cAx, width, spec.col.fromPlus);
  const rowIdx = indexTable(rAx, height, true);
  const [, , Y, Z] = vol.shape;
  const strides = [Y * Z, Z, 1];
  const cs = strides[cAx.voxel]!;
  const rs = strides[rAx.voxel]!;
  const base = slice * strides[nAx.voxel]!;
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const rgb = new Uint8Array(width * height * 3);
  const data = vol.data;
  const ldata = label?.data;
  const colorCache = new Map<number, [number, number, number]>();
  for (let r = 0; r < height; r++) {
    const rowBase = base + rowIdx[r]! * rs;
    for (let c = 0; c < width; c++) {
      const i = rowBase + colIdx[c]! * cs;
      const v = data[i]!;
      let g = scale === 0 ? (v >= hi ? 255 : 0) : Math.round((v - lo) * scale);
      if (!(g > 0)) g = 0; // also NaN
      else if (g > 255) g = 255;
      let R = g;
      let G = g;
      let B = g;
      if (ldata) {
        const lv = Math.round(ldata[i]!);
        if (lv > 0) {
          let col = colorCache.get(lv);
          if (!col) {
            col = labelColor(lv);
            colorCache.set(lv, col);
          }
          R = Math.round((1 - alpha) * g + alpha * col[0]);
          G = Math.round((1 - alpha) * g + alpha * col[1]);
          B = Math.round((1 - alpha) * g + alpha * col[2]);
        }
      }
      const o = (r * width + c) * 3;
      rgb[o] = R;
      rgb[o + 1] = G;
      rgb[o + 2] = B;
    }
  }
  return encodePng(width, height, rgb);
}

/**
 * Renders the axial, coronal and sagittal slices of `vol` (channel 0) as PNG file bytes, with
 * `opts.label` blended on top. See the module comment for orientation, aspect and window.
 */
export function renderSlices(vol: Volume, opts: RenderSlicesOptions = {}): RenderedSlices {
  const [C, X, Y, Z] = vol.shape;
  if (C < 1 || X < 1 || Y < 1 || Z < 1 || vol.data.length !== C * X * Y * Z) {
    throw new RangeError(`renderSlices: data length ${vol.data.length} does not match shape [${vol.shape.join(', ')}]`);
  }
  const label = opts.label;
  if (label) {
    const [lc, lx, ly, lz] = label.shape;
    if (lc !== 1 || lx !== X || ly !== Y || lz !== Z) {
      throw new RangeError(`renderSlices: label shape [${label.shape.join(', ')}] does not match the image grid [1, ${X}, ${Y}, ${Z}]`);
    }
  }
  const alpha = opts.alpha ?? DEFAULT_ALPHA;
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`renderSlices: alpha must be in [0, 1], got ${alpha}`);
  let [lo, hi] = opts.window ?? percentileWindow(vol);
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) throw new RangeError(`renderSlices: window must be two finite numbers, got [${lo}, ${hi}]`);
  if (hi < lo) [lo, hi] = [hi, lo];
  const axes = worldAxes(vol);
  const out = {} as RenderedSlices;
  for (const view of ['axial', 'coronal', 'sagittal'] as const) {
    const spec = VIEWS[view];
    const nAx = axes[spec.normal]!;
    const s = opts.slices?.[view] ?? Math.floor(nAx.size / 2);
    if (!Number.isInteger(s) || s < 0 || s >= nAx.size) {
      throw new RangeError(`renderSlices: ${view} slice ${s} is outside [0, ${nAx.size - 1}] (voxel axis ${'XYZ'[nAx.voxel]})`);
    }
    out[view] = renderView(vol, axes, spec, s, lo, hi, label, alpha);
  }
  return out;
}
