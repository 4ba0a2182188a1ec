/**
 * Loss curves as a standalone SVG document: axes with ticks and labels, one polyline per series,
 * a legend, optional log-scale y and moving-average smoothing. Pure: no I/O, no dependencies.
 *
 * The y (and x) domain is exactly the data's min..max, so the extremes touch the plot box edges;
 * ticks are "nice" values inside it.
 */

export interface LossSeries {
  name: string;
  points: Array<[step: number, value: number]>;
}

export interface LossCurveOptions {
  width?: number;
  height?: number;
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic y axis; values ≤ 0 are skipped. */
  logY?: boolean;
  /** Trailing moving average over this many points (1 or absent: raw values). */
  smooth?: number;
  /** Most points drawn per series (default 2000): longer series are decimated, keeping extremes. */
  maxPoints?: number;
  /** Colours, cycled over the series. */
  colors?: readonly string[];
}

export const DEFAULT_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'] as const;

const MARGIN = { left: 64, right: 16, top: 36, bottom: 48 };
const FONT = 'font-family="sans-serif" font-size="11"';

/** Position of the plot area inside the SVG (also emitted as `<rect class="plot-area">`). */
export function plotBox(width: number, height: number): { x: number; y: number; width: number; height: number } {
  return {
    x: MARGIN.left,
    y: MARGIN.top,
    width: Math.max(1, width - MARGIN.left - MARGIN.right),
    height: Math.max(1, height - MARGIN.top - MARGIN.bottom),
  };
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const num = (v: number): string => String(Math.round(v * 100) / 100);

/** Trailing moving average: point i is the mean of the values of points max(0, i-w+1)..i. */
export function movingAverage(values: readonly number[], window: number): number[] {
  if (!(window > 1)) return [...values];
  const w = Math.floor(window);
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= w) sum -= values[i - w]!;
    out.push(sum / Math.min(i + 1, w));
  }
  return out;
}

/** The min..max of values, widened around a single value (which is then centred). */
function domain(values: readonly number[], log: boolean): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi > lo) return [lo, hi];
  const d = log ? 0.25 : lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - d, hi + d];
}

/** At most about `max` points, keeping each bucket's lowest and highest so spikes and extremes stay visible. */
export function decimate(points: ReadonlyArray<[number, number]>, max: number): Array<[number, number]> {
  if (points.length <= max || max < 4) return [...points];
  const buckets = Math.floor(max / 2);
  const size = points.length / buckets;
  const out: Array<[number, number]> = [];
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor(b * size);
    const to = Math.floor((b + 1) * size);
    let iMin = from;
    let iMax = from;
    for (let i = from; i < to; i++) {
      if (points[i]![1] < points[iMin]![1]) iMin = i;
      if (points[i]![1] > points[iMax]![1]) iMax = i;
    }
    for (const i of iMin === iMax ? [iMin] : [Math.min(iMin, iMax), Math.max(iMin, iMax)]) out.push(points[i]!);
  }
  const last = points[points.length - 1]!;
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

/** Round-number ticks (1, 2, 5 × 10^k steps) inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return [lo];
  const raw = (hi - lo) / Math.max(1, target - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return ticks;
}

/** Ticks for a log axis over [lo, hi] (positive values): powers of ten, else 1-2-5, else linear. */
export function logTicks(lo: number, hi: number): number[] {
  const pick = (mults: readonly number[]): number[] => {
    const out: number[] = [];
    for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
      for (const m of mults) {
        const v = Number((m * 10 ** k).toPrecision(12));
        if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) out.push(v);
      }
    }
    return out;
  };
  const decades = pick([1]);
  if (decades.length > 8) {
    const every = Math.ceil(decades.length / 8);
    return decades.filter((_, i) => i % every === 0);
  }
  if (decades.length >= 3) return decades;
  const oneTwoFive = pick([1, 2, 5]);
  if (oneTwoFive.length >= 2) return oneTwoFive;
  return niceTicks(lo, hi);
}

