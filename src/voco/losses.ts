/**
 * VoCo losses (spec/REFERENCE.md §1.6 for v1, §2.3 for v2) as pure TF.js functions.
 *
 * Notation: per volume, R random-crop rows x (R = 2 in VoCo) and K base-crop rows B (K = 16 in
 * v1, 9 in v2), all projection-head outputs of width D. Batched inputs are volume-major:
 * random rows [B·R, D] (b0r0, b0r1, b1r0, …), base rows [B·K, D], labels [B, R, K].
 *
 * `stopGradient` plays the role of PyTorch's `.detach()`: teacher rows are always detached here,
 * so the losses' gradients are those of the reference whatever the caller passes.
 */
import * as tf from '@tensorflow/tfjs-core';

/** F.cosine_similarity's eps: each norm is clamped to at least 1e-8. */
export const COS_EPS = 1e-8;
/** The 1e−6 inside the logs and denominators of VoCo's ce_loss. */
export const CE_EPS = 1e-6;

/** Identity in the forward pass, zero gradient (PyTorch `.detach()`). */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad((input) => ({ value: tf.clone(input as tf.Tensor), gradFunc: (dy) => [tf.zerosLike(dy)] }));
  return f(x) as T;
}

/**
 * Runs `fn` without recording it for gradients (torch.no_grad): ops inside a customGrad forward
 * run with the tape off, so none of their activations are kept for a backward pass that would
 * discard them anyway. The result has a zero gradient with respect to `inputs`.
 */
export function withoutGradient(fn: () => tf.Tensor, inputs: tf.Tensor[]): tf.Tensor {
  if (inputs.length === 0) throw new Error('withoutGradient needs at least one input tensor');
  // Shapes, not tensors: by the time the backward pass runs, the inputs may have been disposed.
  const shapes = inputs.map((x) => [...x.shape]);
  const f = tf.customGrad(() => ({ value: fn(), gradFunc: () => shapes.map((s) => tf.zeros(s)) }));
  return f(...inputs);
}

/** Rows divided by their L2 norm, the norm clamped to ≥ eps (NaN-free for all-zero rows). */
function normalizeRows(x: tf.Tensor2D, eps: number): tf.Tensor2D {
  const sq = tf.sum(tf.square(x), 1, true);
  return tf.div(x, tf.sqrt(tf.maximum(sq, tf.scalar(eps * eps))));
}

/** cos(a_r, b_k) for all pairs: [R, D] × [K, D] → [R, K] (F.cosine_similarity, eps 1e-8). */
export function cosineSimilarityMatrix(a: tf.Tensor2D, b: tf.Tensor2D, eps = COS_EPS): tf.Tensor2D {
  if (a.shape[1] !== b.shape[1]) throw new Error(`cosine similarity: widths ${a.shape[1]} and ${b.shape[1]} differ`);
  return tf.tidy(() => tf.matMul(normalizeRows(a, eps), normalizeRows(b, eps), false, true));
}

/** VoCo `online_assign`: logits[r, k] = ReLU(cos(feats_r, bases_k)). [R, D] × [K, D] → [R, K]. */
export function assignLogits(feats: tf.Tensor2D, bases: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.relu(cosineSimilarityMatrix(feats, bases)));
}

/** pos = Σ −y·log(1 − |y − p| + 1e−6) / (Σ y + 1e−6), over all entries. */
function positiveTerm(labels: tf.Tensor, logits: tf.Tensor): tf.Scalar {
  const eps = tf.scalar(CE_EPS);
  const agree = tf.add(tf.sub(tf.scalar(1), tf.abs(tf.sub(labels, logits))), eps);
  const num = tf.sum(tf.mul(tf.neg(labels), tf.log(agree)));
  return tf.div(num, tf.add(tf.sum(labels), eps));
}

