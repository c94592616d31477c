// Queries: propose one in a SQL editor beside the accepted datasets' schemas, with the room's own
// checks run as you type (the API runs the same document model and SQL guard the room runs); each
// query's approval per owner; vote; the party's consent for a query.

import { get, post, segment } from "../api.js";
import { clearErrors, consentSwitch, field, formError, h, input, onSubmit, pill, replace, showErrors, table } from "../dom.js";
import { announce, state } from "../state.js";

const list = (answer) => (Array.isArray(answer) ? answer : answer.value || []);
const CHECK_DELAY_MS = 250;

export async function queriesView(body, context) {
  if (!state.collaboration) {
    replace(body, h("p", { class: "empty" }, "Pick a collaboration first (Collaborations)."));
    return;
  }
  const base = `/collaborations/${segment(state.collaboration)}`;
  const [queries, datasets] = await Promise.all([get(`${base}/queries`), get(`${base}/datasets`)]);
  if (!context.isCurrent()) return;
  const all = list(queries);
  replace(
    body,
    all.length
      ? table(
          `Queries of ${state.collaboration}`,
          ["Query", "State", "Approval by owner", "Why"],
          all.map((query) => [
            query.id,
            pill(query.state),
            h("ul", { class: "checks" }, (query.owners || []).map((owner) => h("li", {}, `${owner.name}: `, pill(owner.ballot)))),
            query.approval || "",
          ]),
        )
      : h("p", { class: "empty" }, "No query yet."),
    all.map((query) => queryCard(base, query, context)),
    proposeForm(base, list(datasets), context),
  );
}

function queryCard(base, query, context) {
  const document = query.query || {};
  const mine = state.me && (query.owners || []).find((owner) => owner.name === state.me.name);
  const voteError = h("p", { class: "field-error", hidden: true });
  const vote = (ballot) => async () => {
    voteError.hidden = true;
    try {
      const answer = await post(`${base}/queries/${segment(query.id)}/vote`, { ballot });
      announce(`voted ${ballot} on ${query.id}: ${answer.proposalState}`);
      context.rerender();
    } catch (error) {
      voteError.textContent = error.message;
      voteError.hidden = false;
    }
  };
  return h(
    "details",
    { class: "card" },
    h("summary", {}, `${query.id}: SQL, inputs and your vote`),
    h("p", {}, "Inputs: ", (document.inputDatasets || []).map((input) => `${input.datasetName} as ${input.viewName}`).join(", ")),
    (document.segments || []).map((segmentDocument) => h("pre", { class: "plain-words" }, segmentDocument.sql)),
    h("p", {}, "Output: ", document.outputDataset ? document.outputDataset.datasinkName : ""),
    mine
      ? h(
          "div",
          { class: "row" },
          h("span", {}, "Your ballot: ", pill(mine.ballot)),
          h("button", { type: "button", "aria-label": `Accept ${query.id}`, onclick: vote("accept") }, "Accept"),
          h("button", { type: "button", class: "secondary", "aria-label": `Reject ${query.id}`, onclick: vote("reject") }, "Reject"),
          query.consent
            ? consentSwitch(`Consent for ${query.id}`, query.consent.status === "enabled", async (wanted) => {
                const answer = await post(`${base}/queries/${segment(query.id)}/consent`, { enabled: wanted });
                return answer.status === "enabled";
              })
            : null,
        )
      : h("p", { class: "hint" }, "You own none of this query's inputs: your vote is not asked."),
    voteError,
  );
}

function schemaPanel(datasets) {
  const accepted = datasets.filter((dataset) => dataset.state === "Accepted");
  if (!accepted.length) return h("p", { class: "empty" }, "No accepted dataset to query yet.");
  return h(
    "section",
    { class: "card", "aria-labelledby": "schemas-heading" },
    h("h2", { id: "schemas-heading" }, "Schemas you may query"),
    accepted.map((dataset) => {
      const document = dataset.dataset || {};
      const allowed = new Set(document.allowedFields || []);
      return table(
        `${dataset.id} (${document.accessMode || "?"}, owner ${dataset.owner})`,
        ["Column", "Type"],
        (document.schema || []).filter((column) => allowed.has(column.name)).map((column) => [column.name, column.type]),
      );
    }),
  );
}

