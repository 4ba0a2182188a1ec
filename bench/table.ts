export interface BenchRow {
  bench: string;
  case: string;
  value: number;
  unit: string;
  /** The baseline measured in the same run; the table prints value / baseline. */
  baseline?: number;
  note?: string;
}

export function printTable(rows: BenchRow[]): void {
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3));
  const cells = rows.map((r) => [r.bench, r.case, `${fmt(r.value)} ${r.unit}`, r.baseline ? `${(r.value / r.baseline).toFixed(2)}×` : '', r.note ?? '']);
  const header = ['bench', 'case', 'value', 'vs baseline', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const c of cells) console.log(line(c));
}
