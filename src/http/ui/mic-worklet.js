// AudioWorklet: microphone samples (the context runs at 16 kHz, the browser resamples the device)
// → PCM16 little-endian frames of 20 ms, posted to the page with the frame's RMS level.
const FRAME = 320; // 20 ms at 16 kHz

class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.sumSquares = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.sumSquares += s * s;
      this.frame[this.filled++] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
      if (this.filled === FRAME) {
        const pcm = this.frame.buffer;
        this.port.postMessage({ pcm, rms: Math.sqrt(this.sumSquares / FRAME) }, [pcm]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
        this.sumSquares = 0;
      }
    }
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
