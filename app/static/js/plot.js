// Canvas basics shared by every plot: HiDPI sizing, theme colours, axes, rasters placed in time.

import { level } from "./colormaps.js";

/** Margins (CSS px) shared by the time plots, so that their time axes line up. */
export const MARGIN = { left: 56, right: 70, top: 8, bottom: 26 }; // right: the colour bar

/** The page's current colours (they follow the light/dark scheme). */
export function theme() {
  const style = getComputedStyle(document.documentElement);
  const value = (name) => style.getPropertyValue(name).trim();
  return { fg: value("--fg"), muted: value("--muted"), grid: value("--grid"), wave: value("--wave") };
}

/** Sizes `canvas` to its CSS box at the device's pixel ratio and clears it; returns the plot area. */
export function prepare(canvas, margin = MARGIN) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(40, canvas.clientWidth);
  const height = Math.max(40, canvas.clientHeight);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  const plot = {
    x: margin.left,
    y: margin.top,
    w: Math.max(1, width - margin.left - margin.right),
    h: Math.max(1, height - margin.top - margin.bottom),
  };
  return { ctx, plot, colours: theme() };
}

/** A round step (1, 2 or 5 × 10^k) giving about `count` ticks over `span`. */
export function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10) * power;
}

function decimals(step) {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

/** Bottom axis in seconds over [0, duration], with light grid lines. */
export function timeAxis(ctx, plot, duration, colours, label = "s") {
  const step = niceStep(duration || 1, Math.max(2, Math.floor(plot.w / 80)));
  ctx.fillStyle = colours.muted;
  ctx.strokeStyle = colours.grid;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const x = plot.x + (t / duration) * plot.w;
    ctx.beginPath();
    ctx.moveTo(x, plot.y);
    ctx.lineTo(x, plot.y + plot.h);
    ctx.stroke();
    ctx.fillText(`${t.toFixed(decimals(step))}${t === 0 ? ` ${label}` : ""}`, x, plot.y + plot.h + 5);
  }
}

/** Left axis labels: `ticks` is a list of [value, text]; value in [lo, hi] maps bottom to top. */
export function leftAxis(ctx, plot, lo, hi, ticks, colours, { topDown = false } = {}) {
  ctx.fillStyle = colours.muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const [value, text] of ticks) {
    const f = (value - lo) / (hi - lo || 1);
    const y = topDown ? plot.y + f * plot.h : plot.y + plot.h - f * plot.h;
    ctx.fillText(text, plot.x - 6, y);
  }
}

/** An offscreen canvas of cols × rows pixels; `value(col, row)` is coloured on `lut` over [lo, hi]. */
export function raster(cols, rows, value, lut, lo, hi) {
  const image = new ImageData(cols, rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = 3 * level(value(c, r), lo, hi);
      const o = 4 * (r * cols + c);
      image.data[o] = lut[i];
      image.data[o + 1] = lut[i + 1];
      image.data[o + 2] = lut[i + 2];
      image.data[o + 3] = 255;
    }
  }
  const canvas = new OffscreenCanvas(cols, rows);
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

/** A vertical colour bar right of the plot, labelled with the values at its ends. */
export function colourBar(ctx, plot, lut, lo, hi, colours, digits = 2) {
  const x = plot.x + plot.w + 10;
  const bar = raster(1, 256, (_, r) => hi - (r / 255) * (hi - lo), lut, lo, hi);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(bar, x, plot.y, 10, plot.h);
  ctx.fillStyle = colours.muted;
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText(fmt(hi, digits), x + 14, plot.y);
  ctx.textBaseline = "bottom";
  ctx.fillText(fmt(lo, digits), x + 14, plot.y + plot.h);
}

/** Where each frame is drawn: from its start to the next frame's start (or its own end, if sooner). */
export function spans(timestamps) {
  return timestamps.map(([start, end], i) => {
    const next = i + 1 < timestamps.length ? timestamps[i + 1][0] : end;
    return [start, Math.min(end, Math.max(next, start))];
  });
}

/** Draws column block i of `image` (`width` source columns each) over the time span spans[i]. */
export function drawInTime(ctx, plot, image, timeSpans, duration, width = 1) {
  ctx.imageSmoothingEnabled = false;
  const x = (t) => plot.x + (t / (duration || 1)) * plot.w;
  timeSpans.forEach(([start, end], i) => {
    const left = x(start);
    const right = Math.max(left + 1, x(end));
    ctx.drawImage(image, i * width, 0, width, image.height, left, plot.y, right - left, plot.h);
  });
}

/** The extremes of a list of typed arrays. */
export function extent(arrays) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const array of arrays) {
    for (const v of array) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return [lo, hi];
}

/** A number for people: `digits` decimals, a real minus sign. */
export function fmt(value, digits = 3) {
  return Number(value).toFixed(digits).replace("-", "−");
}
