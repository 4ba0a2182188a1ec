import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DepGraph, DepGraphCycleError } from 'dependency-graph';
import { PipelineError, formatPath, type Diagnostic } from './diagnostics.ts';
import {
  coerceSetValue,
  composePipelineSource,
  interpolateParams,
  isPlainObject,
  parseSetOverride,
  resolveParams,
  setAtPath,
  setPos,
  type ComposedSource,
  type SetOverride,
  type SourceMap,
} from './pipeline-source.ts';
import { pipelineSchema, schemaTypesAt, validateAgainst } from './schema.ts';
import { portSpec, type PortSpec, type StageDefinition } from './stage.ts';
import { builtinStageKinds, loadBuiltinStage } from '../../stages/index.ts';
import { didYouMeanHint } from '../util/did-you-mean.ts';
import { sha256Hex } from '../util/hash.ts';

export interface StageResources {
  cpu: number;
  gpu: number;
  /** MiB */
  memory: number;
}

export interface ResolvedStage {
  name: string;
  uses: string;
  def: StageDefinition;
  /** `with:` after interpolation, overrides and schema defaults. */
  params: Record<string, unknown>;
  /** Input port → upstream (stage, port). */
  inputs: Record<string, { stage: string; port: string }>;
  resources: StageResources;
  /** sha256 of a plugin module's source: a code change makes the stage stale. */
  sourceHash?: string;
}

export interface ResolvedPipeline {
  file: string;
  dir: string;
  files: string[];
  name: string;
  seed: number;
  cacheDir?: string;
  params: Record<string, unknown>;
  stages: Map<string, ResolvedStage>;
  /** Topological order. */
  order: string[];
  /** Upstream stage names by stage. */
  dependencies: Map<string, string[]>;
  /** Downstream stage names by stage. */
  dependants: Map<string, string[]>;
  sources: SourceMap;
  /** The fully resolved document, recorded in run records. */
  config: Record<string, unknown>;
}

export interface ResolveOptions {
  overlays?: string[];
  sets?: string[];
  /** `--backend`: the compute backend of every stage that takes a `backend` param, over the pipeline's and the stage's. */
  backend?: string;
}

const STAGE_REF = /^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)$/;

/** Loads, merges, overrides, interpolates and validates a pipeline. Throws PipelineError with every problem found. */
export async function resolvePipeline(file: string, opts: ResolveOptions = {}): Promise<ResolvedPipeline> {
  const composed = composePipelineSource(file, opts.overlays ?? []);
  const { sources } = composed;
  const doc = composed.value;
  const diagnostics: Diagnostic[] = [];

  const sets: SetOverride[] = [];
  for (const text of opts.sets ?? []) {
    try {
      sets.push(parseSetOverride(text));
    } catch (e) {
      if (e instanceof PipelineError) diagnostics.push(...e.diagnostics);
      else throw e;
    }
  }
  // `uses` overrides first: they decide which schema types the other overrides.
  const isUses = (s: SetOverride) => s.path[0] === 'stages' && s.path.length === 3 && s.path[2] === 'uses';
  for (const s of sets.filter(isUses)) applySet(doc, sources, s, undefined);

  const stagesDoc = isPlainObject(doc.stages) ? doc.stages : {};
  const defs = new Map<string, { def: StageDefinition; sourceHash?: string }>();
  for (const [name, stage] of Object.entries(stagesDoc)) {
    if (!isPlainObject(stage) || typeof stage.uses !== 'string') continue;
    const loaded = await loadStageDefinition(stage.uses, composed, name, diagnostics);
    if (loaded) defs.set(name, loaded);
  }

  for (const s of sets.filter((s) => !isUses(s))) {
    let types: string[] | undefined;
    if (s.path[0] === 'stages' && s.path[2] === 'with' && typeof s.path[1] === 'string') {
      const def = defs.get(s.path[1])?.def;
      if (def) types = schemaTypesAt(def.paramsSchema, s.path.slice(3));
    } else {
      types = schemaTypesAt(pipelineSchema, s.path);
    }
    applySet(doc, sources, s, types);
  }

  const params = resolveParams(isPlainObject(doc.params) ? doc.params : {}, sources, diagnostics);
  const { params: _p, ...rest } = doc;
  const interpolated = interpolateParams(rest, params, sources, diagnostics) as Record<string, unknown>;
  const config: Record<string, unknown> = { ...interpolated, params };

  diagnostics.push(...validateAgainst(pipelineSchema, config, [], sources));

  const stages = new Map<string, ResolvedStage>();
  const stageEntries = isPlainObject(config.stages) ? Object.entries(config.stages) : [];
  for (const [name, raw] of stageEntries) {
    const loaded = defs.get(name);
    if (!loaded || !isPlainObject(raw)) continue;
    const withParams = isPlainObject(raw.with) ? structuredClone(raw.with) : {};
    applyBackend(withParams, loaded.def, opts.backend, config.backend);
    diagnostics.push(...validateAgainst(loaded.def.paramsSchema, withParams, ['stages', name, 'with'], sources));
    const inputs: ResolvedStage['inputs'] = {};
    for (const [port, ref] of Object.entries(isPlainObject(raw.inputs) ? raw.inputs : {})) {
      const m = typeof ref === 'string' ? STAGE_REF.exec(ref) : null;
      if (m) inputs[port] = { stage: m[1]!, port: m[2]! };
    }
    stages.set(name, {
      name,
      uses: String(raw.uses),
      def: loaded.def,
      params: withParams,
      inputs,
      resources: parseResources(raw.resources),
      sourceHash: loaded.sourceHash,
    });
  }

  diagnostics.push(...checkWiring(stages, sources));

  const graph = new DepGraph<string>();
  for (const name of stages.keys()) graph.addNode(name);
  for (const st of stages.values()) {
    for (const { stage } of Object.values(st.inputs)) if (stages.has(stage)) graph.addDependency(st.name, stage);
  }
  let order: string[] = [];
  try {
    order = graph.overallOrder();
  } catch (e) {
    if (!(e instanceof DepGraphCycleError)) throw e;
    // The library's path may start with the stages leading into the cycle: keep the cycle itself.
    const path = e.cyclePath;
    const cycle = path.slice(path.indexOf(path[path.length - 1]!));
    diagnostics.push({
      path: formatPath(['stages', cycle[0]!, 'inputs']),
      message: `stages form a cycle: ${cycle.join(' → ')}`,
      pos: sources.valuePos(['stages', cycle[0]!, 'inputs']),
    });
  }

  if (diagnostics.length > 0) throw new PipelineError(dedupe(diagnostics));

  const dependencies = new Map<string, string[]>();
  const dependants = new Map<string, string[]>();
  for (const name of order) {
    dependencies.set(name, graph.directDependenciesOf(name));
    dependants.set(name, graph.directDependantsOf(name));
  }
  const dir = dirname(composed.file);
  const cacheValue = config.cache;
  const cacheDir =
    typeof cacheValue === 'string' ? resolvePath(dirname(sources.valuePos(['cache'])?.file ?? composed.file), cacheValue) : undefined;
  return {
    file: composed.file,
    dir,
    files: composed.files,
    name: String(config.name),
    seed: typeof config.seed === 'number' ? config.seed : 0,
    cacheDir,
    params,
    stages,
    order,
    dependencies,
    dependants,
    sources,
    config,
  };
}

