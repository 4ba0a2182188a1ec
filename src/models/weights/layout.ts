/**
 * PyTorch ↔ TensorFlow.js weight layouts, as pure functions on TensorData.
 *
 *   layout            PyTorch                     TF.js
 *   conv3d            (out, in, kd, kh, kw)       conv3d filter            [kd, kh, kw, in, out]
 *   conv3dTranspose   (in, out, kd, kh, kw)       conv3dTranspose filter   [kd, kh, kw, out, in]
 *   linear            (out, in)                   matMul weight            [in, out]
 *   plain             unchanged (biases, norms, tables, buffers)
 *
 * Both conv layouts move the kernel axes first and reverse the two channel axes, so both use the
 * permutation (2, 3, 4, 1, 0) one way and (4, 3, 0, 1, 2) back. Spatial axis order is kept.
 */
import { formatShape, numel, toFloat32, type StateDict, type TensorArray, type TensorData } from './state-dict.ts';

export type Layout = 'conv3d' | 'conv3dTranspose' | 'linear' | 'plain';

export const LAYOUTS: readonly Layout[] = ['conv3d', 'conv3dTranspose', 'linear', 'plain'];

/** Axis permutation taking a PyTorch tensor to its TF.js layout: tf.shape[i] = torch.shape[perm[i]]. */
export function torchToTfPerm(layout: Layout, rank: number): number[] {
  switch (layout) {
    case 'conv3d':
    case 'conv3dTranspose':
      if (rank !== 5) throw new Error(`${layout} weights are 5-D, got rank ${rank}`);
      return [2, 3, 4, 1, 0];
    case 'linear':
      if (rank !== 2) throw new Error(`linear weights are 2-D, got rank ${rank}`);
      return [1, 0];
    case 'plain':
      return Array.from({ length: rank }, (_, i) => i);
    default:
      throw new Error(`unknown layout ${String(layout)}`);
  }
}

/** The inverse permutation: torch.shape[i] = tf.shape[perm[i]]. */
export function tfToTorchPerm(layout: Layout, rank: number): number[] {
  const p = torchToTfPerm(layout, rank);
  const inv = new Array<number>(p.length);
  p.forEach((src, dst) => (inv[src] = dst));
  return inv;
}

/** out.shape[i] = t.shape[perm[i]]; the data is copied into C order. */
export function permute(t: TensorData, perm: readonly number[]): TensorData {
  const rank = t.shape.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`invalid permutation ${formatShape(perm)} for a tensor of rank ${rank}`);
  }
  const shape = perm.map((p) => t.shape[p]!);
  if (perm.every((p, i) => p === i)) return { dtype: t.dtype, shape, data: t.data.slice() as TensorArray };
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= t.shape[i]!;
  }
  // Walking the output in C order, the source index moves by the input stride of the permuted axis.
  const stride = perm.map((p) => inStrides[p]!);
  const n = numel(shape);
  const src = t.data as TensorArray & { [i: number]: number | bigint };
  const out = new (t.data.constructor as new (n: number) => TensorArray)(n) as TensorArray & { [i: number]: number | bigint };
  const idx = new Array<number>(rank).fill(0);
  let pos = 0;
  for (let k = 0; k < n; k++) {
    out[k] = src[pos]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      pos += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      pos -= idx[d]! * stride[d]!;
      idx[d] = 0;
    }
  }
  return { dtype: t.dtype, shape, data: out };
}

export function torchToTf(layout: Layout, t: TensorData): TensorData {
  return permute(t, torchToTfPerm(layout, t.shape.length));
}

export function tfToTorch(layout: Layout, t: TensorData): TensorData {
  return permute(t, tfToTorchPerm(layout, t.shape.length));
}

/** The PyTorch shape a variable of this TF shape and layout is stored with. */
export function torchShapeOf(layout: Layout, tfShape: readonly number[]): number[] {
  return tfToTorchPerm(layout, tfShape.length).map((p) => tfShape[p]!);
}

// ----------------------------------------------------------------------------------------------
// Variable specs
// ----------------------------------------------------------------------------------------------

export interface VariableSpec {
  /** The PyTorch state-dict key (e.g. `swinViT.patch_embed.proj.weight`). */
  name: string;
  layout: Layout;
  /** The shape of our (TF.js) variable. */
  shape: number[];
}

export interface LoadResult {
  /** Loaded variables, in the spec's order, in TF layout, as float32. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  /** Spec names the state dict does not have. */
  missing: string[];
  /** State-dict keys the spec does not name. */
  unexpected: string[];
  /** Present in both but with a different shape; shapes are in PyTorch layout (as in the file). */
  mismatched: Array<{ name: string; expected: number[]; got: number[] }>;
}

/**
 * Loads the variables of `spec` from a PyTorch state dict with `strict=False` semantics: what
 * matches (same name, same shape after the layout change) is loaded and converted to float32 in TF
 * layout; everything else is reported, nothing throws.
 */
export function loadIntoSpec(spec: readonly VariableSpec[], dict: StateDict): LoadResult {
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const missing: string[] = [];
  const mismatched: LoadResult['mismatched'] = [];
  const named = new Set<string>();
  for (const v of spec) {
    if (named.has(v.name)) throw new Error(`variable spec names ${v.name} twice`);
    named.add(v.name);
    const t = dict.get(v.name);
    if (!t) {
      missing.push(v.name);
      continue;
    }
    const expected = torchShapeOf(v.layout, v.shape);
    if (expected.length !== t.shape.length || expected.some((s, i) => s !== t.shape[i])) {
      mismatched.push({ name: v.name, expected, got: [...t.shape] });
      continue;
    }
    const f32: TensorData = { dtype: 'float32', shape: t.shape, data: toFloat32(t) };
    const tf = torchToTf(v.layout, f32);
    tensors.set(v.name, { shape: tf.shape, data: tf.data as Float32Array });
  }
  const unexpected = [...dict.keys()].filter((k) => !named.has(k));
  return { tensors, missing, unexpected, mismatched };
}

/**
 * The inverse of `loadIntoSpec`: our float32 variables (TF layout) as a PyTorch state dict, in the
 * spec's order. Throws if a variable is absent or has the wrong number of elements.
 */
export function exportFromSpec(spec: readonly VariableSpec[], values: ReadonlyMap<string, Float32Array>): StateDict {
  const out: StateDict = new Map();
  const absent = spec.filter((v) => !values.has(v.name)).map((v) => v.name);
  if (absent.length) {
    throw new Error(`no value for ${absent.length} variable${absent.length === 1 ? '' : 's'}: ${absent.slice(0, 10).join(', ')}${absent.length > 10 ? ', …' : ''}`);
  }
  for (const v of spec) {
    const data = values.get(v.name)!;
    if (data.length !== numel(v.shape)) {
      throw new Error(`${v.name}: TF shape ${formatShape(v.shape)} needs ${numel(v.shape)} values, got ${data.length}`);
    }
    out.set(v.name, tfToTorch(v.layout, { dtype: 'float32', shape: [...v.shape], data }));
  }
  return out;
}
