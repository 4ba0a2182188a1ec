import { portSpec } from './stage.ts';
import type { ResolvedPipeline } from './resolve.ts';

function edges(p: ResolvedPipeline): Array<{ from: string; to: string; label: string }> {
  const out: Array<{ from: string; to: string; label: string }> = [];
  for (const name of p.order) {
    const st = p.stages.get(name)!;
    for (const [port, ref] of Object.entries(st.inputs)) {
      const type = portSpec(p.stages.get(ref.stage)!.def.outputs[ref.port]!).type;
      out.push({ from: ref.stage, to: name, label: ref.port === port ? `${port}: ${type}` : `${ref.port} → ${port}: ${type}` });
    }
  }
  return out;
}

export function toMermaid(p: ResolvedPipeline): string {
  const lines = ['flowchart LR'];
  for (const name of p.order) lines.push(`  ${name}["${name}<br/><small>${p.stages.get(name)!.def.kind}</small>"]`);
  for (const e of edges(p)) lines.push(`  ${e.from} -- "${e.label}" --> ${e.to}`);
  return `${lines.join('\n')}\n`;
}

export function toDot(p: ResolvedPipeline): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [`digraph ${q(p.name)} {`, '  rankdir=LR;', '  node [shape=box, style=rounded];'];
  for (const name of p.order) lines.push(`  ${q(name)} [label=${q(`${name}\n(${p.stages.get(name)!.def.kind})`)}];`);
  for (const e of edges(p)) lines.push(`  ${q(e.from)} -> ${q(e.to)} [label=${q(e.label)}];`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
