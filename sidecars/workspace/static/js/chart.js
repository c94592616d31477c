// A bar chart in inline SVG for a result that is a series: one label column and at least one numeric
// column, two rows or more. No chart library: a few rectangles and text nodes are all a result needs.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = String(text);
  return element;
}

const isNumber = (value) => value !== "" && value !== null && Number.isFinite(Number(value));

/** The series in a result (columns + rows of values), or null when the result is not one. */
export function seriesOf(columns, rows) {
  if (!Array.isArray(rows) || rows.length < 2 || columns.length < 2) return null;
  const numeric = columns.map((_, index) => rows.every((row) => isNumber(row[index])));
  const valueIndex = numeric.lastIndexOf(true);
  if (valueIndex < 0) return null;
  const labelIndex = valueIndex === 0 ? 1 : 0;
  return {
    labelName: columns[labelIndex],
    valueName: columns[valueIndex],
    points: rows.map((row) => ({ label: String(row[labelIndex]), value: Number(row[valueIndex]) })),
  };
}

/** Draw the series as bars; the SVG carries a title and a description for screen readers. */
export function barChart(series, { width = 640, height = 280 } = {}) {
  const margin = { top: 16, right: 16, bottom: 48, left: 64 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const maximum = Math.max(0, ...series.points.map((point) => point.value));
  const minimum = Math.min(0, ...series.points.map((point) => point.value));
  const span = maximum - minimum || 1;
  const y = (value) => margin.top + plotHeight - ((value - minimum) / span) * plotHeight;
  const slot = plotWidth / series.points.length;
  const title = `${series.valueName} by ${series.labelName}`;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "aria-labelledby": "" });
  const titleId = `chart-title-${Math.random().toString(36).slice(2)}`;
  root.setAttribute("aria-labelledby", titleId);
  root.append(svg("title", { id: titleId }, title));
  root.append(svg("desc", {}, series.points.map((point) => `${point.label}: ${point.value}`).join("; ")));
  root.append(svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotHeight, class: "axis" }));
  root.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0), class: "axis" }));
  for (const tick of [minimum, (minimum + maximum) / 2, maximum]) {
    root.append(svg("text", { x: margin.left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick" }, Number(tick.toPrecision(4))));
  }
  series.points.forEach((point, index) => {
    const barWidth = Math.max(2, slot * 0.7);
    const x = margin.left + index * slot + (slot - barWidth) / 2;
    const top = Math.min(y(point.value), y(0));
    const bar = svg("rect", { x, y: top, width: barWidth, height: Math.max(1, Math.abs(y(point.value) - y(0))), class: "bar" });
    bar.append(svg("title", {}, `${point.label}: ${point.value}`));
    root.append(bar);
    root.append(svg("text", { x: x + barWidth / 2, y: margin.top + plotHeight + 18, "text-anchor": "middle", class: "tick" }, point.label));
  });
  root.append(svg("text", { x: margin.left + plotWidth / 2, y: height - 6, "text-anchor": "middle", class: "axis-name" }, series.labelName));
  return root;
}
