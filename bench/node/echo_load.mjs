// Closed-loop echo load on Node `ws`, as the TypeScript SrpcClient drives an SRPC server:
// the signed connect query (WIRE.md section 4), the answer to the server's first
// pingPong, and pre-encoded uEcho request frames, one in flight per connection.
// Usage: node echo_load.mjs '<json options>'; prints one JSON result line.
//   {url, srpc, clients, warmup, duration, secret, bodyHex}
import { createHmac, randomUUID } from "node:crypto";
import WebSocket from "ws";

const opts = JSON.parse(process.argv[2]);
const body = Buffer.from(opts.bodyHex, "hex");
const PONG = Buffer.from([0x92, 0x03, 0x00]); // ClientMessage{pingPong: {}}

function signedUrl(clientId) {
  const params = { authv: "1", appv: "bench", ts: String(Date.now()), id: randomUUID(), cid: clientId };
  const text = ["authv", "appv", "ts", "id", "cid"].map((k) => `${params[k]}\n`).join("");
  params.signature = createHmac("sha256", opts.secret).update(text).digest("hex");
  params._v = "2";
  return `${opts.url}?${new URLSearchParams(params)}`;
}

function frameFor(requestId) {
  // requestId (field 1) in front of the pre-encoded body: a valid protobuf encoding.
  const rid = Buffer.from(requestId);
  return Buffer.concat([Buffer.from([0x0a, rid.length]), rid, body]);
}

function isPing(data) {
  return data.length <= 16 && data.subarray(data.length - 3).equals(Buffer.from([0x92, 0x03, 0x00]));
}

function open(index) {
  return new Promise((resolve, reject) => {
    const url = opts.srpc ? signedUrl(`node-${process.pid}-${index}`) : opts.url;
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.binaryType = "nodebuffer";
    ws.once("error", reject);
    if (!opts.srpc) {
      ws.once("open", () => resolve(ws));
      return;
    }
    ws.once("message", (data) => {
      if (!isPing(data)) return reject(new Error("expected the server's first pingPong"));
      ws.send(PONG);
      resolve(ws);
    });
  });
}

const sockets = await Promise.all(Array.from({ length: opts.clients }, (_, i) => open(i)));
const start = performance.now();
const windowStart = start + opts.warmup * 1000;
const windowEnd = windowStart + opts.duration * 1000;
const latencies = [];
let done = 0;
let running = true;

await new Promise((resolve) => {
  let stopped = 0;
  sockets.forEach((ws, worker) => {
    let counter = 0;
    let sentAt = 0;
    const next = () => {
      if (!running) {
        if (++stopped === sockets.length) resolve();
        return;
      }
      counter += 1;
      sentAt = performance.now();
      ws.send(frameFor(`${worker}-${counter}`));
    };
    ws.on("message", (data) => {
      if (opts.srpc && isPing(data)) return;
      const now = performance.now();
      if (now >= windowStart && now < windowEnd) {
        done += 1;
        if (sentAt >= windowStart) latencies.push(now - sentAt);
      }
      if (now >= windowEnd) running = false;
      next();
    });
    next();
  });
});

// Summarised as the orchestrator's own load generators do (bench/runner.py
// latency_summary): percentiles by rounding, a 101-point CDF, in ms.
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.round((p / 100) * (latencies.length - 1))))];
const summary = latencies.length
  ? {
      count: latencies.length,
      p50_ms: pct(50),
      p90_ms: pct(90),
      p99_ms: pct(99),
      max_ms: latencies[latencies.length - 1],
      mean_ms: latencies.reduce((a, b) => a + b, 0) / latencies.length,
      cdf_ms: Array.from({ length: 101 }, (_, p) => Math.round(pct(p) * 10000) / 10000),
    }
  : { count: 0, p50_ms: null, p90_ms: null, p99_ms: null, cdf_ms: [] };
process.stdout.write(JSON.stringify({ concurrency: opts.clients, throughput: done / opts.duration, ...summary }) + "\n");
// A clean closing handshake (servers log abrupt disconnects), bounded in time.
setTimeout(() => process.exit(0), 2000).unref();
await Promise.all(sockets.map((ws) => new Promise((resolve) => {
  ws.once("close", resolve);
  ws.close(1000);
})));
process.exit(0);