/** Σ_{y == 0} f(p) / (#{y == 0} + 1e−6). */
function negativeTerm(labels: tf.Tensor, logits: tf.Tensor, f: (p: tf.Tensor) => tf.Tensor): tf.Scalar {
  const zero = tf.cast(tf.equal(labels, 0), 'float32');
  return tf.div(tf.sum(tf.mul(zero, f(logits))), tf.add(tf.sum(zero), tf.scalar(CE_EPS)));
}

function checkSameShape(labels: tf.Tensor, logits: tf.Tensor): void {
  if (labels.shape.join() !== logits.shape.join()) throw new Error(`labels [${labels.shape}] and logits [${logits.shape}] differ in shape`);
}

/** VoCo v1 `ce_loss`: pos as above, neg = Σ_{y==0} p² / (#zeros + 1e−6). */
export function vocoCeLoss(labels: tf.Tensor, logits: tf.Tensor): { pos: tf.Scalar; neg: tf.Scalar } {
  checkSameShape(labels, logits);
  return tf.tidy(() => ({ pos: positiveTerm(labels, logits), neg: negativeTerm(labels, logits, tf.square) }));
}

/** VoCo v2 `ce`: the v1 pos term plus neg = Σ_{y==0} −log(1 − p + 1e−6) / (#zeros + 1e−6). */
export function vocoV2CeLoss(labels: tf.Tensor, logits: tf.Tensor): tf.Scalar {
  checkSameShape(labels, logits);
  return tf.tidy(() => {
    const neg = negativeTerm(labels, logits, (p) => tf.neg(tf.log(tf.add(tf.sub(tf.scalar(1), p), tf.scalar(CE_EPS)))));
    return tf.add(positiveTerm(labels, logits), neg);
  });
}

/** Strict upper triangle (i < j) of a K×K matrix as 0/1. */
function upperTriangleMask(k: number): tf.Tensor2D {
  const m = new Float32Array(k * k);
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) m[i * k + j] = 1;
  return tf.tensor2d(m, [k, k]);
}

/**
 * VoCo `regularization_loss` of one volume's bases [K, D]: the mean over the K(K−1)/2 pairs i < j
 * of ReLU(cos(b_i, stopgrad(b_j)))² — only the first base of each pair receives a gradient.
 */
export function regularizationLoss(bases: tf.Tensor2D): tf.Scalar {
  const k = bases.shape[0];
  if (k < 2) throw new Error(`regularization loss needs at least 2 bases, got ${k}`);
  return tf.tidy(() => {
    const cos = tf.relu(cosineSimilarityMatrix(bases, stopGradient(bases)));
    return tf.div(tf.sum(tf.mul(tf.square(cos), upperTriangleMask(k))), tf.scalar((k * (k - 1)) / 2));
  });
}

/** The projections of one step, student and teacher, volume-major (see the module comment). */
export interface VocoProjections {
  /** Student rows of the random crops [B·R, D]. */
  studentRandom: tf.Tensor2D;
  /** Student rows of the base crops [B·K, D]. */
  studentBases: tf.Tensor2D;
  /** Teacher rows of the random crops [B·R, D] (detached here). */
  teacherRandom: tf.Tensor2D;
  /** Teacher rows of the base crops [B·K, D] (detached here). */
  teacherBases: tf.Tensor2D;
  /** Position labels [B, R, K] (each row sums to 1). */
  labels: tf.Tensor3D;
}

export interface VocoV1Terms {
  pos: tf.Scalar;
  neg: tf.Scalar;
  reg: tf.Scalar;
}

export interface VocoV2Terms {
  intra: tf.Scalar;
  inter: tf.Scalar;
  reg: tf.Scalar;
}

export interface LossResult<T> {
  total: tf.Scalar;
  terms: T;
}

interface VolumeRows {
  b: number;
  xs: tf.Tensor2D[];
  bs: tf.Tensor2D[];
  xt: tf.Tensor2D[];
  bt: tf.Tensor2D[];
  labels: tf.Tensor2D[];
}

