/**
 * A plain TCP load balancer for the cluster tests (what nginx's `upstream` does in production): each
 * client connection goes to the first backend that accepts it, in order, so that killing a node sends
 * its clients to the next one. Loopback only; close() ends every connection it carries.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpBalancer {
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly backends: number[],
  ) {}

  static async start(backends: number[]): Promise<TcpBalancer> {
    let self: TcpBalancer | undefined;
    const server = createServer((client) => self?.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new TcpBalancer(server, (server.address() as { port: number }).port, backends);
    return self;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private accept(client: Socket, i = 0): void {
    this.track(client);
    client.pause();
    if (i >= this.backends.length || client.destroyed) return void client.destroy();
    const up = connect(this.backends[i]!, '127.0.0.1');
    let connected = false;
    up.on('error', () => {
      up.destroy();
      // Refused: that backend is down, try the next one; after connecting, an error ends the client too.
      if (!connected) this.accept(client, i + 1);
      else client.destroy();
    });
    up.once('connect', () => {
      connected = true;
      this.track(up);
      client.pipe(up);
      up.pipe(client);
      client.resume();
      client.on('error', () => up.destroy());
      up.on('close', () => client.destroy());
      client.on('close', () => up.destroy());
    });
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }

  /** Cuts every connection it carries now (a Wi-Fi drop) and keeps accepting new ones. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
