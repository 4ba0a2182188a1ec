/**
 * Transform chains: the YAML/JSON form users write, its validation and normalisation, the cache
 * fingerprint, and the dictionary form that applies a chain to an image and its label.
 *
 * Spec form (what pipelines contain): a list of one-key maps, short or long form per kind:
 *
 *     - orientation: RAS                      # or {axcodes: RAS}
 *     - spacing: [1.5, 1.5, 1.5]              # or 1.5, or {pixdim: [...], mode: bilinear, label_mode: nearest}
 *     - scale_intensity_range: {a_min: -175, a_max: 250, b_min: 0, b_max: 1, clip: true}
 *     - crop_foreground: {threshold: 0.3}     # {threshold, margin, allow_smaller, k_divisible}; null/{} = defaults
 *     - resize: [384, 384, 96]                # or {spatial_size: [...], mode: trilinear, align_corners: true, label_mode: nearest}
 *     - spatial_pad: [96, 96, 96]             # or {spatial_size: [...], method: symmetric, value: 0}
 *
 * `parseTransformChain` turns that into `TransformStep`s with every default filled in; the same
 * rules are in `schemas/transforms.schema.json` (for ajv inside pipeline files).
 */
import type { Volume } from '../volume.ts';
import { didYouMeanHint } from '../../util/did-you-mean.ts';
import { cropForeground, cropToBox, type CropBox, type Triple } from './crop-foreground.ts';
import { normalizeAxcodes, orientation } from './orientation.ts';
import { resize, type ResizeMode } from './resize.ts';
import { scaleIntensityRange } from './scale-intensity-range.ts';
import { spacing, type SpacingMode } from './spacing.ts';
import { spatialPad, type PadMethod, type PadWidth } from './spatial-pad.ts';

export type TransformStep =
  | { kind: 'orientation'; axcodes: string }
  | { kind: 'spacing'; pixdim: Triple; mode: SpacingMode; label_mode: SpacingMode }
  | { kind: 'scale_intensity_range'; a_min: number; a_max: number; b_min: number | null; b_max: number | null; clip: boolean }
  | { kind: 'crop_foreground'; threshold: number; margin: Triple; allow_smaller: boolean; k_divisible: Triple }
  | { kind: 'resize'; spatial_size: Triple; mode: ResizeMode; align_corners: boolean; label_mode: ResizeMode }
  | { kind: 'spatial_pad'; spatial_size: Triple; method: PadMethod; value: number };

export type TransformKind = TransformStep['kind'];

export const TRANSFORM_KINDS: readonly TransformKind[] = ['orientation', 'spacing', 'scale_intensity_range', 'crop_foreground', 'resize', 'spatial_pad'];

/**
 * Implementation version per kind, part of the fingerprint: bump one when that transform's output
 * changes for the same parameters, so cached results computed with the old code are not reused.
 */
export const TRANSFORM_VERSIONS: Readonly<Record<TransformKind, number>> = {
  orientation: 1,
  spacing: 1,
  scale_intensity_range: 1,
  crop_foreground: 1,
  resize: 1,
  spatial_pad: 1,
};

/** Version of the fingerprint layout itself. */
export const TRANSFORM_CHAIN_FORMAT = 1;

export class TransformSpecError extends Error {
  constructor(
    message: string,
    /** where the problem is, e.g. `transforms[2].scale_intensity_range.a_min` */
    readonly path: string,
  ) {
    super(message);
    this.name = 'TransformSpecError';
  }
}

