/**
 * One todo list: a region with a heading, a "New todo" form and the todos as list items. The list is
 * a watch on its table, so it shows every write, whether it came from this tab, another device or
 * the server. Rows with changes the server has not acknowledged yet carry a "not synced" mark
 * (sync.watchUnsynced). Items are updated in place (keyed by ps_global_id) so a re-render never steals the
 * focus or the text of a todo being edited.
 */
import type { PocketSync, Row } from 'pocketsync';

interface Todo extends Row {
  ps_global_id: string;
  title: string;
  done: number;
  author: string | null;
}

export interface TodoListOptions {
  /** The region's element; its heading (the region's name) is built here. */
  readonly section: HTMLElement;
  readonly name: string;
  readonly description: string;
  readonly table: 'todos' | 'shared_todos';
  readonly pocketSync: PocketSync;
  /** Stored with each new todo of a shared list, so its readers know who wrote it. */
  readonly author: string | null;
  readonly onError: (error: unknown) => void;
}

export function mountTodoList(options: TodoListOptions): void {
  const { section, table, pocketSync, onError } = options;
  const key = section.id;
  const heading = Object.assign(document.createElement('h2'), { id: `${key}-heading`, textContent: options.name });
  const description = Object.assign(document.createElement('p'), { className: 'hint', textContent: options.description });
  const form = document.createElement('form');
  const input = Object.assign(document.createElement('input'), { id: `${key}-new`, name: 'title', autocomplete: 'off', required: true, placeholder: `New ${options.name.toLowerCase()} todo…` });
  const label = Object.assign(document.createElement('label'), { htmlFor: input.id, textContent: 'New todo' });
  const add = Object.assign(document.createElement('button'), { type: 'submit', textContent: 'Add' });
  form.append(label, input, add);
  const list = document.createElement('ul');
  const empty = Object.assign(document.createElement('p'), { className: 'hint', textContent: 'Nothing here yet.' });
  section.setAttribute('aria-labelledby', heading.id);
  section.replaceChildren(heading, description, form, list, empty);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const title = input.value.trim();
    if (!title) return;
    input.value = '';
    const values: Row = { title, created_at: new Date().toISOString() };
    if (table === 'shared_todos' && options.author) values.author = options.author;
    pocketSync.database.insert(table, values).catch(onError);
  });

  const items = new Map<string, TodoItem>();
  let unsynced: ReadonlySet<string> = new Set();
  if (pocketSync.sync.enabled) {
    pocketSync.sync.watchUnsynced(table, (ids) => {
      unsynced = ids;
      for (const [id, item] of items) item.markUnsynced(ids.has(id));
    });
  }
  const authorColumn = table === 'shared_todos' ? 'author' : 'NULL AS author';
  pocketSync.database.watch<Todo>(`SELECT ps_global_id, title, done, ${authorColumn} FROM ${table} ORDER BY created_at, ps_global_id`, [], (todos) => {
    const seen = new Set<string>();
    const ordered = todos.map((todo) => {
      seen.add(todo.ps_global_id);
      let item = items.get(todo.ps_global_id);
      if (!item) {
        item = new TodoItem(todo.ps_global_id, table, pocketSync, onError);
        items.set(todo.ps_global_id, item);
      }
      item.show(todo);
      item.markUnsynced(unsynced.has(todo.ps_global_id));
      return item.element;
    });
    for (const [id, item] of items) {
      if (!seen.has(id)) {
        item.element.remove();
        items.delete(id);
      }
    }
    // Move nodes only when the order changed: moving a node takes the focus away from it.
    const current = [...list.children];
    if (current.length !== ordered.length || ordered.some((element, i) => current[i] !== element)) list.replaceChildren(...ordered);
    empty.hidden = todos.length > 0;
  });
}

/** A todo's list item: a checkbox labelled by its text, and buttons to edit and delete it. */
class TodoItem {
  readonly element = document.createElement('li');
  readonly #checkbox: HTMLInputElement;
  readonly #label: HTMLLabelElement;
  readonly #author = Object.assign(document.createElement('span'), { className: 'author' });
  readonly #unsynced = Object.assign(document.createElement('span'), { className: 'unsynced', textContent: 'not synced', hidden: true });
  readonly #edit = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Edit' });
  readonly #remove = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Delete' });
  #editor: HTMLInputElement | null = null;
  #title = '';

  constructor(
    readonly id: string,
    readonly table: string,
    readonly pocketSync: PocketSync,
    readonly onError: (error: unknown) => void,
  ) {
    const inputId = `${table}-${id}`;
    this.#checkbox = Object.assign(document.createElement('input'), { type: 'checkbox', id: inputId });
    this.#label = Object.assign(document.createElement('label'), { htmlFor: inputId });
    this.element.append(this.#checkbox, this.#label, this.#author, this.#unsynced, this.#edit, this.#remove);
    this.#checkbox.addEventListener('change', () => this.#write({ done: this.#checkbox.checked ? 1 : 0 }));
    this.#remove.addEventListener('click', () => {
      this.pocketSync.database.delete(this.table, { ps_global_id: this.id }).catch(this.onError);
    });
    this.#edit.addEventListener('click', () => this.#startEditing());
  }

  show(todo: Todo): void {
    this.#title = todo.title;
    this.element.classList.toggle('done', todo.done === 1);
    this.#checkbox.checked = todo.done === 1;
    this.#label.textContent = todo.title;
    this.#author.textContent = todo.author ? `by ${todo.author}` : '';
    this.#edit.setAttribute('aria-label', `Edit ${todo.title}`);
    this.#remove.setAttribute('aria-label', `Delete ${todo.title}`);
  }

  /** Shows or hides the "not synced" mark: this device's changes to the row are not acknowledged yet. */
  markUnsynced(unsynced: boolean): void {
    this.#unsynced.hidden = !unsynced;
    this.#unsynced.title = unsynced ? 'Changed on this device; the server has not confirmed it yet' : '';
  }

  #write(values: Row): void {
    this.pocketSync.database.update(this.table, values, { ps_global_id: this.id }).catch(this.onError);
  }

  /** Swaps the label for a text box: Enter or leaving it saves, Escape cancels. */
  #startEditing(): void {
    if (this.#editor) return;
    const editor = Object.assign(document.createElement('input'), { value: this.#title, className: 'editor' });
    editor.setAttribute('aria-label', `Edit ${this.#title}`);
    const finish = (save: boolean): void => {
      if (this.#editor !== editor) return;
      this.#editor = null;
      const title = editor.value.trim();
      editor.replaceWith(this.#label);
      this.#edit.hidden = false;
      if (save && title && title !== this.#title) this.#write({ title });
    };
    editor.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') finish(true);
      else if (event.key === 'Escape') finish(false);
    });
    editor.addEventListener('blur', () => finish(true));
    this.#editor = editor;
    this.#label.replaceWith(editor);
    this.#edit.hidden = true;
    editor.focus();
    editor.select();
  }
}