/** Precedence of a stage's compute backend: `--backend` > the stage's `with.backend` > the pipeline's `backend:`. */
function applyBackend(withParams: Record<string, unknown>, def: StageDefinition, cli: string | undefined, pipeline: unknown): void {
  const props = def.paramsSchema.properties;
  if (!isPlainObject(props) || !('backend' in props)) return;
  if (cli !== undefined) withParams.backend = cli;
  else if (withParams.backend === undefined && typeof pipeline === 'string') withParams.backend = pipeline;
}

function applySet(doc: Record<string, unknown>, sources: SourceMap, s: SetOverride, types: string[] | undefined): void {
  const value = coerceSetValue(s.raw, types);
  setAtPath(doc, s.path, value);
  sources.clearBelow(s.path);
  sources.set(s.path, { key: setPos(s.text), value: setPos(s.text) });
}

export function parseResources(raw: unknown): StageResources {
  const r = isPlainObject(raw) ? raw : {};
  return {
    cpu: typeof r.cpu === 'number' ? r.cpu : 1,
    gpu: typeof r.gpu === 'number' ? r.gpu : 0,
    memory: parseMemoryMiB(r.memory),
  };
}

const UNITS: Record<string, number> = {
  B: 1 / 2 ** 20,
  KB: 1e3 / 2 ** 20,
  MB: 1e6 / 2 ** 20,
  GB: 1e9 / 2 ** 20,
  TB: 1e12 / 2 ** 20,
  KiB: 1 / 1024,
  MiB: 1,
  GiB: 1024,
  TiB: 1024 * 1024,
};

export function parseMemoryMiB(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw !== 'string') return 0;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)$/.exec(raw.trim());
  if (!m || !(m[2]! in UNITS)) return 0;
  return Number(m[1]) * UNITS[m[2]!]!;
}