/** Splits the batched projections per volume (teacher rows detached), checking the shapes. */
function perVolume(p: VocoProjections): VolumeRows {
  const [b, r, k] = p.labels.shape;
  const d = p.studentRandom.shape[1];
  const expect = (name: string, t: tf.Tensor2D, rows: number) => {
    if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== d) throw new Error(`${name}: expected [${rows}, ${d}], got [${t.shape}]`);
  };
  expect('studentRandom', p.studentRandom, b * r);
  expect('teacherRandom', p.teacherRandom, b * r);
  expect('studentBases', p.studentBases, b * k);
  expect('teacherBases', p.teacherBases, b * k);
  const split = (t: tf.Tensor2D) => tf.split(t, b, 0) as tf.Tensor2D[];
  return {
    b,
    xs: split(p.studentRandom),
    bs: split(p.studentBases),
    xt: split(stopGradient(p.teacherRandom)),
    bt: split(stopGradient(p.teacherBases)),
    labels: (tf.unstack(p.labels, 0) as tf.Tensor2D[]).map((l) => tf.cast(l, 'float32') as tf.Tensor2D),
  };
}

function meanOf(xs: tf.Scalar[]): tf.Scalar {
  return tf.div(tf.addN(xs), tf.scalar(xs.length));
}

/**
 * VoCo v1 (§1.6). Per volume: logits = ½·(assign(x_s, B_t) + assign(x_t, B_s)); (pos, neg) =
 * ce_loss(labels, logits); reg = regularization_loss(B_s). Each term is averaged over the
 * volumes and total = pos + neg + reg.
 */
export function vocoV1Loss(p: VocoProjections): LossResult<VocoV1Terms> {
  return tf.tidy(() => {
    const v = perVolume(p);
    const pos: tf.Scalar[] = [];
    const neg: tf.Scalar[] = [];
    const reg: tf.Scalar[] = [];
    for (let i = 0; i < v.b; i++) {
      const logits = tf.mul(tf.add(assignLogits(v.xs[i]!, v.bt[i]!), assignLogits(v.xt[i]!, v.bs[i]!)), tf.scalar(0.5));
      const ce = vocoCeLoss(v.labels[i]!, logits);
      pos.push(ce.pos);
      neg.push(ce.neg);
      reg.push(regularizationLoss(v.bs[i]!));
    }
    const terms = { pos: meanOf(pos), neg: meanOf(neg), reg: meanOf(reg) };
    return { total: tf.addN([terms.pos, terms.neg, terms.reg]) as tf.Scalar, terms };
  });
}

/**
 * VoCo v2 (§2.3). For volume i and j = (i + 1) mod B:
 *   intra_i = ce(labels_i, assign(x_s,i, B_t,i))
 *   inter_i = ce(stopgrad(assign(x_t,i, B_t,j)), assign(x_s,i, B_s,j))
 *   reg_i   = regularization_loss(B_s,i)
 * with v2's ce; loss = (Σ intra + Σ inter + Σ reg) / B. The terms are the per-volume means, so
 * total = intra + inter + reg.
 */
export function vocoV2Loss(p: VocoProjections): LossResult<VocoV2Terms> {
  return tf.tidy(() => {
    const v = perVolume(p);
    const intra: tf.Scalar[] = [];
    const inter: tf.Scalar[] = [];
    const reg: tf.Scalar[] = [];
    for (let i = 0; i < v.b; i++) {
      const j = (i + 1) % v.b;
      intra.push(vocoV2CeLoss(v.labels[i]!, assignLogits(v.xs[i]!, v.bt[i]!)));
      inter.push(vocoV2CeLoss(assignLogits(v.xt[i]!, v.bt[j]!), assignLogits(v.xs[i]!, v.bs[j]!)));
      reg.push(regularizationLoss(v.bs[i]!));
    }
    const terms = { intra: meanOf(intra), inter: meanOf(inter), reg: meanOf(reg) };
    return { total: tf.addN([terms.intra, terms.inter, terms.reg]) as tf.Scalar, terms };
  });
}
