// The log-mel examples (the model's input): 96 frames × 64 mel bands each, placed at their timestamps.

import { viridis } from "./colormaps.js";
import { colourBar, drawInTime, extent, fmt, leftAxis, prepare, raster, timeAxis } from "./plot.js";

export const FRAMES = 96; // 10 ms frames per example
export const BANDS = 64; // mel bands, 125 Hz to 7500 Hz
const SILENCE = Math.log(0.01); // log(mel + 0.01) of silence

/** Draws the examples ({timestamps, duration, examples: Float32Array(96 × 64)[]}); returns the text alternative. */
export function drawSpectrogram(canvas, features) {
  const { ctx, plot, colours } = prepare(canvas);
  const { examples, timestamps, duration } = features;
  timeAxis(ctx, plot, duration, colours);
  leftAxis(ctx, plot, 0, BANDS, [[0, "125 Hz"], [BANDS, "7.5 kHz"]], colours);
  if (examples.length === 0) return "Log-mel spectrogram: no example (the clip is shorter than 0.975 s).";
  const [lo, hi] = extent(examples);
  const floor = Math.min(lo, SILENCE);
  // Column c of the raster is frame c % 96 of example ⌊c / 96⌋; row 0 is the highest band.
  const image = raster(
    FRAMES * examples.length,
    BANDS,
    (c, r) => examples[Math.floor(c / FRAMES)][(c % FRAMES) * BANDS + (BANDS - 1 - r)],
    viridis,
    floor,
    hi,
  );
  const frameSpans = timestamps.map(([start]) => [start, start + FRAMES * 0.01]);
  drawInTime(ctx, plot, image, frameSpans, duration, FRAMES);
  colourBar(ctx, plot, viridis, floor, hi, colours, 1);
  return (
    `Log-mel spectrogram: ${examples.length} examples × ${FRAMES} frames × ${BANDS} mel bands over ` +
    `${fmt(duration, 2)} s; log values from ${fmt(lo, 2)} to ${fmt(hi, 2)} (dark low, bright high).`
  );
}
