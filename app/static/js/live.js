// Live mode: the microphone through an AudioWorklet, streamed as f32le to the /v1/stream WebSocket,
// which answers one embedding (and the head's labels) per completed 0.975 s window.

import { ApiError } from "./api.js";

const CLOSE_NORMAL = 1000;

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/stream`;
}

/** An error from a close code when the server sent no error message (4000 + status, or 1011). */
function closeError(event) {
  if (event.code >= 4000 && event.code < 5000) {
    return new ApiError(event.code - 4000, `Stream closed (${event.code})`, event.reason || "");
  }
  return new ApiError(0, "Stream closed", `code ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
}

/**
 * One recording. Callbacks: onReady(message), onEmbedding(message), onEnd(message), onError(ApiError).
 * `stop()` ends capture, sends {"type": "end"} and resolves to {chunks, rate}: the samples sent.
 */
export class LiveSession {
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.chunks = [];
    this.pending = [];
    this.ready = false;
    this.failed = false;
    this.stopping = false;
    this.ended = false;
  }

  async start({ head, postprocess, apiKey }) {
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.context = new AudioContext();
    await this.context.resume();
    await this.context.audioWorklet.addModule("/static/js/recorder-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm-recorder");
    this.node.port.onmessage = (event) => this.onSamples(event.data);
    this.source = this.context.createMediaStreamSource(this.media);
    this.source.connect(this.node);
    this.node.connect(this.context.destination); // pulls the graph; the processor outputs silence
    this.openSocket({
      sample_rate: this.context.sampleRate,
      format: "f32le",
      channels: 1,
      hop: 0.96,
      head: head || null,
      postprocess,
      api_key: apiKey || null,
    });
    return this.context.sampleRate;
  }

  openSocket(first) {
    this.socket = new WebSocket(socketUrl());
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => this.socket.send(JSON.stringify(first));
    this.socket.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    this.socket.onclose = (event) => {
      if (!this.failed && !(this.ended && event.code === CLOSE_NORMAL)) this.fail(closeError(event));
    };
  }

  onSamples(data) {
    if (typeof data === "string") {
      this.flushed?.();
      return;
    }
    this.chunks.push(data);
    if (this.ready) this.socket.send(data);
    else this.pending.push(data);
  }

  onMessage(message) {
    if (message.type === "ready") {
      this.ready = true;
      for (const chunk of this.pending) this.socket.send(chunk);
      this.pending = [];
      this.callbacks.onReady(message);
      if (this.stopping) this.sendEnd();
    } else if (message.type === "embedding") {
      this.callbacks.onEmbedding(message);
    } else if (message.type === "end") {
      this.ended = true;
      this.callbacks.onEnd(message);
    } else if (message.type === "error") {
      this.fail(new ApiError(message.status, message.title, message.detail));
    }
  }

  fail(error) {
    this.failed = true;
    this.release();
    this.callbacks.onError(error);
  }

  release() {
    this.media?.getTracks().forEach((track) => track.stop());
    this.source?.disconnect();
    this.node?.disconnect();
    if (this.context && this.context.state !== "closed") this.context.close();
  }

  async stop() {
    if (this.node && !this.failed) {
      await new Promise((resolve) => {
        this.flushed = resolve;
        this.node.port.postMessage("flush");
      });
    }
    const rate = this.context?.sampleRate ?? 0;
    this.release();
    this.stopping = true;
    if (this.ready) this.sendEnd(); // else once the server is ready
    return { chunks: this.chunks, rate };
  }

  sendEnd() {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "end" }));
  }
}
