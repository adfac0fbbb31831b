/**
 * The token form of the bridge pages (console and fleet) and the agent page, defined once here: the pages'
 * HTML holds only the empty `#token-panel` section, filled by wireTokenForm() with the page's help text.
 * Shown with why, focused, emptied.
 */
import { byId, h } from '../dom.js';

type HelpText = (string | Node)[];
const strong = (t: string): Node => h('strong', { text: t });

/** What each page says above the field (the agent page replaces it when its API asks for a token). */
export const TOKEN_HELP: Record<'console' | 'fleet', () => HelpText> = {
  console: () => [
    'This console is on the cloud bridge. Enter a ',
    strong('viewer'),
    ' token to watch, or the ',
    strong('admin'),
    ' token to also send frames. It is kept for this browser tab only.',
  ],
  fleet: () => [
    "This is the cloud bridge's fleet. Enter a ",
    strong('viewer'),
    ' token to watch, or the ',
    strong('admin'),
    ' token to also manage dongles, groups and tokens. It is kept for this browser tab only.',
  ],
};

/** Fills the page's `#token-panel` section with the title, help, field and error line. */
function buildTokenPanel(help: HelpText): void {
  byId('token-panel').replaceChildren(
    h('h1', { id: 'token-title', text: 'Access token' }),
    h('p', { id: 'token-help' }, ...help),
    h(
      'form',
      { id: 'token-form', autocomplete: 'off' },
      h('label', { for: 'token-input', text: 'Token' }),
      h(
        'div',
        { class: 'row' },
        h('input', { id: 'token-input', name: 'token', type: 'password', spellcheck: 'false', required: true, autocomplete: 'off' }),
        h('button', { type: 'submit', class: 'primary', text: 'Connect' }),
        // Shown when a token in use still works for what the page shows (a read token asked to record):
        // back to the page with it, not locked until a better token is found.
        h('button', { id: 'token-cancel', type: 'button', class: 'ghost', text: 'Keep the current token', hidden: true }),
      ),
      h('p', { id: 'token-error', class: 'error', role: 'alert', hidden: true }),
    ),
  );
}

export function showTokenPanel(error: string, detail = '', invalid = false, cancellable = false): void {
  const panel = byId('token-panel');
  panel.hidden = false;
  byId('token-cancel').hidden = !cancellable;
  document.body.classList.add('locked');
  const err = byId('token-error');
  err.replaceChildren(h('strong', { text: error }), ...(detail ? [h('span', { class: 'detail', text: detail })] : []));
  err.hidden = error === '';
  const input = byId<HTMLInputElement>('token-input');
  input.value = '';
  input.setAttribute('aria-invalid', String(invalid));
  input.focus();
}

/** Where a bridge page keeps its token: this tab only (the console and fleet pages share it). */
export const TOKEN_KEY = 'canrelay.token';

/**
 * Builds the panel with `help`; the form's submit gives a token to `accept`; "Change token" forgets the
 * kept one, calls `forget`, asks again.
 */
export function wireTokenForm(help: HelpText, accept: (token: string) => void, forget: () => void): void {
  buildTokenPanel(help);
  byId<HTMLFormElement>('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = byId<HTMLInputElement>('token-input').value.trim();
    if (v !== '') accept(v);
  });
  byId('token-cancel').addEventListener('click', () => {
    byId('token-panel').hidden = true;
    document.body.classList.remove('locked');
  });
  byId('token-change').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    forget();
    showTokenPanel('');
  });
}

/** A token was given: kept for the tab, the form hidden. */
export function keepToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  byId('token-panel').hidden = true;
  document.body.classList.remove('locked');
}
