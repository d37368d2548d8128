// Heatmaps of vectors: embeddings and postprocessed features over time, the live embeddings, and the
// frame × frame cosine similarity of two clips.

import { coolwarm, viridis } from "./colormaps.js";
import { colourBar, drawInTime, extent, fmt, leftAxis, niceStep, prepare, raster, spans, timeAxis } from "./plot.js";

/** Colours for vectors: diverging around 0 when values have both signs, else sequential. */
function scaleOf(vectors, fixed) {
  if (fixed) return { lut: viridis, lo: fixed[0], hi: fixed[1], text: `${fixed[0]} to ${fixed[1]}`, digits: 0 };
  const [lo, hi] = extent(vectors);
  if (lo < 0 && hi > 0) {
    const m = Math.max(-lo, hi);
    return { lut: coolwarm, lo: -m, hi: m, text: `${fmt(lo)} to ${fmt(hi)} (blue negative, red positive)`, digits: 1 };
  }
  return { lut: viridis, lo, hi, text: `${fmt(lo)} to ${fmt(hi)} (dark low, bright high)`, digits: 2 };
}

function dimensionAxis(ctx, plot, size, colours) {
  leftAxis(ctx, plot, 0, size, [[0.5, "dim 0"], [size / 2, String(size / 2)], [size - 0.5, String(size - 1)]], colours, {
    topDown: true,
  });
}

/**
 * Draws vectors (one per frame) as a time × dimension heatmap, each column at its timestamps.
 * `fixed`: a [lo, hi] colour range (0..255 for the 8-bit features). Returns the text alternative.
 */
export function drawVectors(canvas, { vectors, timestamps, duration }, title, fixed = null) {
  const { ctx, plot, colours } = prepare(canvas);
  timeAxis(ctx, plot, duration, colours);
  if (vectors.length === 0) return `${title}: no frame.`;
  const size = vectors[0].length;
  dimensionAxis(ctx, plot, size, colours);
  const scale = scaleOf(vectors, fixed);
  const image = raster(vectors.length, size, (c, r) => vectors[c][r], scale.lut, scale.lo, scale.hi);
  drawInTime(ctx, plot, image, spans(timestamps), duration);
  colourBar(ctx, plot, scale.lut, scale.lo, scale.hi, colours, scale.digits);
  return `${title} heatmap: ${vectors.length} frames × ${size} dimensions; values ${scale.text}.`;
}

/** Cosine similarity of two vectors. */
export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
}

/** The mean of vectors (the API's `pooling=mean`). */
export function mean(vectors) {
  const out = new Float64Array(vectors[0].length);
  for (const v of vectors) for (let i = 0; i < out.length; i++) out[i] += v[i] / vectors.length;
  return out;
}

/** The frame × frame cosine matrix of clips a and b (rows a, columns b). */
export function similarity(a, b) {
  return a.map((u) => b.map((v) => cosine(u, v)));
}

function frameTicks(count, timestamps) {
  const step = Math.max(1, niceStep(count, 4));
  const ticks = [];
  for (let i = 0; i < count; i += step) ticks.push([i + 0.5, `${fmt(timestamps[i][0], 1)} s`]);
  return ticks;
}

/**
 * Draws the cosine matrix (rows: clip A's frames top-down, columns: clip B's), its colours spanning the
 * matrix's own range (the colour bar gives it); returns the text alternative.
 */
export function drawSimilarity(canvas, matrix, a, b) {
  const margin = { left: 64, right: 70, top: 8, bottom: 38 };
  const { ctx, plot, colours } = prepare(canvas, margin);
  const rows = matrix.length;
  const cols = matrix[0].length;
  const [lo, hi] = extent(matrix);
  const image = raster(cols, rows, (c, r) => matrix[r][c], viridis, lo, hi);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, plot.x, plot.y, plot.w, plot.h);
  colourBar(ctx, plot, viridis, lo, hi, colours, 3);
  leftAxis(ctx, plot, 0, rows, frameTicks(rows, a.timestamps), colours, { topDown: true });
  ctx.fillStyle = colours.muted;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const [i, text] of frameTicks(cols, b.timestamps)) ctx.fillText(text, plot.x + (i / cols) * plot.w, plot.y + plot.h + 5);
  ctx.fillText(`${b.name ?? "clip B"} (columns) vs ${a.name ?? "clip A"} (rows)`, plot.x + plot.w / 2, plot.y + plot.h + 21);
  return (
    `Cosine similarity matrix: ${rows} frames of ${a.name ?? "clip A"} × ${cols} frames of ${b.name ?? "clip B"}; ` +
    `from ${fmt(lo)} to ${fmt(hi)} (dark lowest, bright highest).`
  );
}
