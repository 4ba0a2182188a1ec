/**
 * Gradients of the convolution, pooling and matrix-product kernels.
 *
 * Notation: a 3-D convolution with filter W (strides s, padding p) is a linear map
 * A_W : R^{in shape} → R^{out shape}, y = A_W x. Its adjoint A_Wᵀ is what tfjs computes as
 * conv3DBackpropInput (kernel Conv3DBackpropInputV2, public op tf.conv3dTranspose, the
 * "transposed convolution"), and conv3DBackpropFilter(x, g) (kernel Conv3DBackpropFilterV2)
 * = ∂/∂W ⟨g, A_W x⟩.
 *
 * Conv3D, y = A_W x:
 *   ∂x = A_Wᵀ dy = conv3DBackpropInput(x.shape, dy, W)
 *   ∂W = conv3DBackpropFilter(x, dy)
 *
 * Conv3DBackpropInputV2 — tf.conv3dTranspose — y = A_Wᵀ x (x has the conv's *output* shape,
 * y its *input* shape `inputShape`). For a loss with gradient g = dy at y:
 *   ⟨g, A_Wᵀ x⟩ = ⟨A_W g, x⟩  ⇒  ∂x = A_W g = conv3d(g, W, s, p)
 *   ⟨g, A_Wᵀ x⟩ = ⟨x, A_W g⟩  ⇒  ∂W = ∂/∂W ⟨x, A_W g⟩ = conv3DBackpropFilter(g, x)
 * i.e. the filter gradient is the ordinary one with the roles of input and output gradient
 * swapped. Both are checked against central finite differences in
 * test/models/ops/gradients.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { saved, single, sumToShape, triple } from './grad-util.ts';

type G = tf.GradConfig;
type Pad3 = 'valid' | 'same';

function assertUnitDilations(kernel: string, dilations: unknown): void {
  if (dilations === undefined || dilations === null) return;
  const d = triple(dilations as number | number[]);
  if (d.some((v) => v !== 1)) throw new Error(`${kernel} gradient: dilations ${d} are not supported`);
}

function assertChannelsLast(kernel: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== 'NDHWC') {
    throw new Error(`${kernel} gradient: only NDHWC is supported, got ${String(dataFormat)}`);
  }
}

function runKernel(name: string, inputs: tf.NamedTensorMap, attrs: Record<string, unknown>): tf.Tensor {
  const defined = Object.fromEntries(Object.entries(attrs).filter(([, v]) => v !== undefined)) as tf.NamedAttrMap;
  return tf.engine().runKernel(name, inputs, defined) as tf.Tensor;
}

/** ∂/∂W ⟨g, conv3d(x, W)⟩ (the kernel behind tfjs-core's internal conv3DBackpropFilter). */
function conv3dFilterGrad(
  x: tf.Tensor5D,
  g: tf.Tensor5D,
  filterShape: number[],
  strides: [number, number, number],
  pad: Pad3,
): tf.Tensor {
  return runKernel('Conv3DBackpropFilterV2', { x, dy: g }, { strides, pad, filterShape });
}

/** Parses an einsum equation "ab,bc->ac" into its operand and output index strings. */
function parseEinsum(equation: string): { operands: string[]; output: string } {
  const compact = equation.replace(/\s+/g, '');
  const arrow = compact.indexOf('->');
  if (arrow < 0) throw new Error(`Einsum gradient: equation "${equation}" needs an explicit "->" output`);
  if (compact.includes('.')) throw new Error('Einsum gradient: ellipsis is not supported');
  return { operands: compact.slice(0, arrow).split(','), output: compact.slice(arrow + 2) };
}

