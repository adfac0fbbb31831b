/** The bridge's cluster flags (`--cluster`, `--node-id`), as data for cloud-bridge/options.ts, and their cross-checks. */
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../../core/cli/options.js';

/** Node ids name NATS subjects (hex-encoded) and /metrics labels: a short plain name. */
const NODE_ID_RULE = /^[A-Za-z0-9._-]{1,64}$/;

export const CLUSTER_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'cluster',
    arg: '<nats://host:4222[,…]>',
    description: 'cluster mode: NATS servers (JetStream on) for node-to-node traffic and dongle ownership; needs --node-id',
    parse: (raw: unknown): string => {
      const s = String(raw);
      for (const u of s.split(',')) {
        let url: URL;
        try {
          url = new URL(u.trim());
        } catch {
          throw new OptionError(`--cluster: ${JSON.stringify(u.slice(0, 80))} is not a URL; give nats://host:4222[,nats://host2:4222…]`);
        }
        if (url.protocol !== 'nats:' && url.protocol !== 'tls:') throw new OptionError(`--cluster: ${JSON.stringify(u.slice(0, 80))} must be a nats:// (or tls://) URL`);
      }
      return s;
    },
  },
  { name: 'node-id', arg: '<name>', description: 'this node\'s name in the cluster (unique; labels its /metrics)', parse: parse.string(NODE_ID_RULE, 'must be 1-64 letters, digits, ".", "_" or "-"') },
];

export interface ClusterConfig {
  servers: string[];
  nodeId: string;
}

/** undefined without --cluster; throws OptionError when one of the two flags is given without the other. */
export function clusterConfigFrom(o: ResolvedOptions): ClusterConfig | undefined {
  const cluster = o['cluster'] as string | undefined;
  const node = o['node-id'] as string | undefined;
  if (cluster === undefined && node === undefined) return undefined;
  if (cluster === undefined) throw new OptionError('--node-id is for cluster mode: give --cluster nats://host:4222 too');
  if (node === undefined) throw new OptionError('--cluster needs --node-id <name>, unique per node (e.g. the host name)');
  return { servers: cluster.split(',').map((u) => u.trim()), nodeId: node };
}
