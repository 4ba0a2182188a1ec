import { readFileSync } from 'node:fs';
import { hashJson, type JsonValue } from '../util/hash.ts';
import type { KeyComponents } from '../store/store.ts';
import type { StageItem } from './stage.ts';

/** Bump when the way keys are computed changes: every key changes with it. */
export const KEY_ALGORITHM = 1;

export const VOCO_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/**
 * The stage key: sha256 of canonical JSON of everything that determines its outputs. Paths of
 * the cache, timestamps, log level and concurrency are deliberately absent.
 */
export function stageKey(c: KeyComponents): string {
  return hashJson(c);
}

/**
 * An item's key leaves out the stage's inputs and external fingerprint: adding one file to a
 * dataset must not change the keys of the 10,000 items already done. The item's own
 * fingerprint stands for its inputs.
 */
export function itemKey(c: KeyComponents, item: StageItem, itemParams: JsonValue = c.params): string {
  const { inputs: _inputs, external: _external, params: _params, ...rest } = c;
  return hashJson({ ...rest, params: itemParams, item: { id: item.id, fingerprint: item.fingerprint } });
}

/** Human-readable reasons why `next` differs from `prev`. */
export function diffComponents(prev: Partial<KeyComponents>, next: KeyComponents): string[] {
  const reasons: string[] = [];
  if (prev.algorithm !== undefined && prev.algorithm !== next.algorithm) reasons.push(`key algorithm changed (${prev.algorithm} → ${next.algorithm})`);
  if (prev.kind !== undefined && prev.kind !== next.kind) reasons.push(`stage kind changed: ${prev.kind} → ${next.kind}`);
  else if (prev.kindVersion !== undefined && String(prev.kindVersion) !== String(next.kindVersion)) {
    reasons.push(`stage kind ${next.kind} version changed: ${prev.kindVersion} → ${next.kindVersion}`);
  }
  if ((prev.sourceHash ?? null) !== next.sourceHash && prev.sourceHash !== undefined) reasons.push('plugin module source changed');
  if (prev.seed !== undefined && prev.seed !== next.seed) reasons.push(`seed changed: ${prev.seed} → ${next.seed}`);
  if (prev.params !== undefined) {
    for (const d of diffJson(prev.params, next.params, 'with')) reasons.push(`param ${d}`);
  }
  if (prev.inputs !== undefined) {
    for (const port of new Set([...Object.keys(prev.inputs), ...Object.keys(next.inputs)])) {
      if (prev.inputs[port] !== next.inputs[port]) reasons.push(`input "${port}" changed`);
    }
  }
  if (prev.external !== undefined && prev.external !== next.external) reasons.push('source data changed');
  if (prev.environment !== undefined) {
    for (const d of diffJson(prev.environment, next.environment, 'environment')) reasons.push(d);
  }
  return reasons;
}

function show(v: JsonValue | undefined): string {
  if (v === undefined) return '(unset)';
  const s = JSON.stringify(v);
  return s.length > 50 ? `${s.slice(0, 47)}...` : s;
}

/** Leaf-level differences between two JSON values, as `path: old → new`. */
export function diffJson(a: JsonValue | undefined, b: JsonValue | undefined, path: string): string[] {
  const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const out: string[] = [];
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) out.push(...diffJson(a[k], b[k], `${path}.${k}`));
    return out;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: ${show(a)} → ${show(b)}`];
}
