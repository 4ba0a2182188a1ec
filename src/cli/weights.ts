import { extname } from 'node:path';
import type { Command } from 'commander';
import { EXIT, reportError } from './common.ts';
import { loadIntoSpec, type LoadResult } from '../models/weights/layout.ts';
import { writeSafetensors } from '../models/weights/safetensors.ts';
import { DTYPES, formatShape, numel, type StateDict } from '../models/weights/state-dict.ts';
import { inferModelOptions, loadWeightsFile } from '../models/weights-io.ts';
import { ARCHS, variableSpec, type Arch } from '../models/registry.ts';

function fmtCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n);
}

interface InspectOptions {
  json?: boolean;
  arch?: string;
  select?: string;
  modelOpts?: string;
}

export function registerWeights(program: Command): void {
  const weights = program.command('weights').description('inspect and convert model weights (.pt, .safetensors) without Python');

  weights
    .command('inspect <file>')
    .description('list every tensor (key, shape, dtype) and how the keys were normalised')
    .option('--json', 'print a JSON report')
    .option('--arch <arch>', `map keys onto our model's variables (${ARCHS.join('|')})`)
    .option('--select <prefix>', 'keep only keys under this prefix and strip it (e.g. student.)')
    .option('--model-opts <json>', 'model options for --arch (default: inferred from the weights)')
    .action(async (file: string, opts: InspectOptions) => {
      try {
        if (opts.arch !== undefined && !(ARCHS as readonly string[]).includes(opts.arch)) {
          process.stderr.write(`voco: --arch must be one of ${ARCHS.join(', ')} (got ${opts.arch})\n`);
          process.exitCode = EXIT.invalid;
          return;
        }
        const w = await loadWeightsFile(file, opts.select !== undefined ? { select: opts.select } : {});
        const tensors = [...w.dict].map(([key, t]) => ({ key, shape: t.shape, dtype: t.dtype, numel: numel(t.shape) }));
        const floatParams = tensors.filter((t) => DTYPES[t.dtype].floating).reduce((a, t) => a + t.numel, 0);
        const bytes = tensors.reduce((a, t) => a + t.numel * DTYPES[t.dtype].bytes, 0);

        let mapping: { arch: string; options: Record<string, unknown>; available: boolean; result?: Omit<LoadResult, 'tensors'> & { loaded: string[] } } | undefined;
        if (opts.arch) {
          const arch = opts.arch as Arch;
          const options = opts.modelOpts ? (JSON.parse(opts.modelOpts) as Record<string, unknown>) : inferModelOptions(arch, w.dict);
          const spec = variableSpec(arch, options as never);
          if (!spec) mapping = { arch, options, available: false };
          else {
            const r = loadIntoSpec(spec, w.dict);
            mapping = {
              arch,
              options,
              available: true,
              result: { loaded: [...r.tensors.keys()], missing: r.missing, unexpected: r.unexpected, mismatched: r.mismatched },
            };
          }
        }

        if (opts.json) {
          const report = {
            file,
            format: w.format,
            tensors,
            count: tensors.length,
            floatParams,
            bytes,
            notes: w.notes,
            ...(w.metadata && Object.keys(w.metadata).length ? { metadata: w.metadata } : {}),
            ...(mapping ? { mapping } : {}),
          };
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const width = Math.min(72, Math.max(...tensors.map((t) => t.key.length)));
        const lines = tensors.map((t) => `${t.key.padEnd(width)}  ${formatShape(t.shape).padEnd(22)} ${t.dtype}`);
        lines.push('');
        lines.push(`${tensors.length} tensors, ${fmtCount(floatParams)} float parameters, ${(bytes / 1e6).toFixed(1)} MB`);
        for (const n of w.notes) lines.push(`note: ${n}`);
        if (w.metadata) for (const [k, v] of Object.entries(w.metadata)) lines.push(`metadata: ${k} = ${v}`);
        if (mapping) {
          if (!mapping.available) {
            lines.push(`--arch ${mapping.arch}: no variable spec available yet (src/models/registry.ts with variableSpec(arch, opts) is not present)`);
          } else {
            const r = mapping.result!;
            lines.push(
              `--arch ${mapping.arch} ${JSON.stringify(mapping.options)}: ${r.loaded.length} loaded, ${r.missing.length} missing, ${r.unexpected.length} unexpected, ${r.mismatched.length} shape mismatches`,
            );
            for (const k of r.missing) lines.push(`  missing     ${k}`);
            for (const k of r.unexpected) lines.push(`  unexpected  ${k}`);
            for (const m of r.mismatched) lines.push(`  mismatched  ${m.name}: expected ${formatShape(m.expected)}, file has ${formatShape(m.got)}`);
          }
        }
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });

  weights
    .command('convert <input> <output>')
    .description('convert a .pt/.safetensors checkpoint to .safetensors (keys normalised, normalisation notes kept as metadata)')
    .option('--select <prefix>', 'keep only keys under this prefix and strip it (e.g. student.)')
    .action(async (input: string, output: string, opts: { select?: string }) => {
      try {
        if (extname(output).toLowerCase() !== '.safetensors') {
          process.stderr.write('voco: the output must be a .safetensors file\n');
          process.exitCode = EXIT.invalid;
          return;
        }
        const w = await loadWeightsFile(input, opts.select !== undefined ? { select: opts.select } : {});
        const metadata: Record<string, string> = { ...(w.metadata ?? {}), format: 'pt', 'voco.source': input };
        if (w.notes.length) metadata['voco.notes'] = w.notes.join('\n');
        await writeSafetensors(output, w.dict, metadata);
        process.stdout.write(`wrote ${w.dict.size} tensors to ${output}\n`);
      } catch (e) {
        process.exitCode = reportError(e);
      }
    });
}
