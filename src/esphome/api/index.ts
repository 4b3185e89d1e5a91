/**
 * The ESPHome native API client (DESIGN §11, STYLE 17): `types` (domain shapes, pure), `failure`
 * (connect errors in words, pure), `connection` (the wire, through `esphome-client`, loaded on the
 * first connect) and `owner` (the ownership probe).
 */
export * from "./types.js";
export { connectDevice, isNoiseKey, type ConnectOptions } from "./connection.js";
export { connectFailure } from "./failure.js";
export { probeVoiceOwner } from "./owner.js";
