// A WAV file (32-bit float, mono) of recorded samples, so that a recording is analysed like a file.

/** Float32Array chunks at `rate` Hz -> a File holding a 32-bit float WAV. */
export function wavFile(chunks, rate, name) {
  const count = chunks.reduce((n, c) => n + c.length, 0);
  const buffer = new ArrayBuffer(44 + 4 * count);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 4 * count, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 3, true); // IEEE float
  view.setUint16(22, 1, true); // channels
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 4, true); // bytes per second
  view.setUint16(32, 4, true); // block align
  view.setUint16(34, 32, true); // bits per sample
  text(36, "data");
  view.setUint32(40, 4 * count, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (const v of chunk) {
      view.setFloat32(offset, v, true);
      offset += 4;
    }
  }
  return new File([buffer], name, { type: "audio/wav" });
}
