/**
 * Upgrade requests that are not WebSocket (`Connection: Upgrade, HTTP2-Settings` + `Upgrade: h2c`, which
 * curl --http2 and some HTTP clients send on plain http://) answered as the HTTP/1.1 requests they also are.
 * Node emits 'upgrade' for any Upgrade header once a server listens for it, and hands over a bare socket:
 * the bridge (whose uplink is a WebSocket) answered `GET /healthz` with Upgrade: h2c by "no WebSocket
 * endpoint" (404). A server may ignore an Upgrade it does not take (RFC 9110 §7.8): such a request goes to
 * the server's own 'request' handler, on a response made for its socket, which is closed after it. A
 * server with no 'upgrade' listener (the agent) needs none of this: Node serves those requests itself.
 */
import { type IncomingMessage, type Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { endConnection } from '../net/end-connection.js';
import { sendJson } from './replies.js';

/** Whether the request asks for a WebSocket (one of the protocols its Upgrade header lists). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').split(',').some((p) => p.trim().toLowerCase() === 'websocket');
}

/** Whether the request says it has a body (Content-Length above 0, or any Transfer-Encoding). */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * Listens for 'upgrade' on `server`: a WebSocket upgrade goes to `webSocket`, any other is served by the
 * server's 'request' listeners as a plain request (Connection: close). Its body is not read after an
 * upgrade (Node has stopped parsing): one that has a body is answered 400, saying to send it without Upgrade.
 */
export function listenForUpgrades(server: Server, webSocket: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (isWebSocketUpgrade(req)) return webSocket(req, socket, head);
    socket.on('error', () => {}); // a reset is the client's business, as for any request
    // The socket of an HTTP server's upgrade is its connection's (a net.Socket, a tls.TLSSocket under HTTPS).
    const sock = socket as Socket;
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false; // the socket left Node's parser: no next request can be read on it
    res.assignSocket(sock);
    res.on('finish', () => {
      res.detachSocket(sock);
      endConnection(sock);
    });
    if (hasBody(req)) {
      sendJson(res, 400, { error: `a request with a body and Upgrade: ${req.headers.upgrade} is not served; send it without the Upgrade header` });
      return;
    }
    server.emit('request', req, res);
  });
}
