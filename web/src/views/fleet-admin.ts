/**
 * The fleet page's management, shown only for the admin token: register a dongle (its token shown once,
 * with a copy button), rotate or remove a dongle, create/edit/delete a group, issue and revoke viewer
 * tokens — all through the bridge's admin API. Destructive steps ask first; a failure shows the API's
 * error text. The fleet stream then shows the result (no separate reload).
 */
import { deleteDongle, deleteGroup, HttpError, issueViewerToken, listGroups, listViewerTokens, putGroup, registerDongle, revokeViewerToken, rotateDongleToken } from '../api.js';
import { byId, h } from '../dom.js';
import type { GroupStateData } from '../events.js';
import type { DongleRow } from '../state/fleet.js';
import type { RowActions } from './fleet-tables.js';

/** "can0=can1, can1=can0" → {can0: "can1", can1: "can0"}; empty → undefined (the bridge's default map). */
export function parseBusMap(text: string): Record<string, string> | undefined {
  const pairs = text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (pairs.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const p of pairs) {
    const m = /^([^=\s]+)\s*=\s*([^=\s]+)$/.exec(p);
    if (!m) throw new Error(`bus map: "${p}" is not a=b`);
    map[m[1]!] = m[2]!;
  }
  return map;
}

/** {can0: "can1"} → "can0=can1" (the form's syntax, parseBusMap's inverse). */
export function formatBusMap(map: Record<string, string>): string {
  return Object.entries(map)
    .map(([a, b]) => `${a}=${b}`)
    .join(', ');
}

export class FleetAdmin implements RowActions {
  private readonly error = byId('admin-error');

  constructor(
    private readonly token: () => string,
    /** Asks before a destructive step (window.confirm; replaceable in tests). */
    private readonly confirm: (question: string) => boolean = (q) => window.confirm(q),
  ) {
    byId<HTMLFormElement>('register-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const id = byId<HTMLInputElement>('register-id').value.trim();
      void this.run(async () => {
        const r = await registerDongle(id, this.token());
        if (r.token === undefined) throw new Error(`dongle "${id}" is already registered (use Rotate for a new token)`);
        this.showSecret(`Agent token for ${id}:`, r.token);
        byId<HTMLInputElement>('register-id').value = '';
      });
    });
    byId<HTMLFormElement>('group-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = (id: string) => byId<HTMLInputElement>(id).value.trim();
      void this.run(async () => {
        await putGroup(v('group-id'), { a: v('group-a'), b: v('group-b') }, parseBusMap(v('group-map')), this.token());
      });
    });
    byId('viewer-issue').addEventListener(
      'click',
      () =>
        void this.run(async () => {
          const r = await issueViewerToken(this.token());
          this.showSecret(`Viewer token ${r.id}:`, r.token);
          await this.listViewers();
        }),
    );
    byId('viewer-refresh').addEventListener('click', () => void this.run(() => this.listViewers()));
    byId('secret-copy').addEventListener('click', () => void this.copySecret());
    byId('secret-close').addEventListener('click', () => this.hideSecret());
  }

  dongle(r: DongleRow): Node[] {
    return [
      h('button', {
        type: 'button',
        class: 'small',
        'data-action': 'rotate',
        text: 'Rotate token',
        onclick: () => {
          if (!this.confirm(`Rotate the token of ${r.id}? Its agent is disconnected and needs the new token.`)) return;
          void this.run(async () => this.showSecret(`New agent token for ${r.id}:`, (await rotateDongleToken(r.id, this.token())).token));
        },
      }),
      h('button', {
        type: 'button',
        class: 'small danger',
        'data-action': 'remove',
        text: 'Remove',
        onclick: () => {
          if (!this.confirm(`Remove dongle ${r.id}? Its token stops working${r.group ? ` and group ${r.group} ends` : ''}.`)) return;
          void this.run(() => deleteDongle(r.id, this.token()));
        },
      }),
    ];
  }

  group(g: GroupStateData): Node[] {
    return [
      h('button', {
        type: 'button',
        class: 'small',
        'data-action': 'edit',
        text: 'Edit',
        onclick: () => {
          byId<HTMLInputElement>('group-id').value = g.group;
          byId<HTMLInputElement>('group-a').value = g.sides.a.dongle;
          byId<HTMLInputElement>('group-b').value = g.sides.b.dongle;
          const map = byId<HTMLInputElement>('group-map');
          map.value = '';
          map.focus();
          // The bus map is not in group_state: fetched, so that saving an edit keeps it unless changed.
          void this.run(async () => {
            const cfg = (await listGroups(this.token())).groups.find((x) => x.group === g.group);
            if (cfg && byId<HTMLInputElement>('group-id').value === g.group) map.value = formatBusMap(cfg.bus_map);
          });
        },
      }),
      h('button', {
        type: 'button',
        class: 'small danger',
        'data-action': 'delete',
        text: 'Delete',
        onclick: () => {
          if (!this.confirm(`Delete group ${g.group}? Relaying between ${g.sides.a.dongle} and ${g.sides.b.dongle} stops.`)) return;
          void this.run(() => deleteGroup(g.group, this.token()));
        },
      }),
    ];
  }

  private async listViewers(): Promise<void> {
    const { viewer_tokens } = await listViewerTokens(this.token());
    byId<HTMLTableElement>('viewer-tokens').tBodies[0]!.replaceChildren(
      ...viewer_tokens.map((t) =>
        h(
          'tr',
          { 'data-viewer-token': t.id },
          h('td', {}, h('code', { text: t.id })),
          h('td', { class: 'muted', text: t.expired ? 'expired' : t.expires_at ? `until ${t.expires_at}` : 'no expiry' }),
          h('td', { class: 'muted', text: `${t.open_streams} open` }),
          h(
            'td',
            {},
            h('button', {
              type: 'button',
              class: 'small danger',
              text: 'Revoke',
              onclick: () => {
                if (!this.confirm(`Revoke viewer token ${t.id}? Its open consoles close now.`)) return;
                void this.run(async () => {
                  await revokeViewerToken(t.id, this.token());
                  await this.listViewers();
                });
              },
            }),
          ),
        ),
      ),
    );
  }

  /**
   * Copy: the Clipboard API where the page may use it (HTTPS or localhost); elsewhere (plain HTTP) the
   * token is selected and the browser's copy command tried on it, and the button says what happened.
   */
  private async copySecret(): Promise<void> {
    const el = byId('secret-token');
    const btn = byId('secret-copy');
    try {
      if (!navigator.clipboard) throw new Error('no Clipboard API here');
      await navigator.clipboard.writeText(el.textContent ?? '');
      btn.textContent = 'Copied';
      return;
    } catch {
      /* not allowed or not available: select it instead */
    }
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
    btn.textContent = copied ? 'Copied' : 'Selected: press Ctrl+C';
  }

  private showSecret(what: string, token: string): void {
    byId('secret-what').textContent = what;
    byId('secret-token').textContent = token;
    byId('secret-copy').textContent = 'Copy';
    byId('secret').hidden = false;
  }

  /** The token is shown once: hiding it forgets it. */
  private hideSecret(): void {
    byId('secret-token').textContent = '';
    byId('secret').hidden = true;
  }

  private async run(f: () => Promise<unknown>): Promise<void> {
    this.error.hidden = true;
    try {
      await f();
    } catch (e) {
      this.error.textContent = e instanceof HttpError ? `HTTP ${e.status}: ${e.message}` : (e as Error).message;
      this.error.hidden = false;
    }
  }
}
