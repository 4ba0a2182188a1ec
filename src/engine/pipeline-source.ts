import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, parse as parseYaml, type Node } from 'yaml';
import { PipelineError, formatPath, type Diagnostic, type SourcePos } from './diagnostics.ts';

export type PathSegment = string | number;

/** Positions of every key and value of a (merged) document, by path. */
export class SourceMap {
  private readonly entries = new Map<string, { key?: SourcePos; value?: SourcePos }>();

  set(path: readonly PathSegment[], where: { key?: SourcePos; value?: SourcePos }): void {
    this.entries.set(JSON.stringify(path), where);
  }

  /** Drops every entry at or below `path` (when a value is replaced wholesale). */
  clearBelow(path: readonly PathSegment[]): void {
    const prefix = JSON.stringify(path).slice(0, -1);
    for (const k of [...this.entries.keys()]) {
      if (k === `${prefix}]` || k.startsWith(`${prefix},`)) this.entries.delete(k);
    }
  }

  /** Position of the value at `path`, or of its nearest located ancestor. */
  valuePos(path: readonly PathSegment[]): SourcePos | undefined {
    for (let n = path.length; n >= 0; n--) {
      const e = this.entries.get(JSON.stringify(path.slice(0, n)));
      if (e?.value ?? e?.key) return e.value ?? e.key;
    }
    return undefined;
  }

  /** Position of the key at `path` (for unknown-key errors), falling back to the value. */
  keyPos(path: readonly PathSegment[]): SourcePos | undefined {
    const e = this.entries.get(JSON.stringify(path));
    return e?.key ?? this.valuePos(path);
  }

  mergeFrom(other: SourceMap): void {
    for (const [k, v] of other.entries) this.entries.set(k, v);
  }
}

export interface LoadedYaml {
  file: string;
  value: unknown;
  sources: SourceMap;
}

/** Parses one YAML file, keeping the position of every node. Throws PipelineError on syntax errors. */
export function loadYamlFile(file: string): LoadedYaml {
  const abs = resolve(file);
  if (!existsSync(abs)) {
    throw new PipelineError([{ path: '', message: `file not found: ${file}`, pos: { file: abs, line: 0, col: 0 } }]);
  }
  return loadYamlText(readFileSync(abs, 'utf8'), abs);
}

export function loadYamlText(text: string, file: string): LoadedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const errors = [...doc.errors];
  if (errors.length > 0) {
    throw new PipelineError(
      errors.map((e) => {
        const lp = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        return {
          path: '',
          message: `YAML syntax error: ${e.message.split('\n')[0]}`,
          pos: { file, line: lp?.line ?? 0, col: lp?.col ?? 0 },
        };
      }),
    );
  }
  const sources = new SourceMap();
  const at = (offset: number): SourcePos => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col };
  };
  const walk = (node: Node | null | undefined, path: PathSegment[]) => {
    if (!node) return;
    if (isMap(node)) {
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
        const childPath = [...path, key];
        const valueNode = pair.value as Node | null;
        sources.set(childPath, {
          key: keyNode?.range ? at(keyNode.range[0]) : undefined,
          value: valueNode?.range ? at(valueNode.range[0]) : keyNode?.range ? at(keyNode.range[0]) : undefined,
        });
        walk(valueNode, childPath);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const itemNode = item as Node | null;
        const childPath = [...path, i];
        if (itemNode?.range) sources.set(childPath, { value: at(itemNode.range[0]) });
        walk(itemNode, childPath);
      });
    }
  };
  if (doc.contents) {
    if (doc.contents.range) sources.set([], { value: at(doc.contents.range[0]) });
    walk(doc.contents as Node, []);
  }
  return { file, value: doc.toJS({ maxAliasCount: 100 }) ?? {}, sources };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: maps merge key by key, everything else (arrays, scalars) is replaced by `over`. */
