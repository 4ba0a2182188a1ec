/**
 * Gradients of the data-movement kernels (reshape, transpose, concat, slice, strided slice,
 * pad, tile, broadcast, gather, stack/unstack, split, reverse, cumsum). Each is the adjoint of a
 * linear map that only moves or copies entries: scatter dy back to where each entry came from
 * and sum where an entry was copied.
 *
 * Where a gradient needs a temporary reshape, it stays at rank ≤ 4 so that it also works on
 * backends with rank limits (WebGPU shaders at rank 5, wasm transposes at rank 7–8).
 */
import * as tf from '@tensorflow/tfjs-core';
import { many, normalizeAxes, normalizeAxis, product, saved, single, sumToShape, zerosFor } from './grad-util.ts';

type G = tf.GradConfig;

/**
 * Places `g` (length n along `axis`) into a zero tensor of length `dim` along that axis, at
 * positions start, start+step, …, start+(n−1)·step. Works through rank-4/3 views
 * [outer, n, 1, inner] → pad → [outer, n·step, inner] → slice → pad.
 */
function scatterStrided(g: tf.Tensor, axis: number, start: number, step: number, dim: number): tf.Tensor {
  const shape = g.shape;
  const n = shape[axis]!;
  const outer = product(shape.slice(0, axis));
  const inner = product(shape.slice(axis + 1));
  let t = tf.reshape(g, [outer, n, 1, inner]);
  if (step > 1) {
    // interleave step−1 zeros after each entry, then drop the trailing zeros
    t = tf.pad(t, [[0, 0], [0, 0], [0, step - 1], [0, 0]]);
    t = tf.reshape(t, [outer, n * step, inner]);
    t = tf.slice(t, [0, 0, 0], [outer, (n - 1) * step + 1, inner]);
  } else {
    t = tf.reshape(t, [outer, n, inner]);
  }
  const len = t.shape[1]!;
  const after = dim - start - len;
  if (start < 0 || after < 0) throw new Error(`scatterStrided: range [${start}, ${start + len}) outside [0, ${dim})`);
  if (start > 0 || after > 0) t = tf.pad(t, [[0, 0], [start, after], [0, 0]]);
  const outShape = [...shape];
  outShape[axis] = dim;
  return tf.reshape(t, outShape);
}

/** Sums a tiled axis back: [.., reps·d, ..] → [.., d, ..] via the rank-4 view [outer, reps, d, inner]. */
function untileAxis(g: tf.Tensor, axis: number, reps: number): tf.Tensor {
  const shape = g.shape;
  const d = shape[axis]! / reps;
  const outer = product(shape.slice(0, axis));
  const inner = product(shape.slice(axis + 1));
  const summed = tf.sum(tf.reshape(g, [outer, reps, d, inner]), 1);
  const outShape = [...shape];
  outShape[axis] = d;
  return tf.reshape(summed, outShape);
}

/** The gradient of tf.stridedSlice for any begin/end/strides and masks. */
function stridedSliceGrad(dy: tf.Tensor, x: tf.Tensor, attrs: tf.NamedAttrMap): tf.Tensor {
  const info = tf.slice_util.sliceInfo(
    x.shape,
    attrs['begin'] as number[],
    attrs['end'] as number[],
    attrs['strides'] as number[],
    attrs['beginMask'] as number,
    attrs['endMask'] as number,
    attrs['ellipsisMask'] as number,
    attrs['newAxisMask'] as number,
    attrs['shrinkAxisMask'] as number,
  );
  // Per dense input axis: the number of entries taken, n = ⌈(end − begin) / stride⌉ (0 when the
  // interval is empty or runs against the stride). New axes and shrunk axes are size 1 here, so
  // dy reshapes to this "processing" shape.
  const counts = x.shape.map((_, i) => {
    const b = info.begin[i]!;
    const e = info.end[i]!;
    const st = info.strides[i]!;
    const len = e - b;
    if (len === 0 || len < 0 !== st < 0) return 0;
    return Math.trunc(len / st) + (len % st !== 0 ? 1 : 0);
  });
  if (counts.some((c) => c === 0)) return zerosFor(x);
  let g = tf.reshape(dy, counts);
  for (let i = 0; i < x.rank; i++) {
    const n = counts[i]!;
    const st = info.strides[i]!;
    let start = info.begin[i]!;
    let step = st;
    if (st < 0) {
      // entries begin, begin+st, …: reversed they run upwards from begin+(n−1)·st with step |st|
      g = tf.reverse(g, i);
      start = start + (n - 1) * st;
      step = -st;
    }
    if (n === x.shape[i] && step === 1 && start === 0) continue;
    g = scatterStrided(g, i, start, step, x.shape[i]!);
  }
  return g;
}

