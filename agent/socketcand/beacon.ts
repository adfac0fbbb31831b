/**
 * The socketcand discovery beacon (--socketcand-beacon): every 3 s a UDP broadcast to port 42000 of each
 * IPv4 network the server listens on, in socketcand's CANBeacon XML, which python-can's detect_beacon and
 * Kayak read:
 *   <CANBeacon name="gw-17" type="SocketCAN" description="canrelay agent gw-17"><URL>can://192.168.1.20:29536</URL><Bus name="can0"/></CANBeacon>
 * A send that fails (network down) is logged once per failure streak; the beacon never stops the agent.
 */
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';

export const BEACON_PORT = 42000;
export const BEACON_INTERVAL_MS = 3000;

export interface BeaconTarget {
  /** The address put in the beacon's URL. */
  address: string;
  /** Where the beacon is sent: the network's broadcast address. */
  broadcast: string;
}

/** The IPv4 networks a listener on `host` is reachable on: all of them for 0.0.0.0, else the one holding that address. */
export function beaconTargets(host: string): BeaconTarget[] {
  const out: BeaconTarget[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family !== 'IPv4') continue;
      if (host === '0.0.0.0' || host === '::' ? a.internal : a.address !== host) continue;
      const ip = a.address.split('.').map(Number);
      const mask = a.netmask.split('.').map(Number);
      out.push({ address: a.address, broadcast: ip.map((b, i) => (b | (~mask[i]! & 255)) >>> 0).join('.') });
    }
  }
  return out;
}

function xmlAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function beaconXml(name: string, address: string, port: number, buses: string[]): string {
  const bus = buses.map((b) => `<Bus name="${xmlAttr(b)}"/>`).join('');
  return `<CANBeacon name="${xmlAttr(name)}" type="SocketCAN" description="canrelay agent ${xmlAttr(name)}"><URL>can://${address}:${port}</URL>${bus}</CANBeacon>`;
}

export class Beacon {
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(
    private readonly opts: {
      name: string;
      host: string;
      port: number;
      buses: () => string[];
      log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
    },
  ) {}

  start(): void {
    const targets = beaconTargets(this.opts.host);
    if (targets.length === 0) {
      this.opts.log('warn', `socketcand beacon off: no IPv4 network holds the listen address ${this.opts.host}`, {});
      return;
    }
    const socket = createSocket('udp4');
    this.socket = socket;
    socket.on('error', (err) => this.failed(err));
    socket.bind(0, () => {
      socket.setBroadcast(true);
      this.send(targets);
      this.timer = setInterval(() => this.send(targets), BEACON_INTERVAL_MS);
      this.timer.unref();
    });
    this.opts.log('info', 'socketcand beacon on', { targets: targets.map((t) => `${t.broadcast}:${BEACON_PORT}`) });
  }

  stop(): void {
    clearInterval(this.timer);
    this.socket?.close();
    this.socket = undefined;
  }

  private send(targets: BeaconTarget[]): void {
    for (const t of targets) {
      const msg = Buffer.from(beaconXml(this.opts.name, t.address, this.opts.port, this.opts.buses()));
      this.socket?.send(msg, BEACON_PORT, t.broadcast, (err) => {
        if (err) this.failed(err);
        else this.failing = false;
      });
    }
  }

  private failed(err: Error): void {
    if (this.failing) return;
    this.failing = true;
    this.opts.log('warn', `socketcand beacon could not be sent: ${err.message}`, {});
  }
}