export function deepMerge(
  base: unknown,
  over: unknown,
  sources?: SourceMap,
  path: PathSegment[] = [],
): unknown {
  if (isPlainObject(base) && isPlainObject(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) {
      out[k] = k in base ? deepMerge(base[k], v, sources, [...path, k]) : v;
    }
    return out;
  }
  if (sources && base !== undefined) sources.clearBelow(path);
  return over;
}

export interface ComposedSource {
  /** The pipeline file given on the command line. */
  file: string;
  /** Every file that contributed (extends chain, overlays), in merge order. */
  files: string[];
  value: Record<string, unknown>;
  sources: SourceMap;
}

/** Loads a pipeline file, resolving `extends` (a path or a list, relative to the file), then overlays. */
export function composePipelineSource(file: string, overlays: readonly string[] = []): ComposedSource {
  const files: string[] = [];
  const sources = new SourceMap();
  const resolveExtends = (path: string, chain: string[]): unknown => {
    const abs = resolve(path);
    if (chain.includes(abs)) {
      const cycle = [...chain.slice(chain.indexOf(abs)), abs].join(' → ');
      throw new PipelineError([{ path: 'extends', message: `extends cycle: ${cycle}`, pos: { file: abs, line: 0, col: 0 } }]);
    }
    const loaded = loadYamlFile(abs);
    if (!isPlainObject(loaded.value)) {
      throw new PipelineError([
        { path: '', message: 'a pipeline file must be a YAML mapping', pos: loaded.sources.valuePos([]) ?? { file: abs, line: 1, col: 1 } },
      ]);
    }
    const { extends: ext, ...own } = loaded.value;
    let merged: unknown = {};
    if (ext !== undefined) {
      const bases = Array.isArray(ext) ? ext : [ext];
      bases.forEach((b, i) => {
        if (typeof b !== 'string') {
          throw new PipelineError([
            {
              path: Array.isArray(ext) ? `extends[${i}]` : 'extends',
              message: 'must be a path to another pipeline YAML file',
              pos: loaded.sources.valuePos(Array.isArray(ext) ? ['extends', i] : ['extends']),
            },
          ]);
        }
        const basePath = resolve(dirname(abs), b);
        if (!existsSync(basePath)) {
          throw new PipelineError([
            { path: 'extends', message: `file not found: ${b}`, pos: loaded.sources.valuePos(Array.isArray(ext) ? ['extends', i] : ['extends']) },
          ]);
        }
        merged = deepMerge(merged, resolveExtends(basePath, [...chain, abs]), sources);
      });
    }
    files.push(abs);
    merged = deepMerge(merged, own, sources);
    sources.mergeFrom(loaded.sources);
    return merged;
  };
  let value = resolveExtends(file, []);
  for (const overlay of overlays) {
    const loaded = loadYamlFile(overlay);
    files.push(loaded.file);
    value = deepMerge(value, loaded.value, sources);
    sources.mergeFrom(loaded.sources);
  }
  return { file: resolve(file), files, value: value as Record<string, unknown>, sources };
}

/** Parses `a.b[0].c` or `a.b.0.c` into path segments. */
export function parseSetPath(text: string): PathSegment[] {
  const segments: PathSegment[] = [];
  for (const part of text.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m || (m[1] === '' && !m[2])) throw new Error(`invalid path "${text}"`);
    if (m[1]) segments.push(/^\d+$/.test(m[1]) ? Number(m[1]) : m[1]);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) segments.push(Number(idx[1]));
  }
  return segments;
}

export type SchemaTypeLookup = (path: readonly PathSegment[]) => string[] | undefined;

export interface SetOverride {
  text: string;
  path: PathSegment[];
  raw: string;
}

export function parseSetOverride(text: string): SetOverride {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new PipelineError([{ path: '', message: `--set expects path=value, got "${text}"`, pos: setPos(text) }]);
  try {
    return { text, path: parseSetPath(text.slice(0, eq).trim()), raw: text.slice(eq + 1) };
  } catch (e) {
    throw new PipelineError([{ path: '', message: `--set: ${(e as Error).message}`, pos: setPos(text) }]);
  }
}

