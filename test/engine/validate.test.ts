import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PipelineError, type Diagnostic } from '../../src/engine/diagnostics.ts';
import { resolvePipeline } from '../../src/engine/resolve.ts';
import { tempDir, writePipeline } from '../helpers.ts';

async function diagnosticsOf(text: string, opts: { sets?: string[]; overlays?: string[] } = {}, dir = tempDir()): Promise<Diagnostic[]> {
  const file = writePipeline(dir, 'p.yaml', text);
  try {
    await resolvePipeline(file, opts);
  } catch (e) {
    if (e instanceof PipelineError) return e.diagnostics;
    throw e;
  }
  throw new Error('expected the pipeline to be invalid');
}

const where = (d: Diagnostic) => `${d.pos?.line}:${d.pos?.col}`;

const GOOD = `version: 1
name: good
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with:
      count: 3
  total:
    uses: {{stages}}/sum.ts
    inputs:
      numbers: numbers.numbers
`;

describe('voco validate: every error names file:line:column and the path', () => {
  it('accepts a valid pipeline and fills schema defaults', async () => {
    const p = await resolvePipeline(writePipeline(tempDir(), 'p.yaml', GOOD));
    expect(p.order).toEqual(['numbers', 'total']);
    expect(p.stages.get('numbers')!.params).toEqual({ count: 3, factor: 1, delayMs: 0, on_error: 'fail' });
    expect(p.seed).toBe(0);
  });

  it('reports a YAML syntax error at its line and column', async () => {
    const [d, ...rest] = await diagnosticsOf('version: 1\nname: x\nstages:\n  a: [1, 2\n  b: 3\n');
    expect(rest).toEqual([]);
    expect(d!.message).toMatch(/^YAML syntax error/);
    expect(d!.pos!.file).toMatch(/p\.yaml$/);
    expect(d!.pos!.line).toBeGreaterThanOrEqual(4);
  });

  it('reports an unknown key with a did-you-mean, at the key', async () => {
    const ds = await diagnosticsOf(GOOD.replace('    inputs:', '    inptus:'));
    const d = ds.find((x) => x.message.includes('unknown key'))!;
    expect(d.path).toBe('stages.total.inptus');
    expect(d.hint).toBe('did you mean "inputs"?');
    expect(where(d)).toBe('10:5');
  });

  it('reports an unknown param key inside with: against the stage schema', async () => {
    const ds = await diagnosticsOf(GOOD.replace('      count: 3', '      count: 3\n      factr: 2'));
    expect(ds).toHaveLength(1);
    expect(ds[0]!.path).toBe('stages.numbers.with.factr');
    expect(ds[0]!.hint).toBe('did you mean "factor"?');
    expect(where(ds[0]!)).toBe('8:7');
  });

  it('reports a wrong type and an out-of-range value, both at once', async () => {
    const ds = await diagnosticsOf(GOOD.replace('      count: 3', '      count: -1\n      factor: lots'));
    expect(ds.map((d) => [d.path, where(d)])).toEqual(
      expect.arrayContaining([
        ['stages.numbers.with.count', '7:14'],
        ['stages.numbers.with.factor', '8:15'],
      ]),
    );
    expect(ds.find((d) => d.path.endsWith('count'))!.message).toBe('must be >= 0 (got -1)');
    expect(ds.find((d) => d.path.endsWith('factor'))!.message).toBe('must be number (got string "lots")');
  });

  it('reports an unknown stage kind with the built-in kinds or a did-you-mean', async () => {
    const ds = await diagnosticsOf(GOOD.replace('uses: {{stages}}/sum.ts', 'uses: summarise'));
    const d = ds.find((x) => x.message.includes('unknown stage kind'))!;
    expect(d.message).toBe('unknown stage kind "summarise"');
    expect(d.path).toBe('stages.total.uses');
    expect(where(d)).toBe('9:11');
  });

  it('reports a missing plugin module', async () => {
    const ds = await diagnosticsOf(GOOD.replace('{{stages}}/sum.ts', './nowhere/sum.ts'));
    const d = ds.find((x) => x.message.includes('plugin stage module not found'))!;
    expect(d.path).toBe('stages.total.uses');
    expect(where(d)).toBe('9:11');
  });

  it('reports a plugin that exports no stage definition', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.ts'), 'export const nothing = 1;\n');
    const ds = await diagnosticsOf(GOOD.replace('{{stages}}/sum.ts', './bad.ts'), {}, dir);
    expect(ds.find((x) => x.path === 'stages.total.uses')!.message).toMatch(/does not export a valid stage definition/);
  });

  it('reports an input that refers to a missing stage, and a missing port', async () => {
    const ds = await diagnosticsOf(GOOD.replace('numbers: numbers.numbers', 'numbers: numbrs.numbers'));
    expect(ds).toHaveLength(1);
    expect(ds[0]!.message).toBe('refers to a stage "numbrs" that does not exist');
    expect(ds[0]!.hint).toBe('did you mean "numbers"?');
    expect(where(ds[0]!)).toBe('11:16');
    const ds2 = await diagnosticsOf(GOOD.replace('numbers: numbers.numbers', 'numbers: numbers.values'));
    expect(ds2[0]!.message).toBe('stage "numbers" (test-numbers) has no output port "values"');
  });

  it('reports a port type mismatch', async () => {
    const text = `version: 1
name: mismatch
stages:
  ckpt:
    uses: {{stages}}/blob-writer.ts
    with: { text: hi }
  total:
    uses: {{stages}}/sum.ts
    inputs:
      numbers: ckpt.checkpoint
`;
    const ds = await diagnosticsOf(text);
    expect(ds).toHaveLength(1);
    expect(ds[0]!.message).toBe(
      'type mismatch: "ckpt.checkpoint" gives a "checkpoint" artifact but input "numbers" of test-sum takes "numbers"',
    );
    expect(where(ds[0]!)).toBe('10:16');
  });

  it('reports a missing required input', async () => {
    const ds = await diagnosticsOf(GOOD.replace('    inputs:\n      numbers: numbers.numbers\n', ''));
    expect(ds[0]!.message).toBe('missing required input "numbers" (a "numbers" artifact)');
    expect(ds[0]!.path).toBe('stages.total.inputs');
  });

  it('reports a cycle and prints it', async () => {
    const text = `version: 1
name: cyclic
stages:
  a:
    uses: {{stages}}/sum.ts
    inputs: { numbers: c.numbers }
  b:
    uses: {{stages}}/constant.ts
    with: { value: 1 }
  c:
    uses: {{stages}}/numbers.ts
    with: { count: 1 }
`;
    // Wire a cycle through two numbers-producing plugins: x → y → x.
    const cyc = `version: 1
name: cyclic
stages:
  x:
    uses: {{stages}}/sum.ts
    inputs: { numbers: y.numbers }
  y:
    uses: {{stages}}/numbers-passthrough.ts
    inputs: { numbers: z.numbers }
  z:
    uses: {{stages}}/numbers-passthrough.ts
    inputs: { numbers: y.numbers }
`;
    expect((await resolvePipeline(writePipeline(tempDir(), 'ok.yaml', text))).order).toContain('a');
    const ds = await diagnosticsOf(cyc);
    expect(ds).toHaveLength(1);
    expect(ds[0]!.message).toMatch(/^stages form a cycle: (y → z → y|z → y → z)$/);
  });

  it('reports several problems at once, each at its own place', async () => {
    const text = `version: 2
name: many
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with: { count: 2, colour: red }
  total:
    uses: {{stages}}/sum.ts
    inputs: { numbers: nope.numbers }
`;
    const ds = await diagnosticsOf(text);
    expect(ds.map((d) => [d.path, where(d)])).toEqual(
      expect.arrayContaining([
        ['version', '1:10'],
        ['stages.numbers.with.colour', '6:23'],
        ['stages.total.inputs.numbers', '9:24'],
      ]),
    );
    expect(ds).toHaveLength(3);
  });

  it('reports an unknown ${params.x} reference where it is used', async () => {
    const ds = await diagnosticsOf(GOOD.replace('count: 3', 'count: ${params.n}'));
    expect(ds[0]!.message).toBe('unknown param "n" in "${params.n}"');
    expect(where(ds[0]!)).toBe('7:14');
  });
});