export const shapeGradients: G[] = [
  {
    kernelName: 'Reshape',
    inputsToSave: ['x'],
    gradFunc: (dy, s) => ({ x: () => tf.reshape(single(dy), saved(s, 0).shape) }),
  },
  {
    kernelName: 'ExpandDims',
    inputsToSave: ['input'],
    gradFunc: (dy, s) => ({ input: () => tf.reshape(single(dy), saved(s, 0).shape) }),
  },
  {
    // y = transpose(x, perm) ⇒ dx = transpose(dy, perm⁻¹)
    kernelName: 'Transpose',
    gradFunc: (dy, _s, attrs) => {
      const perm = attrs['perm'] as number[];
      const inverse = new Array<number>(perm.length);
      perm.forEach((p, i) => (inverse[p] = i));
      return { x: () => tf.transpose(single(dy), inverse) };
    },
  },
  {
    // y = concat(x₀, x₁, …): dy splits along the axis into the inputs' sizes
    kernelName: 'Concat',
    saveAllInputs: true,
    gradFunc: (dy, s, attrs) => {
      const g = single(dy);
      const axis = normalizeAxis(attrs['axis'] as number, g.rank);
      let offset = 0;
      return Object.fromEntries(
        s.map((t, i) => {
          const begin = g.shape.map((_, k) => (k === axis ? offset : 0));
          offset += t.shape[axis]!;
          return [String(i), () => tf.slice(g, begin, t.shape)];
        }),
      );
    },
  },
  {
    // y = x[begin : begin+size] ⇒ dx = dy zero-padded back to x's shape
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const [begin, size] = tf.slice_util.parseSliceParams(
        x,
        attrs['begin'] as number | number[],
        attrs['size'] as number | number[],
      );
      const b = begin as number[];
      const n = size as number[];
      const paddings = x.shape.map((d, i): [number, number] => [b[i]!, d - b[i]! - n[i]!]);
      return { x: () => tf.pad(single(dy), paddings) };
    },
  },
  {
    kernelName: 'StridedSlice',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => ({ x: () => stridedSliceGrad(single(dy), saved(s, 0), attrs) }),
  },
  {
    // y = pad(x, p, c) ⇒ dx = the interior of dy (c is a constant)
    kernelName: 'PadV2',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const paddings = attrs['paddings'] as Array<[number, number]>;
      return { x: () => tf.slice(single(dy), paddings.map((p) => p[0]), x.shape) };
    },
  },
  {
    // y = tile(x, reps): each x entry is copied reps_i times along axis i (copy k at k·d_i + j),
    // so dx sums the copies. Any rank; temporaries are rank 4.
    kernelName: 'Tile',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const reps = attrs['reps'] as number[];
      return {
        x: () => {
          let g = single(dy);
          reps.forEach((r, axis) => {
            if (r !== 1) g = untileAxis(g, axis, r);
          });
          return tf.reshape(g, x.shape);
        },
      };
    },
  },
  {
    kernelName: 'BroadcastTo',
    inputsToSave: ['x'],
    gradFunc: (dy, s) => ({ x: () => sumToShape(single(dy), saved(s, 0).shape) }),
  },
  {
    // y = gather(x, indices, axis) ⇒ dx = scatter-add of dy rows into x's rows at indices
    // (repeated indices accumulate). Done with tf.scatterND, which sums duplicates in one pass:
    // tf.unsortedSegmentSum is O(#segments × #indices) on the cpu backend — minutes for a
    // relative-position-bias table (2197 rows gathered 343² times).
    kernelName: 'GatherV2',
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0);
      const indices = saved(s, 1);
      const batchDims = (attrs['batchDims'] as number | undefined) ?? 0;
      return {
        x: () => {
          if (batchDims !== 0) throw new Error('GatherV2 gradient: batchDims > 0 is not supported');
          const axis = normalizeAxis(attrs['axis'] as number, x.rank);
          const outer = product(x.shape.slice(0, axis));
          const inner = product(x.shape.slice(axis + 1));
          const n = x.shape[axis]!;
          const count = indices.size;
          let g = tf.reshape(single(dy), [outer, count, inner]);
          if (outer > 1) g = tf.transpose(g, [1, 0, 2]);
          const idx = tf.reshape(tf.cast(indices, 'int32'), [count, 1]);
          let summed = tf.scatterND(idx, tf.reshape(g, [count, outer, inner]), [n, outer, inner]);
          if (outer > 1) summed = tf.transpose(summed, [1, 0, 2]);
          return tf.reshape(summed, x.shape);
        },
        indices: () => zerosFor(indices),
      };
    },
  },
  {
    // y = stack(x₀, x₁, …, axis) ⇒ dxᵢ = unstack(dy, axis)[i]
    kernelName: 'Pack',
    saveAllInputs: true,
    gradFunc: (dy, s, attrs) => {
      const g = single(dy);
      const axis = normalizeAxis(attrs['axis'] as number, g.rank);
      const parts = tf.unstack(g, axis);
      return Object.fromEntries(s.map((_, i) => [String(i), () => parts[i]!]));
    },
  },
  {
    // [y₀, y₁, …] = unstack(x, axis) ⇒ dx = stack(dys, axis) (missing dys arrive as zeros)
    kernelName: 'Unpack',
    gradFunc: (dy, _s, attrs) => ({
      value: () => {
        const dys = many(dy);
        const axis = normalizeAxis(attrs['axis'] as number, dys[0]!.rank + 1);
        return tf.stack(dys, axis);
      },
    }),
  },
  {
    // [y₀, y₁, …] = split(x, sizes, axis) ⇒ dx = concat(dys, axis)
    kernelName: 'SplitV',
    gradFunc: (dy, _s, attrs) => ({
      x: () => {
        const dys = many(dy);
        return dys.length === 1 ? tf.clone(dys[0]!) : tf.concat(dys, normalizeAxis(attrs['axis'] as number, dys[0]!.rank));
      },
    }),
  },
  {
    kernelName: 'Reverse',
    gradFunc: (dy, _s, attrs) => {
      const g = single(dy);
      return { x: () => tf.reverse(g, normalizeAxes(attrs['dims'] as number | number[], g.rank)) };
    },
  },
  {
    // y = cumsum(x) along an axis ⇒ dx = cumsum of dy in the opposite direction
    kernelName: 'Cumsum',
    gradFunc: (dy, _s, attrs) => {
      const g = single(dy);
      const axis = normalizeAxis(attrs['axis'] as number, g.rank);
      return { x: () => tf.cumsum(g, axis, attrs['exclusive'] as boolean, !(attrs['reverse'] as boolean)) };
    },
  },
];