export function setPos(text: string): SourcePos {
  return { file: `--set ${text}`, line: 0, col: 0 };
}

/**
 * Types a --set value by the schema at its path: a string field keeps the raw text, a number
 * field gets a number, anything else is read as YAML (so `[1,2]` is a list).
 */
export function coerceSetValue(raw: string, types: string[] | undefined): unknown {
  if (types && types.length === 1 && types[0] === 'string') return raw;
  let parsed: unknown;
  try {
    parsed = parseYaml(raw);
  } catch {
    parsed = raw;
  }
  if (types?.some((t) => t === 'number' || t === 'integer') && typeof parsed === 'string' && raw.trim() !== '') {
    const n = Number(raw);
    if (!Number.isNaN(n)) return n;
  }
  if (types?.includes('string') && typeof parsed !== 'string' && !types.some((t) => t !== 'string' && t !== 'null')) {
    return raw;
  }
  return parsed;
}

/** Writes `value` at `path` inside `doc`, creating maps on the way. */
export function setAtPath(doc: Record<string, unknown>, path: readonly PathSegment[], value: unknown): void {
  let cur: unknown = doc;
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i]!;
    const next = (cur as Record<string | number, unknown>)[seg];
    if (typeof next !== 'object' || next === null) {
      (cur as Record<string | number, unknown>)[seg] = typeof path[i + 1] === 'number' ? [] : {};
    }
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  (cur as Record<string | number, unknown>)[path[path.length - 1]!] = value;
}

export function getAtPath(doc: unknown, path: readonly PathSegment[]): unknown {
  let cur = doc;
  for (const seg of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

const PARAM_REF = /\$\{\s*params\.([A-Za-z0-9_.-]+)\s*\}/g;
const WHOLE_PARAM_REF = /^\$\{\s*params\.([A-Za-z0-9_.-]+)\s*\}$/;

/**
 * Replaces `${params.x}` references. A string that is exactly one reference takes the param's
 * value with its type; references inside a longer string are substituted as text.
 */
export function interpolateParams(
  value: unknown,
  params: Record<string, unknown>,
  sources: SourceMap,
  diagnostics: Diagnostic[],
  path: PathSegment[] = [],
): unknown {
  if (typeof value === 'string') {
    const lookup = (name: string): unknown => {
      const v = getAtPath(params, name.split('.'));
      if (v === undefined) {
        const known = Object.keys(params);
        diagnostics.push({
          path: formatPath(path),
          message: `unknown param "${name}" in "${value}"`,
          pos: sources.valuePos(path),
          hint: known.length ? `params defined: ${known.join(', ')}` : 'the pipeline defines no params',
        });
      }
      return v;
    };
    const whole = WHOLE_PARAM_REF.exec(value);
    if (whole) return lookup(whole[1]!) ?? value;
    if (!value.includes('${')) return value;
    return value.replace(PARAM_REF, (m, name: string) => {
      const v = lookup(name);
      return v === undefined ? m : typeof v === 'string' ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateParams(v, params, sources, diagnostics, [...path, i]));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolateParams(v, params, sources, diagnostics, [...path, k]);
    return out;
  }
  return value;
}

/** Resolves references between params themselves (a param may use another), up to a fixed depth. */
export function resolveParams(
  params: Record<string, unknown>,
  sources: SourceMap,
  diagnostics: Diagnostic[],
): Record<string, unknown> {
  let current = params;
  for (let round = 0; round < 8; round++) {
    const scratch: Diagnostic[] = [];
    const next = interpolateParams(current, current, sources, scratch, ['params']) as Record<string, unknown>;
    if (JSON.stringify(next) === JSON.stringify(current)) {
      diagnostics.push(...scratch);
      return next;
    }
    current = next;
  }
  diagnostics.push({ path: 'params', message: 'params reference each other in a cycle', pos: sources.valuePos(['params']) });
  return current;
}