function fail(path: string, msg: string): never {
  throw new TransformSpecError(`${path}: ${msg}`, path);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list (${JSON.stringify(v).slice(0, 60)})`;
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `the string ${JSON.stringify(v).slice(0, 60)}`;
  return `${typeof v} ${String(v)}`;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, `expected a number, got ${describe(v)}`);
  return v === 0 ? 0 : v; // no -0
}

function posNum(v: unknown, path: string): number {
  const n = num(v, path);
  if (!(n > 0)) fail(path, `expected a positive number, got ${n}`);
  return n;
}

function int(v: unknown, path: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, `expected an integer, got ${describe(v)}`);
  if (v < min) fail(path, `expected an integer ≥ ${min}, got ${v}`);
  return v === 0 ? 0 : v;
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') fail(path, `expected true or false, got ${describe(v)}`);
  return v;
}

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    const hint = typeof v === 'string' ? didYouMeanHint(v, allowed) : undefined;
    fail(path, `expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(v)}${hint ? ` (${hint})` : ''}`);
  }
  return v as T;
}

function triple(v: unknown, path: string, item: (x: unknown, p: string) => number, what: string): Triple {
  if (!Array.isArray(v) || v.length !== 3) fail(path, `expected a list of 3 ${what}, got ${describe(v)}`);
  return v.map((x, i) => item(x, `${path}[${i}]`)) as Triple;
}

/** A list of 3 or one value applied to every axis. */
function tripleOrScalar(v: unknown, path: string, item: (x: unknown, p: string) => number, what: string): Triple {
  if (typeof v === 'number') {
    const x = item(v, path);
    return [x, x, x];
  }
  if (!Array.isArray(v)) fail(path, `expected ${what.replace(/s$/, '')} or a list of 3 ${what}, got ${describe(v)}`);
  return triple(v, path, item, what);
}

const sizeItem = (x: unknown, p: string): number => {
  if (x === -1) return -1;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) fail(p, `expected a positive integer or -1 (keep), got ${describe(x)}`);
  return x;
};

function fields(v: Record<string, unknown>, path: string, allowed: readonly string[], required: readonly string[] = []): void {
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      const hint = didYouMeanHint(k, allowed);
      fail(`${path}.${k}`, `unknown field${hint ? ` (${hint})` : ''}; allowed: ${allowed.join(', ')}`);
    }
  }
  for (const k of required) if (v[k] === undefined) fail(`${path}.${k}`, 'required field is missing');
}

const SPACING_MODES = ['bilinear', 'nearest'] as const;
const RESIZE_MODES = ['trilinear', 'bilinear', 'nearest'] as const;

function resizeMode(v: unknown, path: string): ResizeMode {
  const m = oneOf(v, path, RESIZE_MODES);
  return m === 'bilinear' ? 'trilinear' : m;
}

function parseStep(kind: TransformKind, v: unknown, path: string): TransformStep {
  switch (kind) {
    case 'orientation': {
      let codes: unknown = v;
      let p = path;
      if (isMap(v)) {
        fields(v, path, ['axcodes'], ['axcodes']);
        codes = v.axcodes;
        p = `${path}.axcodes`;
      }
      if (typeof codes !== 'string' || !/^[LRPAIS]{3}$/.test(codes)) fail(p, `expected 3 upper-case axis codes such as "RAS" (one of L/R, P/A, I/S each), got ${describe(codes)}`);
      try {
        return { kind, axcodes: normalizeAxcodes(codes) };
      } catch (e) {
        fail(p, (e as Error).message);
      }
    }
    case 'spacing': {
      if (isMap(v)) {
        fields(v, path, ['pixdim', 'mode', 'label_mode'], ['pixdim']);
        return {
          kind,
          pixdim: tripleOrScalar(v.pixdim, `${path}.pixdim`, posNum, 'positive numbers'),
          mode: v.mode === undefined ? 'bilinear' : oneOf(v.mode, `${path}.mode`, SPACING_MODES),
          label_mode: v.label_mode === undefined ? 'nearest' : oneOf(v.label_mode, `${path}.label_mode`, SPACING_MODES),
        };
      }
      return { kind, pixdim: tripleOrScalar(v, path, posNum, 'positive numbers'), mode: 'bilinear', label_mode: 'nearest' };
    }
    case 'scale_intensity_range': {
      if (!isMap(v)) fail(path, `expected a map with a_min, a_max (and b_min, b_max, clip), got ${describe(v)}`);
      fields(v, path, ['a_min', 'a_max', 'b_min', 'b_max', 'clip'], ['a_min', 'a_max']);
      const opt = (k: string): number | null => (v[k] === undefined ? null : num(v[k], `${path}.${k}`));
      const step = {
        kind,
        a_min: num(v.a_min, `${path}.a_min`),
        a_max: num(v.a_max, `${path}.a_max`),
        b_min: opt('b_min'),
        b_max: opt('b_max'),
        clip: v.clip === undefined ? false : bool(v.clip, `${path}.clip`),
      };
      if ((step.b_min === null) !== (step.b_max === null)) fail(`${path}.${step.b_min === null ? 'b_min' : 'b_max'}`, 'required field is missing (b_min and b_max go together)');
      return step;
    }
    case 'crop_foreground': {
      const m = v === null || v === undefined ? {} : v;
      if (!isMap(m)) fail(path, `expected a map (threshold, margin, allow_smaller, k_divisible) or nothing, got ${describe(v)}`);
      fields(m, path, ['threshold', 'margin', 'allow_smaller', 'k_divisible']);
      return {
        kind,
        threshold: m.threshold === undefined ? 0 : num(m.threshold, `${path}.threshold`),
        margin: m.margin === undefined ? [0, 0, 0] : tripleOrScalar(m.margin, `${path}.margin`, (x, p) => int(x, p, 0), 'integers ≥ 0'),
        allow_smaller: m.allow_smaller === undefined ? true : bool(m.allow_smaller, `${path}.allow_smaller`),
        k_divisible: m.k_divisible === undefined ? [1, 1, 1] : tripleOrScalar(m.k_divisible, `${path}.k_divisible`, (x, p) => int(x, p, 1), 'integers ≥ 1'),
      };
    }
    case 'resize': {
      if (isMap(v)) {
        fields(v, path, ['spatial_size', 'mode', 'align_corners', 'label_mode'], ['spatial_size']);
        const mode = v.mode === undefined ? 'trilinear' : resizeMode(v.mode, `${path}.mode`);
        let alignCorners = v.align_corners === undefined ? false : bool(v.align_corners, `${path}.align_corners`);
        if (mode === 'nearest') {
          if (alignCorners) fail(`${path}.align_corners`, 'only applies to trilinear resizing (mode is "nearest")');
          alignCorners = false;
        }
        return {
          kind,
          spatial_size: triple(v.spatial_size, `${path}.spatial_size`, sizeItem, 'sizes'),
          mode,
          align_corners: alignCorners,
          label_mode: v.label_mode === undefined ? 'nearest' : resizeMode(v.label_mode, `${path}.label_mode`),
        };
      }
      return { kind, spatial_size: triple(v, path, sizeItem, 'sizes'), mode: 'trilinear', align_corners: false, label_mode: 'nearest' };
    }
    case 'spatial_pad': {
      if (isMap(v)) {
        fields(v, path, ['spatial_size', 'method', 'value'], ['spatial_size']);
        return {
          kind,
          spatial_size: triple(v.spatial_size, `${path}.spatial_size`, sizeItem, 'sizes'),
          method: v.method === undefined ? 'symmetric' : oneOf(v.method, `${path}.method`, ['symmetric', 'end'] as const),
          value: v.value === undefined ? 0 : num(v.value, `${path}.value`),
        };
      }
      return { kind, spatial_size: triple(v, path, sizeItem, 'sizes'), method: 'symmetric', value: 0 };
    }
  }
}

/**
 * Validate and normalise a chain spec (see the module comment). Throws `TransformSpecError` whose
 * message starts with the path of the offending value, e.g.
 * `transforms[2].scale_intensity_range.a_min: expected a number, got the string "x"`.
 */
export function parseTransformChain(spec: unknown, path = 'transforms'): TransformStep[] {
  if (!Array.isArray(spec)) fail(path, `expected a list of transforms, got ${describe(spec)}`);
  return spec.map((item, i) => {
    const p = `${path}[${i}]`;
    if (!isMap(item)) fail(p, `expected a one-key map such as {spacing: [1.5, 1.5, 1.5]}, got ${describe(item)}`);
    const keys = Object.keys(item);
    if (keys.length !== 1) {
      fail(p, keys.length === 0 ? 'empty map; expected one transform name as its key' : `expected one transform per list item, got ${keys.length} keys (${keys.join(', ')}); split them into separate items`);
    }
    const key = keys[0] as string;
    if (!(TRANSFORM_KINDS as readonly string[]).includes(key)) {
      const hint = didYouMeanHint(key, TRANSFORM_KINDS);
      fail(`${p}.${key}`, `unknown transform${hint ? ` (${hint})` : ''}; known: ${TRANSFORM_KINDS.join(', ')}`);
    }
    return parseStep(key as TransformKind, item[key], `${p}.${key}`);
  });
}

export interface TransformFingerprintStep {
  kind: TransformKind;
  params: Record<string, unknown>;
  version: number;
}

export interface TransformChainFingerprint {
  format: number;
  steps: TransformFingerprintStep[];
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) {
    const v = o[k];
    out[k] = Array.isArray(v) ? v.map((x) => (x === 0 ? 0 : x)) : v === 0 ? 0 : v;
  }
  return out;
}

/**
 * Canonical, JSON-able description of a normalised chain: every parameter with its default filled
 * in, keys sorted, plus each kind's implementation version. Two chains get equal fingerprints iff
 * they do the same thing (short and long forms, aliases such as mode "bilinear" for resize, and
 * spelled-out defaults all normalise away), so a cache key built from it changes iff a parameter
 * or an implementation version changes.
 */
export function transformChainFingerprint(steps: readonly TransformStep[]): TransformChainFingerprint {
  return {
    format: TRANSFORM_CHAIN_FORMAT,
    steps: steps.map((s) => {
      const { kind, ...params } = s;
      return { kind, params: sortKeys(params), version: TRANSFORM_VERSIONS[kind] };
    }),
  };
}

export interface TransformInput {
  image: Volume;
  label?: Volume | undefined;
}

/** What one step did, for logs, previews and tests. */
export interface TransformStepRecord {
  index: number;
  kind: TransformKind;
  /** image shape and affine after the step */
  shape: [number, number, number, number];
  affine: number[][];
  /** crop_foreground: the box on the step's input (start inclusive, end exclusive) */
  box?: CropBox;
  /** crop_foreground: nothing was selected */
  empty?: boolean;
  /** spatial_pad: [before, after] per tensor axis, channel first */
  padWidth?: PadWidth;
  /** spacing: MONAI's same-grid rule skipped resampling */
  skipped?: boolean;
  /** orientation: axis codes of the input */
  inputAxcodes?: string;
  /** wall time of the step (image + label), milliseconds */
  ms: number;
}

export interface TransformOutput {
  image: Volume;
  label?: Volume;
  steps: TransformStepRecord[];
}

function sameSpatial(a: Volume, b: Volume): boolean {
  return a.shape[1] === b.shape[1] && a.shape[2] === b.shape[2] && a.shape[3] === b.shape[3];
}

/**
 * Apply a normalised chain to an image and, optionally, its label, like MONAI dictionary
 * transforms with keys [image, label]: interpolating steps use `mode` on the image and
 * `label_mode` (nearest by default) on the label; crop_foreground computes its box from the
 * image and crops both; scale_intensity_range touches the image only. Labels keep their array
 * type through nearest steps (MONAI would return float32; the values are the same).
 */
export function applyTransformChain(chain: readonly TransformStep[], input: TransformInput): TransformOutput {
  let image: Volume = input.image;
  let label: Volume | undefined = input.label;
  const steps: TransformStepRecord[] = [];
  chain.forEach((step, index) => {
    const t0 = performance.now();
    const extra: Partial<TransformStepRecord> = {};
    switch (step.kind) {
      case 'orientation': {
        const r = orientation(image, step.axcodes);
        image = r.volume;
        extra.inputAxcodes = r.inputAxcodes;
        if (label) label = orientation(label, step.axcodes).volume;
        break;
      }
      case 'spacing': {
        const r = spacing(image, step.pixdim, step.mode);
        image = r.volume;
        extra.skipped = r.skipped;
        if (label) label = spacing(label, step.pixdim, step.label_mode).volume;
        break;
      }
      case 'scale_intensity_range':
        image = scaleIntensityRange(image, step).volume;
        break;
      case 'crop_foreground': {
        if (label && !sameSpatial(image, label)) {
          throw new Error(
            `transforms[${index}] (crop_foreground): label grid [${label.shape.slice(1).join(', ')}] differs from image grid [${image.shape.slice(1).join(', ')}]; the box is computed on the image`,
          );
        }
        const r = cropForeground(image, { threshold: step.threshold, margin: step.margin, allowSmaller: step.allow_smaller, kDivisible: step.k_divisible });
        image = r.volume;
        extra.box = r.box;
        extra.empty = r.empty;
        if (label) label = cropToBox(label, r.box).volume;
        break;
      }
      case 'resize':
        image = resize(image, step.spatial_size, { mode: step.mode, alignCorners: step.align_corners }).volume;
        if (label) label = resize(label, step.spatial_size, { mode: step.label_mode, alignCorners: step.label_mode === 'nearest' ? false : step.align_corners }).volume;
        break;
      case 'spatial_pad': {
        const r = spatialPad(image, step.spatial_size, { method: step.method, value: step.value });
        image = r.volume;
        extra.padWidth = r.padWidth;
        if (label) label = spatialPad(label, step.spatial_size, { method: step.method, value: step.value }).volume;
        break;
      }
    }
    steps.push({ index, kind: step.kind, shape: [...image.shape], affine: image.affine.map((r) => r.slice()), ...extra, ms: performance.now() - t0 });
  });
  return label ? { image, label, steps } : { image, steps };
}
