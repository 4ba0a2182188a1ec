import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { Ajv2020 as Ajv2020Type } from 'ajv/dist/2020.js';
import { formatPath, type Diagnostic } from './diagnostics.ts';
import type { PathSegment, SourceMap } from './pipeline-source.ts';
import { didYouMeanHint } from '../util/did-you-mean.ts';
import type { JsonSchema } from './stage.ts';

// ajv and ajv-formats are CommonJS packages; require gives their constructors without ESM interop guesswork.
const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020.js') as typeof Ajv2020Type;
const addFormats = require('ajv-formats') as (ajv: Ajv2020Type) => void;

const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false, useDefaults: true, verbose: true });
addFormats(ajv);

const compiled = new WeakMap<JsonSchema, ValidateFunction>();

export function compileSchema(schema: JsonSchema): ValidateFunction {
  const cached = compiled.get(schema);
  if (cached) return cached;
  const fn = ajv.compile(schema);
  compiled.set(schema, fn);
  return fn;
}

export function readSchemaFile(url: URL): JsonSchema {
  return JSON.parse(readFileSync(url, 'utf8')) as JsonSchema;
}

export const pipelineSchema = readSchemaFile(new URL('../../schemas/pipeline.schema.json', import.meta.url));

/**
 * Validates `data` (mutating it to fill defaults) and returns located diagnostics.
 * `basePath` is where `data` sits inside the pipeline document.
 */
export function validateAgainst(
  schema: JsonSchema,
  data: unknown,
  basePath: PathSegment[],
  sources: SourceMap,
): Diagnostic[] {
  const validate = compileSchema(schema);
  if (validate(data)) return [];
  return ajvErrorsToDiagnostics(validate.errors ?? [], data, basePath, sources);
}

function pointerToPath(pointer: string, data: unknown): PathSegment[] {
  if (!pointer) return [];
  const out: PathSegment[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const key: PathSegment = Array.isArray(cur) && /^\d+$/.test(seg) ? Number(seg) : seg;
    out.push(key);
    cur = typeof cur === 'object' && cur !== null ? (cur as Record<string | number, unknown>)[key] : undefined;
  }
  return out;
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

export function ajvErrorsToDiagnostics(
  errors: ErrorObject[],
  data: unknown,
  basePath: PathSegment[],
  sources: SourceMap,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const typeErrors = new Map<string, { path: PathSegment[]; types: string[]; value: unknown }>();
  // anyOf/oneOf summaries repeat what their branches said.
  const relevant = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && e.keyword !== 'if');
  for (const err of relevant) {
    const rel = pointerToPath(err.instancePath, data);
    const path = [...basePath, ...rel];
    const params = err.params as Record<string, unknown>;
    switch (err.keyword) {
      case 'additionalProperties': {
        const key = String(params.additionalProperty);
        const known = Object.keys(((err.parentSchema as JsonSchema | undefined)?.properties as object | undefined) ?? {});
        out.push({
          path: formatPath([...path, key]),
          message: `unknown key "${key}"`,
          pos: sources.keyPos([...path, key]),
          hint: didYouMeanHint(key, known) ?? (known.length ? `allowed: ${known.join(', ')}` : undefined),
        });
        break;
      }
      case 'required':
        out.push({
          path: formatPath(path),
          message: `missing required key "${String(params.missingProperty)}"`,
          pos: sources.valuePos(path),
        });
        break;
      case 'type': {
        const k = JSON.stringify(path);
        const entry = typeErrors.get(k) ?? { path, types: [], value: err.data };
        entry.types.push(...String(params.type).split(','));
        typeErrors.set(k, entry);
        break;
      }
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]).map(String);
        out.push({
          path: formatPath(path),
          message: `must be one of ${allowed.map((a) => `"${a}"`).join(', ')} (got ${describe(err.data)})`,
          pos: sources.valuePos(path),
          hint: typeof err.data === 'string' ? didYouMeanHint(err.data, allowed) : undefined,
        });
        break;
      }
      case 'const':
        out.push({
          path: formatPath(path),
          message: `must be ${describe(params.allowedValue)} (got ${describe(err.data)})`,
          pos: sources.valuePos(path),
        });
        break;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        out.push({
          path: formatPath(path),
          message: `must be ${String(params.comparison)} ${String(params.limit)} (got ${describe(err.data)})`,
          pos: sources.valuePos(path),
        });
        break;
      case 'propertyNames': {
        const name = String(params.propertyName);
        out.push({ path: formatPath([...path, name]), message: `invalid name "${name}"`, pos: sources.keyPos([...path, name]) });
        break;
      }
      case 'pattern':
        if (rel.length > 0 && errors.some((e) => e.keyword === 'propertyNames' && e.instancePath === err.instancePath)) break;
        out.push({
          path: formatPath(path),
          message: `${describe(err.data)} does not match the expected form ${String(params.pattern)}`,
          pos: sources.valuePos(path),
        });
        break;
      default:
        out.push({ path: formatPath(path), message: `${err.message ?? 'is invalid'} (got ${describe(err.data)})`, pos: sources.valuePos(path) });
    }
  }
  for (const { path, types, value } of typeErrors.values()) {
    out.push({
      path: formatPath(path),
      message: `must be ${[...new Set(types)].join(' or ')} (got ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value} ${describe(value)})`,
      pos: sources.valuePos(path),
    });
  }
  return out;
}

/** JSON Schema types allowed at `path` inside `schema` (following properties/items/$ref), if known. */
export function schemaTypesAt(schema: JsonSchema, path: readonly PathSegment[], root: JsonSchema = schema): string[] | undefined {
  let node: JsonSchema | undefined = schema;
  const deref = (n: JsonSchema | undefined): JsonSchema | undefined => {
    let cur = n;
    for (let i = 0; i < 8 && cur && typeof cur.$ref === 'string' && cur.$ref.startsWith('#/'); i++) {
      let target: unknown = root;
      for (const seg of (cur.$ref as string).slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[seg];
      cur = target as JsonSchema | undefined;
    }
    return cur;
  };
  for (const seg of path) {
    node = deref(node);
    if (!node) return undefined;
    const props = node.properties as Record<string, JsonSchema> | undefined;
    if (typeof seg === 'string' && props?.[seg]) node = props[seg];
    else if (typeof seg === 'number' && node.items && typeof node.items === 'object') node = node.items as JsonSchema;
    else if (typeof node.additionalProperties === 'object') node = node.additionalProperties as JsonSchema;
    else return undefined;
  }
  node = deref(node);
  if (!node) return undefined;
  if (typeof node.type === 'string') return [node.type];
  if (Array.isArray(node.type)) return node.type as string[];
  if (node.enum && (node.enum as unknown[]).every((v) => typeof v === 'string')) return ['string'];
  return undefined;
}