function parseInputs(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [datasetName, viewName] = line.split(/\s+as\s+|\s+/i);
      return { datasetName, viewName: viewName || datasetName };
    });
}

/** Each accepted dataset as a view: its owner's name for an owner's first, its own name for the others. */
function defaultInputs(accepted) {
  const used = new Set();
  return accepted
    .map((dataset) => {
      const view = used.has(dataset.owner) ? String(dataset.id).replace(/\W+/g, "_") : dataset.owner;
      used.add(view);
      return `${dataset.id} as ${view}`;
    })
    .join("\n");
}

function proposeForm(base, datasets, context) {
  const accepted = datasets.filter((dataset) => dataset.state === "Accepted");
  const checks = h("ul", { class: "checks", id: "guard-checks", "aria-live": "polite" });
  const editor = h("textarea", { name: "document.segments", rows: "6", spellcheck: "false", "aria-describedby": "guard-checks" });
  const form = h(
    "form",
    { "aria-labelledby": "propose-heading", class: "card" },
    h("h2", { id: "propose-heading" }, "Propose a query"),
    schemaPanel(datasets),
    field("Query id", input("id", { autocomplete: "off" })),
    field(
      "Input datasets",
      h("textarea", { name: "document.inputDatasets", rows: "2", spellcheck: "false" }, defaultInputs(accepted)),
      "one per line: dataset as view",
    ),
    field("SQL", editor, "one SELECT over the views above; the room's checks run as you type"),
    h("h3", { id: "checks-heading" }, "The room's checks"),
    checks,
    field("Output datasink", input("document.outputDataset", { autocomplete: "off" })),
    formError(),
    h("button", { type: "submit" }, "Propose and vote for it"),
  );
  // the field helper points the editor at its own lines; keep the checks in its description too
  editor.setAttribute("aria-describedby", `${editor.getAttribute("aria-describedby")} guard-checks`);
  const documentOf = () => ({
    inputDatasets: parseInputs(form.elements["document.inputDatasets"].value),
    segments: [{ executionSequence: 1, sql: form.elements["document.segments"].value }],
    outputDataset: { datasinkName: form.elements["document.outputDataset"].value.trim() },
  });
  let timer = null;
  let latest = 0;
  const check = async () => {
    const mine = ++latest;
    if (!form.elements["document.segments"].value.trim()) {
      replace(checks);
      return;
    }
    try {
      const answer = await post(`${base}/queries:check`, { document: documentOf() });
      if (mine !== latest) return;
      const inDocument = (name) => (!name ? null : String(name).startsWith("document") ? String(name) : `document.${name}`);
      const errors = (answer.errors || []).map((error) => ({ ...error, field: inDocument(error.field) }));
      // the datasink is filled last: while it is empty, its complaint is noise
      const shown = form.elements["document.outputDataset"].value.trim() ? errors : errors.filter((error) => !String(error.field || "").startsWith("document.outputDataset"));
      replace(checks, answer.ok || !shown.length ? h("li", { class: "ok" }, "the room's checks pass") : shown.map((error) => h("li", { class: "problem" }, error.field ? `${error.field.replace(/^document\./, "")}: ${error.message}` : error.message)));
      if (shown.length) showErrors(form, { errors: shown }, { moveFocus: false });
      else clearErrors(form);
    } catch (error) {
      if (mine === latest) replace(checks, h("li", { class: "problem" }, error.message));
    }
  };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, CHECK_DELAY_MS);
  });
  return onSubmit(form, async () => {
    const id = form.elements.id.value.trim();
    const answer = await post(`${base}/queries`, { id, document: documentOf(), vote: true });
    announce(`query ${id} proposed: ${answer.proposalState}`);
    context.rerender();
  });
}
