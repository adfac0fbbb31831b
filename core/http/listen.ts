/** Starts an HTTP(S) server on "host:port" and reports the address it really got (port 0 picks one). */
import type { Server } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import { splitHostPort } from '../cli/options.js';

export async function listen(server: Server, hostPort: string): Promise<{ host: string; port: number; baseUrl: string }> {
  const { host, port } = splitHostPort(hostPort);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new Error(err.code === 'EADDRINUSE' ? `cannot listen on ${hostPort}: the port is in use (pick another with --listen)` : `cannot listen on ${hostPort}: ${err.message}`),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address');
  // A wildcard address is not something a user can open: show loopback, which always reaches it.
  const shown = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '[::1]' : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const scheme = (server as unknown) instanceof HttpsServer ? 'https' : 'http';
  return { host: addr.address, port: addr.port, baseUrl: `${scheme}://${shown}:${addr.port}` };
}
