// AudioWorklet processor: mixes the microphone to mono and posts blocks of float32 samples to the page.
// A "flush" message posts what is buffered, then "flushed".

const BLOCK = 4096; // samples per message (85 ms at 48 kHz)

class PcmRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post(this.filled);
        this.port.postMessage("flushed");
      }
    };
  }

  post(count) {
    if (count === 0) return;
    const samples = this.block.slice(0, count);
    this.port.postMessage(samples, [samples.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      this.block[this.filled++] = sum / channels.length;
      if (this.filled === BLOCK) this.post(BLOCK);
    }
    return true;
  }
}

registerProcessor("pcm-recorder", PcmRecorder);
