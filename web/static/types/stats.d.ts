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
export function summarizeStats(report: {
    forEach: (cb: (v: any, k: string) => void) => void;
    get?: (k: string) => any;
}, prev?: StatsSummary | null): StatsSummary;
/**
 * Human words for a stats summary, e.g. "Direct · UDP · 12 ms".
 * @param {StatsSummary} s
 */
export function describePath(s: StatsSummary): string;
/**
 * Summary of a connection's state, from RTCPeerConnection.getStats().
 */
export type StatsSummary = {
    /**
     * relay: through our TURN server
     */
    path: "direct" | "relay" | "unknown";
    /**
     * "udp" or "tcp" between browser and peer (or TURN server);
     * for a relayed path, how the browser reaches TURN: "udp", "tcp" or "tls"
     */
    transport: string;
    /**
     * host, srflx, prflx or relay
     */
    localType: string;
    remoteType: string;
    /**
     * milliseconds, of the selected candidate pair
     */
    rtt: number | null;
    /**
     * received media bitrate since the previous summary
     */
    inKbps: number | null;
    /**
     * sent media bitrate since the previous summary
     */
    outKbps: number | null;
    bytesIn: number;
    bytesOut: number;
    /**
     * video frames decoded so far
     */
    framesDecoded: number;
    /**
     * ms
     */
    timestamp: number;
};
