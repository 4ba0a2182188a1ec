import { describe, expect, it } from 'vitest';
import { decimate, formatTick, logTicks, movingAverage, niceTicks, plotBox, renderLossCurveSvg, type LossSeries } from '../../src/train/loss-curve.ts';

interface Element {
  name: string;
  attrs: Record<string, string>;
  text: string;
}

/** A strict little XML checker: balanced tags, quoted attributes, only the five entities. Returns the elements. */
function parseXml(xml: string): Element[] {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  const elements: Element[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  let last: Element | undefined;
  while ((m = re.exec(body))) {
    at = re.lastIndex;
    const [, close, name, attrText, selfClose, text] = m;
    if (text !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(text)) throw new Error(`bad entity in ${JSON.stringify(text)}`);
      if (last && stack.at(-1) === last.name) last.text += text;
      continue;
    }
    if (close) {
      if (stack.pop() !== name) throw new Error(`unbalanced </${name}>`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText!.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]}`);
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(a[2]!)) throw new Error(`bad entity in attribute ${a[1]}`);
      attrs[a[1]!] = a[2]!;
    }
    last = { name: name!, attrs, text: '' };
    elements.push(last);
    if (!selfClose) stack.push(name!);
  }
  if (at !== body.length) throw new Error(`unparsed text at ${at}: ${JSON.stringify(body.slice(at, at + 40))}`);
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (elements[0]?.name !== 'svg') throw new Error('the root is not <svg>');
  return elements;
}

const polylines = (els: Element[]) => els.filter((e) => e.name === 'polyline');
const coords = (e: Element) => e.attrs.points!.split(' ').map((p) => p.split(',').map(Number) as [number, number]);

describe('loss curve SVG', () => {
  const series: LossSeries[] = [
    { name: 'loss', points: [[0, 4], [10, 3], [20, 2.5], [30, 1]] },
    { name: 'loss <inter> & "intra"', points: [[0, 2], [30, 1.5]] },
  ];

  it('is a well-formed standalone SVG with axes, ticks, labels, legend and one polyline per series', () => {
    const svg = renderLossCurveSvg(series, { title: 'VoCo pre-training', width: 600, height: 300 });
    const els = parseXml(svg);
    expect(els[0]!.attrs).toMatchObject({ xmlns: 'http://www.w3.org/2000/svg', width: '600', height: '300', viewBox: '0 0 600 300' });
    expect(polylines(els)).toHaveLength(2);
    const texts = els.filter((e) => e.name === 'text').map((e) => e.text);
    expect(texts).toContain('VoCo pre-training');
    expect(texts).toContain('step');
    expect(texts).toContain('loss');
    expect(texts).toContain('loss &lt;inter&gt; &amp; &quot;intra&quot;'); // escaped legend entry
    expect(texts).toEqual(expect.arrayContaining(['0', '10', '20', '30'])); // x ticks
    expect(texts.filter((t) => /^\d/.test(t)).length).toBeGreaterThan(6);
    expect(polylines(els)[1]!.attrs['data-series']).toBe('loss &lt;inter&gt; &amp; &quot;intra&quot;');
    expect(polylines(els)[0]!.attrs.stroke).not.toBe(polylines(els)[1]!.attrs.stroke);
  });

  it('maps the data min/max to the edges of the plot box', () => {
    const els = parseXml(renderLossCurveSvg(series, { width: 600, height: 300 }));
    const box = els.find((e) => e.attrs.class === 'plot-area')!.attrs;
    expect(box).toMatchObject({ x: String(plotBox(600, 300).x), width: String(plotBox(600, 300).width) });
    const [left, top, right, bottom] = [Number(box.x), Number(box.y), Number(box.x) + Number(box.width), Number(box.y) + Number(box.height)];
    const a = coords(polylines(els)[0]!);
    expect(a[0]).toEqual([left, top]); // step 0, the maximum 4
    expect(a[3]).toEqual([right, bottom]); // step 30, the minimum 1
    expect(a[1]![0]).toBeCloseTo(left + (right - left) / 3, 1);
    expect(a[1]![1]).toBeCloseTo(top + (bottom - top) / 3, 1); // 3 is a third of the way down from 4 to 1
    const b = coords(polylines(els)[1]!);
    expect(b[0]![1]).toBeCloseTo(top + ((4 - 2) / 3) * (bottom - top), 1);
  });

  it('log scale maps decades evenly and skips values ≤ 0', () => {
    const els = parseXml(renderLossCurveSvg([{ name: 'l', points: [[1, 100], [2, 10], [3, 1], [4, 0], [5, -1]] }], { logY: true }));
    const p = coords(polylines(els)[0]!);
    expect(p).toHaveLength(3);
    expect(p[1]![1]).toBeCloseTo((p[0]![1] + p[2]![1]) / 2, 1);
    const texts = els.filter((e) => e.name === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['1', '10', '100', 'loss (log)']));
  });

  it('smooths with a trailing moving average', () => {
    expect(movingAverage([1, 2, 3, 4, 5], 2)).toEqual([1, 1.5, 2.5, 3.5, 4.5]);
    expect(movingAverage([1, 2, 3], 1)).toEqual([1, 2, 3]);
    const raw = renderLossCurveSvg([{ name: 'l', points: [[0, 0], [1, 10], [2, 0], [3, 10]] }]);
    const smooth = renderLossCurveSvg([{ name: 'l', points: [[0, 0], [1, 10], [2, 0], [3, 10]] }], { smooth: 2 });
    const ys = (svg: string) => coords(polylines(parseXml(svg))[0]!).map((p) => p[1]);
    expect(new Set(ys(raw)).size).toBe(2);
    expect(new Set(ys(smooth)).size).toBe(2); // 0, 5, 5, 5 → two distinct heights
    expect(ys(smooth)[1]).toBe(ys(smooth)[3]);
  });

  it('handles a single point, empty series, NaN values and constant series', () => {
    const els = parseXml(
      renderLossCurveSvg([
        { name: 'one', points: [[5, 2]] },
        { name: 'empty', points: [] },
        { name: 'nan', points: [[1, Number.NaN], [2, Number.POSITIVE_INFINITY]] },
      ]),
    );
    expect(polylines(els)).toHaveLength(1);
    expect(els.filter((e) => e.name === 'circle')).toHaveLength(1);
    const box = els.find((e) => e.attrs.class === 'plot-area')!.attrs;
    const [pt] = coords(polylines(els)[0]!);
    expect(pt![0]).toBeCloseTo(Number(box.x) + Number(box.width) / 2, 1); // a lone point is centred
    expect(pt![1]).toBeCloseTo(Number(box.y) + Number(box.height) / 2, 1);
    const texts = els.filter((e) => e.name === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['empty (no data)', 'nan (no data)']));

    const mixed = coords(polylines(parseXml(renderLossCurveSvg([{ name: 'm', points: [[0, 1], [1, Number.NaN], [2, 3]] }])))[0]!);
    expect(mixed).toHaveLength(2);

    const flat = parseXml(renderLossCurveSvg([{ name: 'c', points: [[0, 0.7], [10, 0.7], [20, 0.7]] }]));
    const fb = flat.find((e) => e.attrs.class === 'plot-area')!.attrs;
    for (const [, y] of coords(polylines(flat)[0]!)) expect(y).toBeCloseTo(Number(fb.y) + Number(fb.height) / 2, 1);

    const none = parseXml(renderLossCurveSvg([]));
    expect(polylines(none)).toHaveLength(0);
    expect(none.some((e) => e.text === 'no data')).toBe(true);
  });

  it('decimates long series but keeps their extremes and ends', () => {
    const pts: Array<[number, number]> = Array.from({ length: 100_000 }, (_, i) => [i, Math.sin(i / 1000) + (i === 54_321 ? 50 : 0)]);
    const d = decimate(pts, 500);
    expect(d.length).toBeLessThanOrEqual(502);
    expect(d).toContainEqual([54_321, pts[54_321]![1]]);
    expect(d[0]).toEqual(pts[0]);
    expect(d.at(-1)).toEqual(pts.at(-1));
    const svg = renderLossCurveSvg([{ name: 'long', points: pts }], { maxPoints: 500 });
    expect(coords(polylines(parseXml(svg))[0]!).length).toBeLessThanOrEqual(502);
  });

  it('picks round ticks and short labels', () => {
    expect(niceTicks(0, 30)).toEqual([0, 10, 20, 30]);
    expect(niceTicks(0, 250_000)).toEqual([0, 50_000, 100_000, 150_000, 200_000, 250_000]);
    expect(niceTicks(-1, 1)).toEqual([-1, -0.5, 0, 0.5, 1]);
    expect(niceTicks(0.13, 0.91)).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(logTicks(0.001, 1000)).toEqual([0.001, 0.01, 0.1, 1, 10, 100, 1000]);
    expect(logTicks(1.5, 30)).toEqual([2, 5, 10, 20]);
    expect(formatTick(250_000)).toBe('250k');
    expect(formatTick(1_500_000)).toBe('1.5M');
    expect(formatTick(0.25)).toBe('0.25');
    expect(formatTick(0.00001)).toBe('1e-5');
  });
});
