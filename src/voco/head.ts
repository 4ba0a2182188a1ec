/**
 * VoCo projection head (spec/REFERENCE.md §1.5, §2.2):
 *
 *   layer1 = Linear(in → hidden) → BatchNorm1d(hidden, affine=False, batch statistics) → ReLU
 *   layer2 = Linear(hidden → hidden) → BatchNorm1d(hidden, same) → ReLU
 *   layer3 = Linear(hidden → out)
 *
 * Variables are named by the PyTorch state-dict keys `<prefix>.layer{1,2,3}.0.{weight,bias}`
 * (index 0 of each nn.Sequential is its Linear; the BatchNorm has no parameters or buffers since
 * affine=False and track_running_stats=False) and stored in TF.js layout (weights [in, out]).
 * The batch norm always normalises with the statistics of the rows it is given, in training and
 * evaluation alike, so the output of one row depends on the whole batch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNorm, linear } from '../models/ops/layers.ts';
import { registerMissingGradients } from '../models/ops/gradients.ts';
import {
  ParamCollector,
  disposeVariables,
  getVar,
  materialize,
  toSpec,
  type ModelVariables,
  type ParamDef,
  type VariableSpec,
} from '../models/swinunetr/params.ts';

export interface HeadWidths {
  hidden: number;
  out: number;
}

/** VoCo v1's head: 2048/2048 (spec §1.5). */
export const VOCO_V1_HEAD: Readonly<HeadWidths> = { hidden: 2048, out: 2048 };
/** VoCo v2's student and teacher heads: 1024/1024 (spec §2.2). */
export const VOCO_V2_HEAD: Readonly<HeadWidths> = { hidden: 1024, out: 1024 };

export const DEFAULT_HEAD_PREFIX = 'proj_head';

export interface ProjectionHeadConfig extends HeadWidths {
  inDim: number;
  /** State-dict prefix of the variables. Default `proj_head`. */
  prefix: string;
}

export interface ProjectionHead extends ModelVariables {
  kind: 'projection_head';
  config: ProjectionHeadConfig;
}

export interface CreateProjectionHeadOptions extends HeadWidths {
  inDim: number;
  prefix?: string;
  /** Initial values derive from (seed, variable name) only. Default 0. */
  seed?: number;
  /** Whether the variables are trainable (a teacher head is not). Default true. */
  trainable?: boolean;
}

const BN_EPS = 1e-5;

function resolveHeadConfig(opts: { inDim: number; hidden: number; out: number; prefix?: string }): ProjectionHeadConfig {
  const cfg = { inDim: opts.inDim, hidden: opts.hidden, out: opts.out, prefix: opts.prefix ?? DEFAULT_HEAD_PREFIX };
  for (const key of ['inDim', 'hidden', 'out'] as const) {
    if (!Number.isInteger(cfg[key]) || cfg[key] <= 0) throw new Error(`projection head: ${key} must be a positive integer (got ${cfg[key]})`);
  }
  return cfg;
}

/** Parameter definitions in state-dict order; PyTorch nn.Linear initialisation. */
export function projectionHeadParamDefs(opts: { inDim: number; hidden: number; out: number; prefix?: string }): ParamDef[] {
  const cfg = resolveHeadConfig(opts);
  const c = new ParamCollector();
  c.linear(`${cfg.prefix}.layer1.0`, cfg.inDim, cfg.hidden);
  c.linear(`${cfg.prefix}.layer2.0`, cfg.hidden, cfg.hidden);
  c.linear(`${cfg.prefix}.layer3.0`, cfg.hidden, cfg.out);
  return c.defs;
}

/** The variable specs (names, TF.js shapes, layouts) without creating anything. */
export function projectionHeadVariableSpec(opts: { inDim: number; hidden: number; out: number; prefix?: string }): VariableSpec[] {
  return toSpec(projectionHeadParamDefs(opts));
}

/** Creates a head with PyTorch's Linear initialisation U(±1/√fan_in), deterministic in the seed. */
export function createProjectionHead(opts: CreateProjectionHeadOptions): ProjectionHead {
  registerMissingGradients();
  const config = resolveHeadConfig(opts);
  const trainable = opts.trainable ?? true;
  const defs = projectionHeadParamDefs(config).map((d) => ({ ...d, trainable }));
  const vars = materialize(defs, opts.seed ?? 0, 'voco_head');
  return { kind: 'projection_head', config, spec: toSpec(defs), vars };
}

export function disposeProjectionHead(head: ProjectionHead): void {
  disposeVariables(head);
}

/**
 * BatchNorm1d(affine=False, track_running_stats=False) on [N, C]: per column, the batch mean and
 * the biased variance over the N rows, eps 1e-5.
 */
export function batchNorm1d(x: tf.Tensor2D, eps = BN_EPS): tf.Tensor2D {
  const [n, c] = x.shape;
  if (n < 2) throw new Error(`batch norm over ${n} row: PyTorch refuses batch statistics of a single value per channel`);
  // layers.batchNorm normalises [N, D0, D1, D2, C] over everything but C: give it N × 1³ × C.
  const { y } = batchNorm(tf.reshape(x, [n, 1, 1, 1, c]), { eps });
  return tf.reshape(y, [n, c]);
}

/** The head's forward: [N, inDim] → [N, out]. Batch statistics are those of these N rows. */
export function projectionHeadForward(head: ProjectionHead, x: tf.Tensor): tf.Tensor2D {
  const { prefix, inDim } = head.config;
  if (x.rank !== 2 || x.shape[1] !== inDim) throw new Error(`projection head expects [N, ${inDim}], got [${x.shape}]`);
  const v = head.vars;
  const lin = (t: tf.Tensor2D, layer: number) =>
    linear(t, getVar(v, `${prefix}.layer${layer}.0.weight`) as tf.Variable<tf.Rank.R2>, getVar(v, `${prefix}.layer${layer}.0.bias`) as tf.Variable<tf.Rank.R1>);
  return tf.tidy(() => {
    const h1 = tf.relu(batchNorm1d(lin(x as tf.Tensor2D, 1)));
    const h2 = tf.relu(batchNorm1d(lin(h1, 2)));
    return lin(h2, 3);
  });
}
