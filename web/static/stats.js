// @ts-check
// The summary of an RTCPeerConnection's getStats() report the app shows
// (direct or relayed, transport, round trip, bitrates). Pure: node --test.

/**
 * Summary of a connection's state, from RTCPeerConnection.getStats().
 * @typedef {object} StatsSummary
 * @property {"direct" | "relay" | "unknown"} path relay: through our TURN server
 * @property {string} transport "udp" or "tcp" between browser and peer (or TURN server);
 *   for a relayed path, how the browser reaches TURN: "udp", "tcp" or "tls"
 * @property {string} localType host, srflx, prflx or relay
 * @property {string} remoteType
 * @property {number | null} rtt milliseconds, of the selected candidate pair
 * @property {number | null} inKbps received media bitrate since the previous summary
 * @property {number | null} outKbps sent media bitrate since the previous summary
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} framesDecoded video frames decoded so far
 * @property {number} timestamp ms
 */

/**
 * Summarizes an RTCStatsReport (or any Map-like of stats objects).
 * @param {{forEach: (cb: (v: any, k: string) => void) => void, get?: (k: string) => any}} report
 * @param {StatsSummary | null} [prev] previous summary, for bitrates
 * @returns {StatsSummary}
 */
export function summarizeStats(report, prev = null) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((v, k) => byId.set(v?.id ?? k, v));
  let pair = null;
  // The transport names the selected pair; older stats only mark it nominated.
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = byId.get(s.selectedCandidatePairId) ?? null;
      if (pair) break;
    }
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || s.selected)) {
        pair = s;
        break;
      }
    }
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let framesDecoded = 0;
  let timestamp = 0;
  for (const s of byId.values()) {
    if (s.type === "inbound-rtp") {
      bytesIn += s.bytesReceived ?? 0;
      if (s.kind === "video" || s.mediaType === "video") framesDecoded += s.framesDecoded ?? 0;
      timestamp = Math.max(timestamp, s.timestamp ?? 0);
    } else if (s.type === "outbound-rtp") {
      bytesOut += s.bytesSent ?? 0;
      timestamp = Math.max(timestamp, s.timestamp ?? 0);
    }
  }
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  if (pair) timestamp = Math.max(timestamp, pair.timestamp ?? 0);
  const localType = local?.candidateType ?? "";
  const remoteType = remote?.candidateType ?? "";
  /** @type {StatsSummary["path"]} */
  let path = "unknown";
  if (pair) path = localType === "relay" || remoteType === "relay" ? "relay" : "direct";
  let transport = local?.protocol ?? "";
  if (localType === "relay" && local?.relayProtocol) transport = local.relayProtocol;
  const rtt = pair && typeof pair.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1000) : null;
  let inKbps = null;
  let outKbps = null;
  if (prev && timestamp > prev.timestamp) {
    const secs = (timestamp - prev.timestamp) / 1000;
    inKbps = Math.max(0, Math.round(((bytesIn - prev.bytesIn) * 8) / 1000 / secs));
    outKbps = Math.max(0, Math.round(((bytesOut - prev.bytesOut) * 8) / 1000 / secs));
  }
  return { path, transport, localType, remoteType, rtt, inKbps, outKbps, bytesIn, bytesOut, framesDecoded, timestamp };
}

/**
 * Human words for a stats summary, e.g. "Direct · UDP · 12 ms".
 * @param {StatsSummary} s
 */
export function describePath(s) {
  if (s.path === "unknown") return "Connecting…";
  const parts = [s.path === "relay" ? "Relayed" : "Direct"];
  if (s.transport) parts.push(s.transport.toUpperCase());
  if (s.rtt !== null) parts.push(`${s.rtt} ms`);
  return parts.join(" · ");
}
