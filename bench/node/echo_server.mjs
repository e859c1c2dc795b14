// A plain Node `ws` echo server (what the TypeScript SrpcServer runs on): the floor.
// Usage: node echo_server.mjs <port>; prints "ready" once listening.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.on("listening", () => console.log("ready"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
