/**
 * AdamW as torch.optim.AdamW (decoupled weight decay, optional AMSGrad), for tf.Variables.
 *
 * For a parameter θ with gradient g at its t-th update (t counted per parameter, from 1),
 * learning rate lr (given by the caller each step, e.g. from a schedule), decay λ:
 *   θ ← θ·(1 − lr·λ)                              (decoupled weight decay, first)
 *   m ← β₁·m + (1 − β₁)·g
 *   v ← β₂·v + (1 − β₂)·g²
 *   amsgrad: v̂ ← max(v̂, v), d = √v̂ / √(1 − β₂ᵗ) + ε;   otherwise d = √v / √(1 − β₂ᵗ) + ε
 *   θ ← θ − (lr / (1 − β₁ᵗ)) · m / d
 * m, v, v̂ start at zero. The bias corrections, step size and decay factor are computed in
 * float64 (as PyTorch does with Python floats), the tensor arithmetic in float32.
 *
 * As in PyTorch, a variable without a gradient this step is skipped entirely (no decay, no
 * moment update, its step count unchanged), while a zero gradient is a real update (decay, moment
 * decay). A learning rate of 0 (the first warm-up step) still updates the moments and step count.
 *
 * Defaults are VoCo's (REFERENCE §1.7, §2.4): lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight
 * decay 0.01 (PyTorch's default — VoCo does not pass one), amsgrad true.
 *
 * Checkpoint state uses PyTorch's per-parameter state names: `<var>.step` (a float32 scalar, as
 * PyTorch stores it), `<var>.exp_avg`, `<var>.exp_avg_sq` and, with amsgrad, `<var>.max_exp_avg_sq`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { gradEntries, type GradMap } from './grads.ts';

export type { GradMap } from './grads.ts';

export interface AdamWOptions {
  /** Learning rate used when step() is called without one (default 1e-4). */
  lr?: number;
  /** (β₁, β₂), default (0.9, 0.999). */
  betas?: [number, number];
  /** ε added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay λ (default 0.01). */
  weightDecay?: number;
  /** AMSGrad (default true, as VoCo). */
  amsgrad?: boolean;
  /**
   * Parameter group without weight decay: variables whose name satisfies this predicate get λ = 0
   * (e.g. biases and norm weights). Default: none — VoCo decays every parameter.
   */
  noDecay?: (name: string) => boolean;
}

/** One tensor of optimiser state, as plain data (float32, row-major). */
export interface OptimizerTensorState {
  shape: number[];
  data: Float32Array;
}

/** AdamW's state: the number of step() calls and the per-variable tensors (see the file header). */
export interface AdamWState {
  step: number;
  tensors: Map<string, OptimizerTensorState>;
}

export interface AdamWStepResult {
  /** Names of the variables that were updated. */
  updated: string[];
  /** Names of the variables that had no gradient and were skipped. */
  skipped: string[];
}

interface Slot {
  step: number;
  m: tf.Variable;
  v: tf.Variable;
  vmax: tf.Variable | null;
}

const SUFFIXES = ['.max_exp_avg_sq', '.exp_avg_sq', '.exp_avg', '.step'] as const;
type Suffix = (typeof SUFFIXES)[number];

