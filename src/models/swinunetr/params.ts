/**
 * Explicit-parameter models: a model is a list of variable specs plus a map of TF.js variables,
 * each named by its MONAI/PyTorch state-dict key and stored in TF.js layout.
 *
 * Layout transposes (PyTorch → TF.js), applied by the weight importer:
 *   conv3d           (out, in, kd, kh, kw) → [kd, kh, kw, in, out]
 *   conv3dTranspose  (in, out, kd, kh, kw) → [kd, kh, kw, out, in]
 *   linear           (out, in)             → [in, out]
 *   plain            unchanged
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRng, type Rng } from '../../util/rng.ts';

export type VariableLayout = 'conv3d' | 'conv3dTranspose' | 'linear' | 'plain';

export interface VariableSpec {
  /** MONAI state-dict key, e.g. `swinViT.layers1.0.blocks.0.attn.qkv.weight`. */
  name: string;
  layout: VariableLayout;
  /** Shape in TF.js layout. */
  shape: number[];
  trainable: boolean;
  /** Element type; absent means float32. Only the relative-position index buffers are int32. */
  dtype?: 'float32' | 'int32';
}

/** The shape every model in src/models shares. */
export interface ModelVariables {
  spec: VariableSpec[];
  vars: Map<string, tf.Variable>;
}

/** How a variable is initialised (PyTorch defaults unless stated). */
export type InitKind =
  /** U(−1/√fan_in, 1/√fan_in): PyTorch's kaiming_uniform_(a=√5) for weights, and the matching bias rule. */
  | { kind: 'uniformFanIn'; fanIn: number }
  | { kind: 'ones' }
  | { kind: 'zeros' }
  /** trunc_normal_(std, a=−2, b=2) (absolute bounds, as timm/MONAI call it). */
  | { kind: 'truncNormal'; std: number }
  /** A fixed value computed from the architecture (relative-position index). */
  | { kind: 'computed'; values: () => Int32Array | Float32Array };

export interface ParamDef extends VariableSpec {
  init: InitKind;
}

/** Collects parameter definitions in state-dict order. */
export class ParamCollector {
  readonly defs: ParamDef[] = [];

  add(def: ParamDef): void {
    if (this.defs.some((d) => d.name === def.name)) throw new Error(`duplicate parameter ${def.name}`);
    this.defs.push(def);
  }

  /** PyTorch nn.Linear(inF, outF, bias). */
  linear(prefix: string, inF: number, outF: number, bias = true): void {
    this.add({ name: `${prefix}.weight`, layout: 'linear', shape: [inF, outF], trainable: true, init: { kind: 'uniformFanIn', fanIn: inF } });
    if (bias) this.add({ name: `${prefix}.bias`, layout: 'plain', shape: [outF], trainable: true, init: { kind: 'uniformFanIn', fanIn: inF } });
  }

  /** PyTorch nn.LayerNorm(c) (elementwise affine). */
  layerNorm(prefix: string, c: number): void {
    this.add({ name: `${prefix}.weight`, layout: 'plain', shape: [c], trainable: true, init: { kind: 'ones' } });
    this.add({ name: `${prefix}.bias`, layout: 'plain', shape: [c], trainable: true, init: { kind: 'zeros' } });
  }

  /** PyTorch nn.Conv3d(inC, outC, k, bias). */
  conv3d(prefix: string, inC: number, outC: number, k: number, bias: boolean): void {
    const fanIn = inC * k * k * k;
    this.add({ name: `${prefix}.weight`, layout: 'conv3d', shape: [k, k, k, inC, outC], trainable: true, init: { kind: 'uniformFanIn', fanIn } });
    if (bias) this.add({ name: `${prefix}.bias`, layout: 'plain', shape: [outC], trainable: true, init: { kind: 'uniformFanIn', fanIn } });
  }

  /** PyTorch nn.ConvTranspose3d(inC, outC, k, bias=False): its fan_in is weight.size(1)·k³ = outC·k³. */
  conv3dTranspose(prefix: string, inC: number, outC: number, k: number): void {
    const fanIn = outC * k * k * k;
    this.add({ name: `${prefix}.weight`, layout: 'conv3dTranspose', shape: [k, k, k, outC, inC], trainable: true, init: { kind: 'uniformFanIn', fanIn } });
  }
}

/** Strips the init rule: what other modules (weights import/export) see. */
export function toSpec(defs: readonly ParamDef[]): VariableSpec[] {
  return defs.map(({ init: _init, ...spec }) => ({ ...spec, shape: [...spec.shape] }));
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Draws the initial values of one parameter (deterministic in (seed, name)). */
export function initialValues(def: ParamDef, rng: Rng): Float32Array | Int32Array {
  const n = sizeOf(def.shape);
  const init = def.init;
  switch (init.kind) {
    case 'ones':
      return new Float32Array(n).fill(1);
    case 'zeros':
      return new Float32Array(n);
    case 'uniformFanIn': {
      const bound = 1 / Math.sqrt(init.fanIn);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = (2 * rng.float() - 1) * bound;
      return out;
    }
    case 'truncNormal': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let v: number;
        do v = rng.normal() * init.std;
        while (v < -2 || v > 2);
        out[i] = v;
      }
      return out;
    }
    case 'computed': {
      const values = init.values();
      if (values.length !== n) throw new Error(`${def.name}: computed ${values.length} values for shape [${def.shape}]`);
      return values;
    }
  }
}

let modelCounter = 0;

/**
 * Creates the TF.js variables. TF.js variable names are global, so each model gets a unique prefix
 * (`<tag>_<k>/`); the map is keyed by the bare state-dict key.
 */
export function materialize(defs: readonly ParamDef[], seed: number, tag: string): Map<string, tf.Variable> {
  const id = `${tag}_${modelCounter++}`;
  const vars = new Map<string, tf.Variable>();
  for (const def of defs) {
    const rng = createRng(seed, tag, def.name);
    const values = initialValues(def, rng);
    const dtype = def.dtype ?? 'float32';
    const t = tf.tensor(values, def.shape, dtype);
    vars.set(def.name, tf.variable(t, def.trainable, `${id}/${def.name}`, dtype));
    t.dispose();
  }
  return vars;
}

/** Disposes every variable of a model. */
export function disposeVariables(model: ModelVariables): void {
  for (const v of model.vars.values()) v.dispose();
  model.vars.clear();
}

/** Looks a variable up, with a helpful error when the model lacks it. */
export function getVar(vars: Map<string, tf.Variable>, name: string): tf.Variable {
  const v = vars.get(name);
  if (!v) throw new Error(`model has no variable ${name}`);
  return v;
}

/**
 * Assigns values (TF layout, e.g. from `loadIntoSpec`) to a model's variables; values are cast to
 * each variable's dtype. Returns the names assigned. Unknown names throw; shapes must match.
 */
export function assignVariables(model: ModelVariables, values: ReadonlyMap<string, { shape: readonly number[]; data: ArrayLike<number> }>): string[] {
  const assigned: string[] = [];
  for (const [name, val] of values) {
    const v = getVar(model.vars, name);
    if (v.shape.length !== val.shape.length || v.shape.some((s, i) => s !== val.shape[i])) {
      throw new Error(`${name}: variable shape [${v.shape}] but value shape [${val.shape}]`);
    }
    const data = v.dtype === 'int32' ? Int32Array.from(val.data) : val.data instanceof Float32Array ? val.data : Float32Array.from(val.data);
    const t = tf.tensor(data, v.shape, v.dtype);
    v.assign(t);
    t.dispose();
    assigned.push(name);
  }
  return assigned;
}
