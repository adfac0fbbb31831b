/** The token form of the bridge pages (console and fleet) and the agent page: shown with why, focused, emptied. */
import { byId, h } from '../dom.js';

export function showTokenPanel(error: string, detail = '', invalid = false): void {
  const panel = byId('token-panel');
  panel.hidden = false;
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

/** The form's submit gives a token to `accept`; "Change token" forgets the kept one, calls `forget`, asks again. */
export function wireTokenForm(accept: (token: string) => void, forget: () => void): void {
  byId<HTMLFormElement>('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = byId<HTMLInputElement>('token-input').value.trim();
    if (v !== '') accept(v);
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
