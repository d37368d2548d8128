// A classifier head's score of each label over time (one line per label, a colour and dash each).

import { CATEGORICAL } from "./colormaps.js";
import { fmt, leftAxis, prepare, spans, timeAxis } from "./plot.js";

export const MAX_LINES = 8; // the clip's best labels get a line; the table lists every frame's best
const DASHES = [[], [7, 4], [2, 3]];

/** The style of the k-th line: {colour, dash, borderStyle} (borderStyle for the HTML legend). */
export function lineStyle(k) {
  const round = Math.floor(k / CATEGORICAL.length) % DASHES.length;
  return { colour: CATEGORICAL[k % CATEGORICAL.length], dash: DASHES[round], border: ["solid", "dashed", "dotted"][round] };
}

/** The labels to draw: the clip's best first, at most MAX_LINES. */
export function plottedLabels(classification) {
  return classification.labels.slice(0, MAX_LINES).map((l) => l.label);
}

/** Draws each plotted label's score per frame as steps; returns the text alternative. */
export function drawScores(canvas, classification, duration) {
  const { ctx, plot, colours } = prepare(canvas);
  timeAxis(ctx, plot, duration, colours);
  leftAxis(ctx, plot, 0, 1, [[0, "0"], [0.5, "0.5"], [1, "1"]], colours);
  const { frames } = classification;
  const labels = plottedLabels(classification);
  if (frames.length === 0) return "Head scores: no frame.";
  const frameSpans = spans(frames.map((f) => [f.start, f.end]));
  const x = (t) => plot.x + (t / (duration || 1)) * plot.w;
  const y = (s) => plot.y + plot.h - s * plot.h;
  const peaks = [];
  labels.forEach((label, k) => {
    const style = lineStyle(k);
    ctx.strokeStyle = style.colour;
    ctx.setLineDash(style.dash);
    ctx.lineWidth = 2;
    ctx.beginPath();
    let best = { score: -1, start: 0 };
    frames.forEach((frame, i) => {
      const score = frame.labels.find((l) => l.label === label)?.score ?? 0;
      if (score > best.score) best = { score, start: frame.start };
      const [start, end] = frameSpans[i];
      if (i === 0) ctx.moveTo(x(start), y(score));
      else ctx.lineTo(x(start), y(score));
      ctx.lineTo(x(end), y(score));
    });
    ctx.stroke();
    peaks.push(`${label} peaks at ${fmt(best.score, 2)} at ${fmt(best.start, 2)} s`);
  });
  ctx.setLineDash([]);
  return `Head scores over ${frames.length} frames for ${labels.length} labels: ${peaks.join("; ")}.`;
}
