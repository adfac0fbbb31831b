/** The bridge's cluster flags (`--cluster`, `--cluster-password`, `--node-id`), as data for cloud-bridge/options.ts, and their cross-checks. */
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../../core/cli/options.js';
import { ID_RULE, ID_RULE_TEXT } from '../../core/names.js';

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
  {
    name: 'cluster-password',
    arg: '<password>',
    description: 'password of the NATS user named in the --cluster URL (nats://user@host:4222); prefer CANRELAY_NATS_PASSWORD',
    parse: parse.string(/^.{1,1024}$/, 'must be 1-1024 characters'),
    env: ['CANRELAY_NATS_PASSWORD'],
    secret: true,
  },
  {
    name: 'node-id',
    arg: '<name>',
    description: "this node's name in the cluster (unique; labels its /metrics)",
    // Node ids name NATS subjects (hex-encoded) and /metrics labels: the id rule of dongles and groups.
    parse: parse.string(ID_RULE, `must be ${ID_RULE_TEXT}`),
  },
];

export interface ClusterConfig {
  /** Without credentials (nats.js takes them from options, not from the URL). */
  servers: string[];
  nodeId: string;
  /** NATS user/password authentication: the user from the URLs' user part, the password from --cluster-password or the URL. */
  auth?: { user: string; pass: string };
}

/** undefined without --cluster; throws OptionError when one of the two flags is given without the other. */
export function clusterConfigFrom(o: ResolvedOptions): ClusterConfig | undefined {
  const cluster = o.cluster as string | undefined;
  const node = o['node-id'] as string | undefined;
  if (cluster === undefined && node === undefined) return undefined;
  if (cluster === undefined) throw new OptionError('--node-id is for cluster mode: give --cluster nats://host:4222 too');
  if (node === undefined) throw new OptionError('--cluster needs --node-id <name>, unique per node (e.g. the host name)');
  const urls = cluster.split(',').map((u) => new URL(u.trim()));
  const users = new Set(urls.map((u) => decodeURIComponent(u.username)));
  if (users.size > 1) throw new OptionError('--cluster: give the same NATS user in every URL (or in none)');
  const user = [...users][0] ?? '';
  const inUrl = urls.map((u) => decodeURIComponent(u.password)).find((p) => p !== '');
  const pass = (o['cluster-password'] as string | undefined) ?? inUrl;
  if (pass !== undefined && user === '') throw new OptionError('--cluster-password needs the NATS user in the --cluster URL: nats://<user>@host:4222');
  if (user !== '' && pass === undefined) throw new OptionError(`--cluster names the NATS user "${user}": give its password in CANRELAY_NATS_PASSWORD (or --cluster-password)`);
  const servers = urls.map((u) => `${u.protocol}//${u.host}`);
  return { servers, nodeId: node, ...(user !== '' ? { auth: { user, pass: pass! } } : {}) };
}