function zerosVariable(shape: number[]): tf.Variable {
  const z = tf.zeros(shape, 'float32');
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

function variableFrom(state: OptimizerTensorState, what: string): tf.Variable {
  const size = state.shape.reduce((a, b) => a * b, 1);
  if (state.data.length !== size) {
    throw new Error(`AdamW.setState: "${what}" has ${state.data.length} values, its shape [${state.shape}] needs ${size}`);
  }
  const t = tf.tensor(state.data, state.shape, 'float32');
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function checkLr(lr: number, where: string): void {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`${where}: learning rate must be a finite number >= 0, got ${lr}`);
}

export class AdamW {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly amsgrad: boolean;
  private readonly noDecay: ((name: string) => boolean) | undefined;
  private readonly slots = new Map<string, Slot>();
  private steps = 0;

  constructor(opts: AdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-4;
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    this.beta1 = b1;
    this.beta2 = b2;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.amsgrad = opts.amsgrad ?? true;
    this.noDecay = opts.noDecay;
    checkLr(this.lr, 'AdamW');
    for (const [name, b] of [['betas[0]', b1], ['betas[1]', b2]] as const) {
      if (!(Number.isFinite(b) && b >= 0 && b < 1)) throw new Error(`AdamW: ${name} must be in [0, 1), got ${b}`);
    }
    if (!(Number.isFinite(this.eps) && this.eps >= 0)) throw new Error(`AdamW: eps must be a finite number >= 0, got ${this.eps}`);
    if (!(Number.isFinite(this.weightDecay) && this.weightDecay >= 0)) {
      throw new Error(`AdamW: weightDecay must be a finite number >= 0, got ${this.weightDecay}`);
    }
  }

  /** Number of step() calls so far (restored by setState). */
  get stepCount(): number {
    return this.steps;
  }

  /** The number of updates variable `name` has received (0 if none). */
  variableStep(name: string): number {
    return this.slots.get(name)?.step ?? 0;
  }

  /** The weight decay applied to variable `name`. */
  weightDecayFor(name: string): number {
    return this.noDecay?.(name) ? 0 : this.weightDecay;
  }

  /**
   * One optimiser step: updates every variable in `vars` that has a gradient in `grads` (same
   * key), in place. Gradients are not disposed. All shapes are checked before anything changes.
   */
  step(grads: GradMap, vars: Map<string, tf.Variable>, lr: number = this.lr): AdamWStepResult {
    checkLr(lr, 'AdamW.step');
    const gradMap = grads instanceof Map ? grads : new Map(gradEntries(grads));
    for (const name of gradMap.keys()) {
      if (!vars.has(name)) throw new Error(`AdamW.step: gradient "${name}" has no variable of that name`);
    }
    const work: Array<[string, tf.Variable, tf.Tensor]> = [];
    const skipped: string[] = [];
    for (const [name, variable] of vars) {
      const g = gradMap.get(name);
      if (g === undefined) {
        skipped.push(name);
        continue;
      }
      if (variable.dtype !== 'float32' || g.dtype !== 'float32') {
        throw new Error(`AdamW.step: "${name}" must be float32 (variable ${variable.dtype}, gradient ${g.dtype})`);
      }
      if (!shapesEqual(variable.shape, g.shape)) {
        throw new Error(`AdamW.step: gradient "${name}" has shape [${g.shape}], its variable [${variable.shape}]`);
      }
      const slot = this.slots.get(name);
      if (slot !== undefined && !shapesEqual(slot.m.shape, variable.shape)) {
        throw new Error(`AdamW.step: state of "${name}" has shape [${slot.m.shape}], the variable [${variable.shape}]`);
      }
      work.push([name, variable, g]);
    }

    for (const [name, variable, g] of work) {
      let slot = this.slots.get(name);
      if (slot === undefined) {
        slot = {
          step: 0,
          m: zerosVariable(variable.shape),
          v: zerosVariable(variable.shape),
          vmax: this.amsgrad ? zerosVariable(variable.shape) : null,
        };
        this.slots.set(name, slot);
      } else if (this.amsgrad && slot.vmax === null) {
        slot.vmax = zerosVariable(variable.shape);
      }
      this.update(slot, variable, g, lr, this.weightDecayFor(name));
    }
    this.steps++;
    return { updated: work.map(([name]) => name), skipped };
  }

  private update(slot: Slot, param: tf.Variable, g: tf.Tensor, lr: number, wd: number): void {
    const t = slot.step + 1;
    const b1 = this.beta1;
    const b2 = this.beta2;
    const biasCorrection1 = 1 - b1 ** t;
    const biasCorrection2Sqrt = Math.sqrt(1 - b2 ** t);
    const stepSize = lr / biasCorrection1;
    const decay = 1 - lr * wd;
    const { m, v, vmax } = slot;
    tf.tidy(() => {
      const s = (x: number): tf.Scalar => tf.scalar(x, 'float32');
      const theta = decay !== 1 ? tf.mul(param, s(decay)) : param;
      const mNew = tf.add(tf.mul(m, s(b1)), tf.mul(g, s(1 - b1)));
      const vNew = tf.add(tf.mul(v, s(b2)), tf.mul(tf.square(g), s(1 - b2)));
      let second: tf.Tensor = vNew;
      if (vmax !== null) {
        const vmaxNew = tf.maximum(vmax, vNew);
        vmax.assign(vmaxNew);
        second = vmaxNew;
      }
      const denom = tf.add(tf.div(tf.sqrt(second), s(biasCorrection2Sqrt)), s(this.eps));
      const thetaNew = tf.sub(theta, tf.mul(tf.div(mNew, denom), s(stepSize)));
      m.assign(mNew);
      v.assign(vNew);
      param.assign(thetaNew);
    });
    slot.step = t;
  }

  /** The state as plain data, for a checkpoint (see the file header for the names). */
  async getState(): Promise<AdamWState> {
    const tensors = new Map<string, OptimizerTensorState>();
    for (const [name, slot] of this.slots) {
      tensors.set(`${name}.step`, { shape: [], data: Float32Array.of(slot.step) });
      const parts: Array<[string, tf.Variable | null]> = [
        ['exp_avg', slot.m],
        ['exp_avg_sq', slot.v],
        ['max_exp_avg_sq', slot.vmax],
      ];
      for (const [suffix, variable] of parts) {
        if (variable === null) continue;
        const data = (await variable.data()) as Float32Array;
        tensors.set(`${name}.${suffix}`, { shape: [...variable.shape], data: Float32Array.from(data) });
      }
    }
    return { step: this.steps, tensors };
  }

  /**
   * Replaces the whole state with `state` (from getState, possibly of another instance). A
   * variable's `.step` defaults to `state.step` when absent. With amsgrad, every variable needs
   * `max_exp_avg_sq`; without, it must not have one. Shapes are checked against the variables at
   * the next step().
   */
  setState(state: AdamWState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) throw new Error(`AdamW.setState: step must be an integer >= 0, got ${state.step}`);
    const byVar = new Map<string, Partial<Record<Suffix, OptimizerTensorState>>>();
    for (const [key, value] of state.tensors) {
      const suffix = SUFFIXES.find((s) => key.endsWith(s) && key.length > s.length);
      if (suffix === undefined) {
        throw new Error(`AdamW.setState: unknown state entry "${key}" (expected <var>${SUFFIXES.join(', <var>')})`);
      }
      const name = key.slice(0, -suffix.length);
      const entry = byVar.get(name) ?? {};
      entry[suffix] = value;
      byVar.set(name, entry);
    }
    for (const [name, entry] of byVar) {
      for (const need of ['.exp_avg', '.exp_avg_sq'] as const) {
        if (entry[need] === undefined) throw new Error(`AdamW.setState: "${name}${need}" is missing`);
      }
      if (this.amsgrad && entry['.max_exp_avg_sq'] === undefined) {
        throw new Error(`AdamW.setState: "${name}.max_exp_avg_sq" is missing (this optimiser uses amsgrad)`);
      }
      if (!this.amsgrad && entry['.max_exp_avg_sq'] !== undefined) {
        throw new Error(`AdamW.setState: "${name}.max_exp_avg_sq" given, but this optimiser does not use amsgrad`);
      }
      const shape = entry['.exp_avg']!.shape;
      for (const suffix of ['.exp_avg', '.exp_avg_sq', '.max_exp_avg_sq'] as const) {
        const e = entry[suffix];
        const size = e === undefined ? 0 : e.shape.reduce((a, b) => a * b, 1);
        if (e !== undefined && e.data.length !== size) {
          throw new Error(`AdamW.setState: "${name}${suffix}" has ${e.data.length} values, its shape [${e.shape}] needs ${size}`);
        }
      }
      for (const other of ['.exp_avg_sq', '.max_exp_avg_sq'] as const) {
        const o = entry[other];
        if (o !== undefined && !shapesEqual(o.shape, shape)) {
          throw new Error(`AdamW.setState: "${name}${other}" has shape [${o.shape}], "${name}.exp_avg" [${shape}]`);
        }
      }
      const step = entry['.step']?.data[0] ?? state.step;
      if (!(Number.isInteger(step) && step >= 0)) throw new Error(`AdamW.setState: "${name}.step" must be an integer >= 0, got ${step}`);
    }

    this.disposeSlots();
    for (const [name, entry] of byVar) {
      const vmaxState = entry['.max_exp_avg_sq'];
      this.slots.set(name, {
        step: entry['.step']?.data[0] ?? state.step,
        m: variableFrom(entry['.exp_avg']!, `${name}.exp_avg`),
        v: variableFrom(entry['.exp_avg_sq']!, `${name}.exp_avg_sq`),
        vmax: vmaxState !== undefined ? variableFrom(vmaxState, `${name}.max_exp_avg_sq`) : null,
      });
    }
    this.steps = state.step;
  }

  private disposeSlots(): void {
    for (const slot of this.slots.values()) {
      slot.m.dispose();
      slot.v.dispose();
      slot.vmax?.dispose();
    }
    this.slots.clear();
  }

  /** Frees the state tensors; the step count is reset. */
  dispose(): void {
    this.disposeSlots();
    this.steps = 0;
  }
}
