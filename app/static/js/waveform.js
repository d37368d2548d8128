// The waveform, decoded by the browser (Web Audio), drawn as min/max per pixel column.

import { fmt, leftAxis, prepare, timeAxis } from "./plot.js";

const DISPLAY_RATE = 16000; // Hz: the model's rate; plenty for a picture

/** Decodes a File for display: {mono: Float32Array, rate, duration, channels}. */
export async function decode(file) {
  const context = new OfflineAudioContext(1, 1, DISPLAY_RATE);
  const audio = await context.decodeAudioData(await file.arrayBuffer());
  const mono = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const channel = audio.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / audio.numberOfChannels;
  }
  return { mono, rate: audio.sampleRate, duration: audio.duration, channels: audio.numberOfChannels };
}

/** Draws the waveform; returns the text alternative. */
export function drawWaveform(canvas, wave) {
  const { ctx, plot, colours } = prepare(canvas);
  const { mono, duration } = wave;
  let peak = 0;
  for (const v of mono) peak = Math.max(peak, Math.abs(v));
  const scale = Math.max(peak, 1e-4);
  timeAxis(ctx, plot, duration, colours);
  leftAxis(ctx, plot, -scale, scale, [[scale, fmt(scale, 2)], [0, "0"], [-scale, fmt(-scale, 2)]], colours);
  const mid = plot.y + plot.h / 2;
  const perPixel = mono.length / plot.w;
  ctx.strokeStyle = colours.wave;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let px = 0; px < plot.w; px++) {
    const from = Math.floor(px * perPixel);
    const to = Math.max(from + 1, Math.floor((px + 1) * perPixel));
    let lo = 0;
    let hi = 0;
    for (let i = from; i < to && i < mono.length; i++) {
      if (mono[i] < lo) lo = mono[i];
      if (mono[i] > hi) hi = mono[i];
    }
    ctx.moveTo(plot.x + px + 0.5, mid - (hi / scale) * (plot.h / 2));
    ctx.lineTo(plot.x + px + 0.5, mid - (lo / scale) * (plot.h / 2) + 1);
  }
  ctx.stroke();
  const channels = wave.channels === 1 ? "1 channel" : `${wave.channels} channels mixed to mono`;
  return `Waveform: ${fmt(duration, 2)} s, ${channels}, peak amplitude ${fmt(peak, 3)}.`;
}
