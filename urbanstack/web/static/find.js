// Finding an entity by name: the keyboard's way to what the map shows on a canvas.

import { t } from './i18n.js';

const MAX_RESULTS = 8;

/** Lower case without diacritics ("Đông Ba" → "dong ba"), for matching typed text. */
export function fold(text) {
  return text
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/đ/g, 'd')
    .replace(/Đ/g, 'D')
    .toLowerCase();
}

/** Wire the search box: `records()` gives id → record (with `name`), `onSelect(id)`. */
export function setupFind(input, list, records, onSelect) {
  const render = () => {
    const query = fold(input.value.trim());
    if (!query) {
      list.replaceChildren();
      return;
    }
    const found = [];
    for (const record of records().values()) {
      if (fold(record.name).includes(query) || record.entity.id.toLowerCase().includes(query)) {
        found.push(record);
        if (found.length === MAX_RESULTS) break;
      }
    }
    if (!found.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = t('find.none');
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(
      ...found.map((record) => {
        const li = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        const swatch = document.createElement('span');
        swatch.className = 'swatch';
        swatch.style.setProperty('--swatch', record.assessment.color);
        const name = document.createElement('span');
        name.textContent = record.name;
        const type = document.createElement('span');
        type.className = 'muted';
        type.textContent = t(`type.${record.entity.type}`);
        button.append(swatch, name, type);
        button.addEventListener('click', () => onSelect(record.entity.id));
        li.append(button);
        return li;
      }),
    );
  };
  input.addEventListener('input', render);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') list.querySelector('button')?.click();
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      list.querySelector('button')?.focus();
    }
  });
  list.addEventListener('keydown', (event) => {
    const buttons = [...list.querySelectorAll('button')];
    const at = buttons.indexOf(document.activeElement);
    if (event.key === 'ArrowDown' && at < buttons.length - 1) buttons[at + 1].focus();
    else if (event.key === 'ArrowUp') (at > 0 ? buttons[at - 1] : input).focus();
    else return;
    event.preventDefault();
  });
  return render;
}
