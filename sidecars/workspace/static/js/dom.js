// Small DOM helpers. Every piece of data goes into the page as text (textContent, attribute values),
// never as markup: a dataset name or an audit reason written by another party is hostile input.

/** Build an element: h("button", {type: "button", onclick: f}, "Vote"). Children: nodes or strings. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

let uniqueCounter = 0;
/** An id no other element on the page has (labels and error lines point at controls by id). */
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/**
 * A labelled control with a one-line error slot under it. `control` is an input, select or textarea;
 * the label points at it, and the error line is announced through aria-describedby.
 */
export function field(labelText, control, hint) {
  const id = control.id || uniqueId("field");
  control.id = id;
  if (!control.name) control.name = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [`${id}-error`];
  let hintNode = null;
  if (hint) {
    hintNode = h("p", { class: "hint", id: `${id}-hint` }, hint);
    described.push(`${id}-hint`);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field", dataset: { field: control.name } }, h("label", { for: id }, labelText), control, hintNode, error);
}

/**
 * The field holder for an API error's field: the exact name, else the nearest enclosing one
 * ("document.schema.0.name" lands on "document.schema" when the form has no control for the column).
 */
function holderFor(form, name) {
  if (!name) return null;
  const parts = String(name).replace(/\[(\d+)\]/g, ".$1").split(".");
  while (parts.length) {
    const holder = form.querySelector(`[data-field="${CSS.escape(parts.join("."))}"]`);
    if (holder) return holder;
    parts.pop();
  }
  return null;
}

/** Show one line next to the field named `name` inside `form` (or on the form's general error line). */
export function showFieldError(form, name, message) {
  const holder = holderFor(form, name);
  const line = holder ? holder.querySelector(".field-error") : form.querySelector(".form-error");
  if (!line) return;
  const oneLine = String(message).split("\n")[0];
  line.textContent = line.hidden ? oneLine : `${line.textContent}; ${oneLine}`;
  line.hidden = false;
  const control = holder && holder.querySelector("input, select, textarea");
  if (control) control.setAttribute("aria-invalid", "true");
}

/** Remove the error lines a previous submit left. */
export function clearErrors(form) {
  for (const line of form.querySelectorAll(".field-error, .form-error")) {
    line.textContent = "";
    line.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** Show an API error on a form: each field's line next to its field, the rest on the form's line. */
export function showErrors(form, error, { moveFocus = true } = {}) {
  clearErrors(form);
  const problems = error.errors && error.errors.length ? error.errors : [{ field: null, message: error.message }];
  for (const problem of problems) {
    const placed = holderFor(form, problem.field);
    showFieldError(form, placed ? problem.field : "", problem.field && !placed ? `${problem.field}: ${problem.message}` : problem.message);
  }
  if (!moveFocus) return;
  const first = form.querySelector("[aria-invalid]") || form.querySelector(".form-error:not([hidden])");
  if (first && first.focus) first.focus();
}

/** The form's general error line (for problems not tied to one field). */
export function formError() {
  return h("p", { class: "form-error", role: "alert", hidden: true, tabindex: "-1" });
}

/** A short status pill: pending / accepted / rejected / running / succeeded / refused ... */
export function pill(state) {
  const text = String(state ?? "unknown");
  return h("span", { class: `pill pill-${text.toLowerCase().replace(/[^a-z]/g, "")}` }, text);
}

/** A table from rows of plain values; the caption names it for screen readers. */
export function table(caption, headers, rows) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((header) => h("th", { scope: "col" }, header)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))),
  );
}

/** A time for people: the local date and time of an ISO stamp or epoch seconds, or the raw text. */
export function when(stamp) {
  if (stamp === undefined || stamp === null || stamp === "") return "";
  const date = typeof stamp === "number" ? new Date(stamp < 1e12 ? stamp * 1000 : stamp) : new Date(stamp);
  return Number.isNaN(date.getTime()) ? String(stamp) : date.toLocaleString();
}

/**
 * A consent switch: a button with role "switch" (Enter and Space toggle it, as any button), its
 * accessible name the visible label. `onToggle(wanted)` does the work; the switch shows the answer.
 */
export function consentSwitch(labelText, enabled, onToggle) {
  const errorLine = h("p", { class: "field-error", hidden: true, id: uniqueId("switch-error") });
  const button = h("button", { type: "button", role: "switch", "aria-checked": String(Boolean(enabled)), "aria-describedby": errorLine.id }, enabled ? "enabled" : "disabled");
  const labelId = uniqueId("switch-label");
  button.setAttribute("aria-labelledby", `${labelId}`);
  button.addEventListener("click", async () => {
    const wanted = button.getAttribute("aria-checked") !== "true";
    button.disabled = true;
    errorLine.hidden = true;
    try {
      const now = await onToggle(wanted);
      const on = now === undefined ? wanted : Boolean(now);
      button.setAttribute("aria-checked", String(on));
      button.textContent = on ? "enabled" : "disabled";
    } catch (error) {
      errorLine.textContent = error.message;
      errorLine.hidden = false;
    } finally {
      button.disabled = false;
      button.focus();
    }
  });
  return h("div", { class: "switch" }, h("span", { id: labelId }, labelText), button, errorLine);
}

/**
 * Wire a form: on submit, clear old errors, run `action(form)`, and show an ApiError's lines next to
 * the fields they name. The submit button is disabled while the action runs.
 */
export function onSubmit(form, action) {
  form.noValidate = true;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const submit = form.querySelector("button[type=submit]");
    if (submit) submit.disabled = true;
    try {
      await action(form);
    } catch (error) {
      showErrors(form, error);
    } finally {
      if (submit) submit.disabled = false;
    }
  });
  return form;
}

/** A labelled input (text by default). */
export function input(name, attributes = {}) {
  return h("input", { type: "text", name, ...attributes });
}