describe('params, extends, overlays and --set', () => {
  it('interpolates params keeping their type, and substitutes inside strings', async () => {
    const text = `version: 1
name: interp
params:
  n: 4
  base: /data
  tag: run-\${params.n}
stages:
  numbers:
    uses: {{stages}}/numbers.ts
    with:
      count: \${params.n}
      marker: "\${params.base}/\${params.tag}.log"
`;
    const p = await resolvePipeline(writePipeline(tempDir(), 'p.yaml', text));
    expect(p.stages.get('numbers')!.params.count).toBe(4);
    expect(p.stages.get('numbers')!.params.marker).toBe('/data/run-4.log');
  });

  it('types --set values by the schema: a number stays a number, a string field keeps text', async () => {
    const file = writePipeline(tempDir(), 'p.yaml', GOOD);
    const p = await resolvePipeline(file, {
      sets: ['stages.numbers.with.factor=2e-4', 'stages.numbers.with.marker=123', 'stages.numbers.with.count=7', 'seed=42'],
    });
    const params = p.stages.get('numbers')!.params;
    expect(params.factor).toBe(2e-4);
    expect(params.marker).toBe('123');
    expect(params.count).toBe(7);
    expect(p.seed).toBe(42);
  });

  it('locates errors caused by --set at the override', async () => {
    const ds = await diagnosticsOf(GOOD, { sets: ['stages.numbers.with.count=many'] });
    expect(ds[0]!.path).toBe('stages.numbers.with.count');
    expect(ds[0]!.pos!.file).toBe('--set stages.numbers.with.count=many');
    expect(ds[0]!.message).toBe('must be integer (got string "many")');
  });

  it('merges extends under the file and overlays over it, locating errors in the right file', async () => {
    const dir = tempDir();
    writePipeline(dir, 'base.yaml', GOOD.replace('count: 3', 'count: 3\n      factor: 5'));
    const child = writePipeline(dir, 'child.yaml', 'extends: base.yaml\nname: child\nstages:\n  numbers:\n    with:\n      count: 9\n');
    writePipeline(dir, 'overlay.yaml', 'stages:\n  numbers:\n    with:\n      delayMs: oops\n');
    const p = await resolvePipeline(child);
    expect(p.name).toBe('child');
    expect(p.stages.get('numbers')!.params).toMatchObject({ count: 9, factor: 5 });
    const ds = await diagnosticsOf('extends: base.yaml\nname: child\n', { overlays: [join(dir, 'overlay.yaml')] }, dir);
    expect(ds[0]!.pos!.file).toBe(join(dir, 'overlay.yaml'));
    expect(where(ds[0]!)).toBe('4:16');
  });

  it('reports an extends cycle', async () => {
    const dir = tempDir();
    writePipeline(dir, 'a.yaml', 'extends: b.yaml\n');
    writePipeline(dir, 'b.yaml', 'extends: a.yaml\n');
    await expect(resolvePipeline(join(dir, 'a.yaml'))).rejects.toThrow(/extends cycle: .*a\.yaml → .*b\.yaml → .*a\.yaml/);
  });
});