async function loadStageDefinition(
  uses: string,
  composed: ComposedSource,
  stageName: string,
  diagnostics: Diagnostic[],
): Promise<{ def: StageDefinition; sourceHash?: string } | undefined> {
  const path = ['stages', stageName, 'uses'];
  const pos = composed.sources.valuePos(path);
  const isPath = uses.startsWith('.') || uses.startsWith('/') || /\.(m?[jt]s)$/.test(uses);
  if (!isPath) {
    const def = await loadBuiltinStage(uses);
    if (!def) {
      diagnostics.push({
        path: formatPath(path),
        message: `unknown stage kind "${uses}"`,
        pos,
        hint:
          didYouMeanHint(uses, builtinStageKinds()) ??
          `built-in kinds: ${builtinStageKinds().join(', ') || '(none)'}; or give a path to a plugin module such as ./my-stage.ts`,
      });
    }
    return def ? { def } : undefined;
  }
  const baseDir = pos && !pos.file.startsWith('--set') ? dirname(pos.file) : dirname(composed.file);
  const abs = resolvePath(baseDir, uses);
  if (!existsSync(abs)) {
    diagnostics.push({ path: formatPath(path), message: `plugin stage module not found: ${abs}`, pos });
    return undefined;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    diagnostics.push({ path: formatPath(path), message: `plugin stage module failed to load: ${(e as Error).message}`, pos });
    return undefined;
  }
  const def = (mod.default ?? mod.stage) as StageDefinition | undefined;
  const problems = checkStageDefinition(def);
  if (problems.length > 0) {
    diagnostics.push({
      path: formatPath(path),
      message: `${uses} does not export a valid stage definition (as default export or \`stage\`): ${problems.join('; ')}`,
      pos,
    });
    return undefined;
  }
  return { def: def!, sourceHash: `sha256:${sha256Hex(readFileSync(abs))}` };
}

export function checkStageDefinition(def: StageDefinition | undefined): string[] {
  if (!def || typeof def !== 'object') return ['no stage definition exported'];
  const problems: string[] = [];
  if (typeof def.kind !== 'string' || !def.kind) problems.push('`kind` must be a non-empty string');
  if (typeof def.version !== 'number' && typeof def.version !== 'string') problems.push('`version` must be a number or string');
  if (!def.paramsSchema || typeof def.paramsSchema !== 'object') problems.push('`paramsSchema` must be a JSON Schema object');
  if (!def.outputs || typeof def.outputs !== 'object') problems.push('`outputs` must map port names to artifact types');
  if (typeof def.run !== 'function' && !(def.items && typeof def.items.list === 'function' && typeof def.items.run === 'function')) {
    problems.push('it needs `run(ctx)` or `items: { list, run }`');
  }
  return problems;
}

function checkWiring(stages: Map<string, ResolvedStage>, sources: SourceMap): Diagnostic[] {
  const out: Diagnostic[] = [];
  const names = [...stages.keys()];
  for (const st of stages.values()) {
    const declared: Record<string, PortSpec> = Object.fromEntries(
      Object.entries(st.def.inputs ?? {}).map(([k, v]) => [k, portSpec(v)]),
    );
    for (const [port, ref] of Object.entries(st.inputs)) {
      const path = ['stages', st.name, 'inputs', port];
      const want = declared[port];
      if (!want) {
        const known = Object.keys(declared);
        out.push({
          path: formatPath(path),
          message: `stage kind "${st.def.kind}" has no input port "${port}"`,
          pos: sources.keyPos(path),
          hint: didYouMeanHint(port, known) ?? (known.length ? `its input ports: ${known.join(', ')}` : 'it takes no inputs'),
        });
        continue;
      }
      const upstream = stages.get(ref.stage);
      if (!upstream) {
        out.push({
          path: formatPath(path),
          message: `refers to a stage "${ref.stage}" that does not exist`,
          pos: sources.valuePos(path),
          hint: didYouMeanHint(ref.stage, names) ?? `stages: ${names.join(', ')}`,
        });
        continue;
      }
      const outPorts = Object.fromEntries(Object.entries(upstream.def.outputs).map(([k, v]) => [k, portSpec(v)]));
      const have = outPorts[ref.port];
      if (!have) {
        const known = Object.keys(outPorts);
        out.push({
          path: formatPath(path),
          message: `stage "${ref.stage}" (${upstream.def.kind}) has no output port "${ref.port}"`,
          pos: sources.valuePos(path),
          hint: didYouMeanHint(ref.port, known) ?? `its output ports: ${known.join(', ')}`,
        });
        continue;
      }
      if (have.type !== want.type) {
        out.push({
          path: formatPath(path),
          message: `type mismatch: "${ref.stage}.${ref.port}" gives a "${have.type}" artifact but input "${port}" of ${st.def.kind} takes "${want.type}"`,
          pos: sources.valuePos(path),
        });
      }
    }
    for (const [port, spec] of Object.entries(declared)) {
      if (!spec.optional && !(port in st.inputs)) {
        out.push({
          path: formatPath(['stages', st.name, 'inputs']),
          message: `missing required input "${port}" (a "${spec.type}" artifact)`,
          pos: sources.valuePos(['stages', st.name, 'inputs']) ?? sources.keyPos(['stages', st.name]),
        });
      }
    }
  }
  return out;
}

function dedupe(diags: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diags.filter((d) => {
    const k = `${d.path}|${d.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
