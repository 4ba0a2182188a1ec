import { relative } from 'node:path';

/** Where a value came from: a file position, or a command-line override. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

/** One problem found in a pipeline, located in its source file. */
export interface Diagnostic {
  /** Dotted path inside the document, e.g. `stages.train.with.lr`. */
  path: string;
  message: string;
  pos?: SourcePos;
  hint?: string;
}

/** Thrown when a pipeline has problems; carries every problem found, not just the first. */
export class PipelineError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => formatDiagnostic(d)).join('\n'));
    this.name = 'PipelineError';
  }
}

export function formatPos(pos: SourcePos | undefined): string {
  if (!pos) return '<pipeline>';
  const file = pos.file.startsWith('/') ? relative(process.cwd(), pos.file) || pos.file : pos.file;
  return pos.line > 0 ? `${file}:${pos.line}:${pos.col}` : file;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = formatPos(d.pos);
  const path = d.path ? ` ${d.path}:` : '';
  const hint = d.hint ? ` (${d.hint})` : '';
  return `${where}${path} ${d.message}${hint}`;
}

/** Path segments → `a.b[2].c`. */
export function formatPath(segments: ReadonlyArray<string | number>): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${seg}` : seg;
  }
  return out;
}