describe('compute backend: --backend > stage with.backend > pipeline backend', () => {
  const pipeline = (pipelineBackend: string, stageBackend?: string) => `version: 1
name: backends
${pipelineBackend ? `backend: ${pipelineBackend}\n` : ''}stages:
  a:
    uses: {{stages}}/backend-param.ts
${stageBackend ? `    with:\n      backend: ${stageBackend}\n` : ''}  b:
    uses: {{stages}}/backend-param.ts
  numbers:
    uses: {{stages}}/numbers.ts
    with:
      count: 1
`;
  const backends = async (text: string, backend?: string) => {
    const p = await resolvePipeline(writePipeline(tempDir(), 'p.yaml', text), { backend });
    return [p.stages.get('a')!.params.backend, p.stages.get('b')!.params.backend, 'backend' in p.stages.get('numbers')!.params];
  };

  it('fills stages that take a backend and leaves the others alone', async () => {
    expect(await backends(pipeline(''))).toEqual(['auto', 'auto', false]);
    expect(await backends(pipeline('cpu'))).toEqual(['cpu', 'cpu', false]);
    expect(await backends(pipeline('cpu', 'tensorflow'))).toEqual(['tensorflow', 'cpu', false]);
    expect(await backends(pipeline('cpu', 'tensorflow'), 'webgpu')).toEqual(['webgpu', 'webgpu', false]);
  });

  it('rejects an unknown backend at the pipeline, the stage and the command line', async () => {
    const d = await diagnosticsOf(pipeline('gpu'));
    expect(d.map((x) => `${x.path}: ${x.message}`).join('\n')).toMatch(/backend: .*(auto|one of)/);
    await expect(resolvePipeline(writePipeline(tempDir(), 'p.yaml', pipeline('')), { backend: 'cuda' })).rejects.toThrow(/stages\.a\.with\.backend/);
  });
});
