// Small SVG charts drawn in the page: no library, nothing fetched. Each mark carries its
// number as data attributes (data-series, data-category, data-value; `data-value=""` for a
// missing value) and a <title> that says it in words, so that people with a screen reader,
// a printout and the tests all read the same numbers.

const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['#ffd23f', '#4cc9f0', '#3ddc97', '#ff9f1c'];
const PAD = { top: 16, right: 16, bottom: 44, left: 72 };

let chartIds = 0;

function node(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** 1, 2, 5 × 10^n: a round step so that about `count` ticks cover 0…max. */
function niceStep(max, count) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return step || power * 10;
}

/** A round step for durations in seconds: 1, 2, 5, 10, 15, 30 s or min, then hours. */
export function durationStep(max, count) {
  const raw = max / count;
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  return steps.find((s) => s >= raw) || Math.ceil(raw / 3600) * 3600;
}

function axis(max, stepFor, ticks = 4) {
  if (!(max > 0)) return { top: ticks, step: 1 };
  const step = stepFor(max, ticks);
  return { top: Math.ceil(max / step) * step, step };
}

/**
 * The frame shared by the charts: an <svg role="img"> labelled by its <title> and <desc>, with
 * a y axis of round ticks. Returns the svg and what the charts need to place marks.
 */
function frame({ title, description, width, height, max, tickFormat, stepFor }) {
  chartIds += 1;
  const id = `chart-${chartIds}`;
  const svg = node('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width: '100%',
    role: 'img',
    'aria-labelledby': `${id}-title ${id}-desc`,
    class: 'chart',
    preserveAspectRatio: 'xMidYMid meet',
  });
  svg.append(node('title', { id: `${id}-title` }, title), node('desc', { id: `${id}-desc` }, description || ''));
  const plot = { x: PAD.left, y: PAD.top, w: width - PAD.left - PAD.right, h: height - PAD.top - PAD.bottom };
  const { top, step } = axis(max, stepFor);
  const y = (value) => plot.y + plot.h - (value / top) * plot.h;
  const grid = node('g', { class: 'chart-grid', 'aria-hidden': 'true' });
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.append(node('line', { x1: plot.x, x2: plot.x + plot.w, y1: y(v), y2: y(v) }));
    grid.append(node('text', { x: plot.x - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'chart-tick' }, tickFormat(v)));
  }
  svg.append(grid);
  return { svg, plot, y };
}

function xLabels(svg, plot, categories, band, every = 1) {
  const labels = node('g', { class: 'chart-labels', 'aria-hidden': 'true' });
  categories.forEach((category, i) => {
    if (i % every !== 0) return;
    labels.append(node('text', {
      x: plot.x + band * i + band / 2,
      y: plot.y + plot.h + 18,
      'text-anchor': 'middle',
      class: 'chart-label',
    }, category));
  });
  svg.append(labels);
}

function legend(series) {
  const list = document.createElement('ul');
  list.className = 'chart-legend';
  series.forEach((s, i) => {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'chart-swatch';
    swatch.dataset.color = String(i);
    item.append(swatch, document.createTextNode(s.label));
    list.append(item);
  });
  return list;
}

const present = (value) => typeof value === 'number' && Number.isFinite(value);

/**
 * Grouped vertical bars. `categories`: labels along x; `series`: [{key, label, values}] with
 * one value (a number or null) per category; `format(value)` writes a value for people;
 * `describe(category, series, text)` the words of one bar's <title>; `tickFormat` and
 * `stepFor(max, count)` the y axis's labels and round step (durationStep for seconds).
 * Returns a <figure> holding the svg and its legend.
 */
export function barChart({
  title, description, categories, series, format = String, width = 720, height = 280,
  labelEvery = 1, describe = (category, s, text) => `${category} — ${s.label}: ${text}`,
  tickFormat = format, stepFor = niceStep,
}) {
  const values = series.flatMap((s) => s.values.filter(present));
  const max = Math.max(0, ...values);
  const { svg, plot, y } = frame({ title, description, width, height, max, tickFormat, stepFor });
  const band = plot.w / Math.max(1, categories.length);
  const gap = Math.min(12, band * 0.2);
  const barWidth = (band - gap) / series.length;
  const bars = node('g', { class: 'chart-bars' });
  categories.forEach((category, i) => {
    series.forEach((s, j) => {
      const value = s.values[i];
      const has = present(value);
      const top = has ? y(value) : plot.y + plot.h;
      const rect = node('rect', {
        x: plot.x + band * i + gap / 2 + barWidth * j,
        y: top,
        width: Math.max(1, barWidth - 1),
        height: plot.y + plot.h - top,
        fill: PALETTE[j % PALETTE.length],
        class: 'chart-bar',
        'data-series': s.key,
        'data-category': category,
        'data-value': has ? String(value) : '',
      });
      rect.append(node('title', {}, describe(category, s, has ? format(value) : '—')));
      bars.append(rect);
    });
  });
  svg.append(bars);
  xLabels(svg, plot, categories, band, labelEvery);
  return figure(svg, series);
}

/**
 * A line through the present values of one series (a missing value breaks the line), a dot
 * for each, over the same axis as barChart.
 */
export function lineChart({
  title, description, categories, series, format = String, width = 720, height = 240,
  labelEvery = 1, describe = (category, s, text) => `${category} — ${s.label}: ${text}`,
  tickFormat = format, stepFor = niceStep,
}) {
  const values = series.flatMap((s) => s.values.filter(present));
  const max = Math.max(0, ...values);
  const { svg, plot, y } = frame({ title, description, width, height, max, tickFormat, stepFor });
  const band = plot.w / Math.max(1, categories.length);
  series.forEach((s, j) => {
    const color = PALETTE[j % PALETTE.length];
    const group = node('g', { class: 'chart-line' });
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        group.prepend(node('polyline', { points: run.join(' '), fill: 'none', stroke: color, 'stroke-width': 2.5, 'aria-hidden': 'true' }));
      }
      run = [];
    };
    categories.forEach((category, i) => {
      const value = s.values[i];
      const cx = plot.x + band * i + band / 2;
      if (!present(value)) {
        flush();
        // No sample: a mark on the axis, so that the hour still has its number (none).
        const empty = node('circle', {
          cx, cy: plot.y + plot.h, r: 2, class: 'chart-point chart-point-empty',
          'data-series': s.key, 'data-category': category, 'data-value': '',
        });
        empty.append(node('title', {}, describe(category, s, '—')));
        group.append(empty);
        return;
      }
      run.push(`${cx},${y(value)}`);
      const dot = node('circle', {
        cx, cy: y(value), r: 4, fill: color, class: 'chart-point',
        'data-series': s.key, 'data-category': category, 'data-value': String(value),
      });
      dot.append(node('title', {}, describe(category, s, format(value))));
      group.append(dot);
    });
    flush();
    svg.append(group);
  });
  xLabels(svg, plot, categories, band, labelEvery);
  return figure(svg, series);
}

function figure(svg, series) {
  const wrapper = document.createElement('figure');
  wrapper.className = 'chart-figure';
  wrapper.append(svg);
  if (series.length > 1) wrapper.append(legend(series));
  return wrapper;
}