export const nnGradients: G[] = [
  {
    kernelName: 'Conv3D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, s, attrs) => {
      assertUnitDilations('Conv3D', attrs['dilations']);
      assertChannelsLast('Conv3D', attrs['dataFormat']);
      const x = saved(s, 0) as tf.Tensor5D;
      const w = saved(s, 1) as tf.Tensor5D;
      const strides = triple(attrs['strides'] as number | number[]);
      const pad = attrs['pad'] as Pad3;
      const g = single(dy) as tf.Tensor5D;
      return {
        x: () => tf.conv3dTranspose(g, w, x.shape, strides, pad),
        filter: () => conv3dFilterGrad(x, g, w.shape, strides, pad),
      };
    },
  },
  {
    kernelName: 'Conv3DBackpropInputV2',
    inputsToSave: ['dy', 'filter'],
    gradFunc: (dy, s, attrs) => {
      const x = saved(s, 0) as tf.Tensor5D; // the transposed conv's input (named dy by the kernel)
      const w = saved(s, 1) as tf.Tensor5D;
      const strides = triple(attrs['strides'] as number | number[]);
      const pad = attrs['pad'] as Pad3;
      const g = single(dy) as tf.Tensor5D;
      return {
        dy: () => tf.conv3d(g, w, strides, pad),
        filter: () => conv3dFilterGrad(g, x, w.shape, strides, pad),
      };
    },
  },
  {
    kernelName: 'MaxPool3D',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, s, attrs) => {
      assertChannelsLast('MaxPool3D', attrs['dataFormat']);
      const x = saved(s, 0);
      const y = saved(s, 1);
      const { filterSize, strides, pad, dimRoundingMode } = attrs;
      return {
        x: () =>
          runKernel('MaxPool3DGrad', { dy: single(dy), input: x, output: y }, { filterSize, strides, pad, dimRoundingMode }),
      };
    },
  },
  {
    // y = A x, A averaging each window over the entries inside the volume (TF semantics: with
    // 'same', padding is not counted). With S the per-channel window *sum* and cnt = S·1,
    // A = diag(1/cnt)·S, so ∂x = Sᵀ(dy / cnt) — Sᵀ is a transposed convolution with a ones
    // filter, run per channel by folding channels into the batch. Not the backend's
    // AvgPool3DGrad kernel: tfjs-backend-cpu 4.22's divides by the full window size even where
    // 'same' padding cut the window (wrong near the border).
    kernelName: 'AvgPool3D',
    inputsToSave: ['x'],
    gradFunc: (dy, s, attrs) => {
      assertChannelsLast('AvgPool3D', attrs['dataFormat']);
      const x = saved(s, 0) as tf.Tensor5D;
      const padAttr = attrs['pad'];
      if (padAttr !== 'valid' && padAttr !== 'same') throw new Error(`AvgPool3D gradient: pad ${String(padAttr)} is not supported`);
      const pad = padAttr as Pad3;
      const k = triple(attrs['filterSize'] as number | number[]);
      const strides = triple(attrs['strides'] as number | number[]);
      return {
        x: () => {
          const g = single(dy) as tf.Tensor5D;
          const [n, d0, d1, d2, c] = x.shape;
          const [, o0, o1, o2] = g.shape;
          const ones = tf.ones([...k, 1, 1]) as tf.Tensor5D;
          const count = tf.conv3d(tf.ones([1, d0, d1, d2, 1]) as tf.Tensor5D, ones, strides, pad);
          const scaled = tf.div(g, count);
          const folded = tf.reshape(tf.transpose(scaled, [0, 4, 1, 2, 3]), [n * c, o0, o1, o2, 1]) as tf.Tensor5D;
          const spread = tf.conv3dTranspose(folded, ones, [n * c, d0, d1, d2, 1], strides, pad);
          return tf.transpose(tf.reshape(spread, [n, c, d0, d1, d2]), [0, 2, 3, 4, 1]);
        },
      };
    },
  },
  {
    // C = op(A)·op(B) with broadcasting batch dimensions. dC·Bᵀ and Aᵀ·dC (arranged for the
    // transpose flags) have the broadcast batch shape; sumToShape reduces them to each operand's
    // own batch shape — the step tfjs-core 4.22 misses (its rank-4 × rank-2 case fails).
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, s, attrs) => {
      const a = saved(s, 0);
      const b = saved(s, 1);
      const tA = !!attrs['transposeA'];
      const tB = !!attrs['transposeB'];
      const g = single(dy);
      let da: () => tf.Tensor;
      let db: () => tf.Tensor;
      if (!tA && !tB) {
        da = () => tf.matMul(g, b, false, true);
        db = () => tf.matMul(a, g, true, false);
      } else if (!tA && tB) {
        da = () => tf.matMul(g, b, false, false);
        db = () => tf.matMul(g, a, true, false);
      } else if (tA && !tB) {
        da = () => tf.matMul(b, g, false, true);
        db = () => tf.matMul(a, g, false, false);
      } else {
        da = () => tf.matMul(b, g, true, true);
        db = () => tf.matMul(g, a, true, true);
      }
      return { a: () => sumToShape(da(), a.shape), b: () => sumToShape(db(), b.shape) };
    },
  },
  {
    // y = einsum("A,B->O", a, b), multilinear: ∂a = einsum("O,B->A", dy, b) and
    // ∂b = einsum("A,O->B", a, dy), valid when every index of the operand being differentiated
    // occurs in the output or the other operand and no index repeats inside one operand.
    kernelName: 'Einsum',
    saveAllInputs: true,
    gradFunc: (dy, s, attrs) => {
      const { operands, output } = parseEinsum(attrs['equation'] as string);
      if (operands.length !== 2 || s.length !== 2) throw new Error('Einsum gradient: only two operands are supported');
      const [A, B] = operands as [string, string];
      const check = (own: string, other: string) => {
        if (new Set(own).size !== own.length) throw new Error(`Einsum gradient: repeated index in "${own}"`);
        for (const c of own) {
          if (!output.includes(c) && !other.includes(c)) {
            throw new Error(`Einsum gradient: index "${c}" of "${own}" is summed inside one operand`);
          }
        }
      };
      const g = single(dy);
      return {
        0: () => {
          check(A, B);
          return tf.einsum(`${output},${B}->${A}`, g, saved(s, 1));
        },
        1: () => {
          check(B, A);
          return tf.einsum(`${A},${output}->${B}`, saved(s, 0), g);
        },
      };
    },
  },
];
