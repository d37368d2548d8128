// The frames in 2-D: the first two principal components of the embeddings, coloured by time.

import { css, viridis } from "./colormaps.js";
import { fmt, prepare } from "./plot.js";

const ITERATIONS = 300; // power iterations per component (the matrix is 128 × 128)

function covariance(rows, size) {
  const c = new Float64Array(size * size);
  for (const r of rows) {
    for (let i = 0; i < size; i++) {
      const ri = r[i];
      for (let j = i; j < size; j++) c[i * size + j] += ri * r[j];
    }
  }
  for (let i = 0; i < size; i++) for (let j = 0; j < i; j++) c[i * size + j] = c[j * size + i];
  return c;
}

function topEigen(c, size) {
  let v = Float64Array.from({ length: size }, (_, i) => 1 / (i + 1)); // deterministic start
  let value = 0;
  for (let step = 0; step < ITERATIONS; step++) {
    const w = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      let sum = 0;
      for (let j = 0; j < size; j++) sum += c[i * size + j] * v[j];
      w[i] = sum;
    }
    const norm = Math.hypot(...w);
    if (norm === 0) return { vector: v, value: 0 };
    value = norm;
    v = w.map((x) => x / norm);
  }
  return { vector: v, value };
}

/** PCA of the vectors: {points: [x, y][], explained: [r1, r2]} (shares of the variance); null under 2 frames. */
export function pca2(vectors) {
  if (vectors.length < 2) return null;
  const size = vectors[0].length;
  const centre = new Float64Array(size);
  for (const v of vectors) for (let i = 0; i < size; i++) centre[i] += v[i] / vectors.length;
  const rows = vectors.map((v) => Float64Array.from(v, (x, i) => x - centre[i]));
  const c = covariance(rows, size);
  let trace = 0;
  for (let i = 0; i < size; i++) trace += c[i * size + i];
  if (!(trace > 0)) return null;
  const first = topEigen(c, size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) c[i * size + j] -= first.value * first.vector[i] * first.vector[j];
  }
  const second = topEigen(c, size);
  const project = (r, v) => r.reduce((sum, x, i) => sum + x * v[i], 0);
  return {
    points: rows.map((r) => [project(r, first.vector), project(r, second.vector)]),
    explained: [first.value / trace, second.value / trace],
  };
}

/** Draws the projected frames, joined in time order; returns the text alternative. */
export function drawProjection(canvas, projection, timestamps) {
  const margin = { left: 40, right: 14, top: 10, bottom: 30 };
  const { ctx, plot, colours } = prepare(canvas, margin);
  const xs = projection.points.map((p) => p[0]);
  const ys = projection.points.map((p) => p[1]);
  const range = (values) => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = (hi - lo) * 0.06 || 1;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = range(xs);
  const [y0, y1] = range(ys);
  const at = ([x, y]) => [plot.x + ((x - x0) / (x1 - x0)) * plot.w, plot.y + plot.h - ((y - y0) / (y1 - y0)) * plot.h];
  ctx.strokeStyle = colours.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(plot.x, plot.y, plot.w, plot.h);
  ctx.beginPath();
  projection.points.forEach((p, i) => (i ? ctx.lineTo(...at(p)) : ctx.moveTo(...at(p))));
  ctx.stroke();
  const last = projection.points.length - 1;
  projection.points.forEach((p, i) => {
    ctx.fillStyle = css(viridis, i, 0, last);
    ctx.beginPath();
    ctx.arc(...at(p), 4.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = colours.fg;
    ctx.lineWidth = 0.75;
    ctx.stroke();
  });
  ctx.fillStyle = colours.fg;
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText("start", ...at(projection.points[0]).map((v) => v + 6));
  ctx.fillText("end", ...at(projection.points[last]).map((v) => v + 6));
  const [r1, r2] = projection.explained;
  ctx.fillStyle = colours.muted;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  ctx.fillText(`PC1 (${fmt(100 * r1, 0)}% of the variance)`, plot.x + plot.w / 2, plot.y + plot.h + 8);
  ctx.save();
  ctx.translate(plot.x - 10, plot.y + plot.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "bottom";
  ctx.fillText(`PC2 (${fmt(100 * r2, 0)}%)`, 0, 0);
  ctx.restore();
  const span = `${fmt(timestamps[0][0], 2)} s (dark) to ${fmt(timestamps[last][0], 2)} s (bright)`;
  return (
    `PCA projection of ${projection.points.length} frames, coloured by time from ${span}; the first two ` +
    `components explain ${fmt(100 * r1, 0)}% and ${fmt(100 * r2, 0)}% of the variance.`
  );
}