/** Short tick labels: 250k, 1.5M, 0.001, 1e-5. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  const trim = (s: string): string => s.replace(/\.?0+$/, '');
  if (a >= 1e9) return `${trim((v / 1e9).toFixed(2))}G`;
  if (a >= 1e6) return `${trim((v / 1e6).toFixed(2))}M`;
  if (a >= 1e4) return `${trim((v / 1e3).toFixed(1))}k`;
  if (a >= 1e-3) return String(Number(v.toPrecision(4)));
  const [m, e] = v.toExponential(2).split('e');
  return `${trim(m!)}e${e}`;
}

/** Renders the series as a standalone SVG document. Non-finite values (and ≤ 0 on a log axis) are skipped. */
export function renderLossCurveSvg(series: readonly LossSeries[], opts: LossCurveOptions = {}): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 400;
  const colors = (opts.colors?.length ? opts.colors : DEFAULT_COLORS).map(escapeXml);
  const logY = opts.logY ?? false;
  const box = plotBox(width, height);

  const cleaned = series.map((s) => {
    const pts = s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0))
      .sort((a, b) => a[0] - b[0]);
    const ys = movingAverage(pts.map((p) => p[1]), opts.smooth ?? 1);
    return pts.map(([x], i): [number, number] => [x, logY ? Math.log10(ys[i]!) : ys[i]!]);
  });
  const all = cleaned.flat();
  const hasData = all.length > 0;
  const [x0, x1] = domain(all.map((p) => p[0]), false);
  const [y0, y1] = domain(all.map((p) => p[1]), logY);
  const sx = (x: number): number => box.x + ((x - x0) / (x1 - x0)) * box.width;
  const sy = (y: number): number => box.y + box.height - ((y - y0) / (y1 - y0)) * box.height;

  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.title) out.push(`<text x="${num(width / 2)}" y="20" text-anchor="middle" font-family="sans-serif" font-size="14">${escapeXml(opts.title)}</text>`);

  out.push('<g class="axes">');
  if (hasData) {
    for (const t of niceTicks(x0, x1)) {
      const x = num(sx(t));
      out.push(`<line x1="${x}" y1="${box.y}" x2="${x}" y2="${box.y + box.height}" stroke="#eeeeee"/>`);
      out.push(`<line x1="${x}" y1="${box.y + box.height}" x2="${x}" y2="${box.y + box.height + 4}" stroke="#333333"/>`);
      out.push(`<text x="${x}" y="${box.y + box.height + 16}" text-anchor="middle" ${FONT}>${escapeXml(formatTick(t))}</text>`);
    }
    const yTicks = logY ? logTicks(10 ** y0, 10 ** y1).map((v) => [Math.log10(v), v] as const) : niceTicks(y0, y1).map((v) => [v, v] as const);
    for (const [pos, label] of yTicks) {
      const y = num(sy(pos));
      out.push(`<line x1="${box.x}" y1="${y}" x2="${box.x + box.width}" y2="${y}" stroke="#eeeeee"/>`);
      out.push(`<line x1="${box.x - 4}" y1="${y}" x2="${box.x}" y2="${y}" stroke="#333333"/>`);
      out.push(`<text x="${box.x - 6}" y="${y}" dy="0.32em" text-anchor="end" ${FONT}>${escapeXml(formatTick(label))}</text>`);
    }
  } else {
    out.push(`<text x="${num(box.x + box.width / 2)}" y="${num(box.y + box.height / 2)}" text-anchor="middle" ${FONT}>no data</text>`);
  }
  const xLabel = opts.xLabel ?? 'step';
  const yLabel = (opts.yLabel ?? 'loss') + (logY ? ' (log)' : '');
  out.push(`<text x="${num(box.x + box.width / 2)}" y="${height - 10}" text-anchor="middle" ${FONT}>${escapeXml(xLabel)}</text>`);
  out.push(`<text x="14" y="${num(box.y + box.height / 2)}" text-anchor="middle" transform="rotate(-90 14 ${num(box.y + box.height / 2)})" ${FONT}>${escapeXml(yLabel)}</text>`);
  out.push('</g>');
  // After the grid, so grid lines at the domain ends do not paint over the frame.
  out.push(`<rect class="plot-area" x="${box.x}" y="${box.y}" width="${box.width}" height="${box.height}" fill="none" stroke="#333333"/>`);

  out.push('<g class="series">');
  cleaned.forEach((pts, i) => {
    if (!pts.length) return;
    const color = colors[i % colors.length]!;
    const name = escapeXml(series[i]!.name);
    const coords = decimate(pts, opts.maxPoints ?? 2000).map(([x, y]) => `${num(sx(x))},${num(sy(y))}`).join(' ');
    out.push(`<polyline data-series="${name}" points="${coords}" fill="none" stroke="${color}" stroke-width="1.5" stroke-linejoin="round"/>`);
    // A one-point polyline draws nothing; mark the point.
    if (pts.length === 1) out.push(`<circle cx="${num(sx(pts[0]![0]))}" cy="${num(sy(pts[0]![1]))}" r="2.5" fill="${color}"/>`);
  });
  out.push('</g>');

  out.push('<g class="legend">');
  const legendX = box.x + box.width - 158;
  if (series.length) {
    out.push(`<rect x="${legendX}" y="${box.y + 2}" width="154" height="${series.length * 16 + 4}" fill="#ffffff" fill-opacity="0.8"/>`);
  }
  series.forEach((s, i) => {
    const y = box.y + 12 + i * 16;
    const x = legendX + 4;
    const label = s.name + (cleaned[i]!.length ? '' : ' (no data)');
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${colors[i % colors.length]!}" stroke-width="2"/>`);
    out.push(`<text x="${x + 24}" y="${y}" dy="0.32em" ${FONT}>${escapeXml(label)}</text>`);
  });
  out.push('</g>');
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
