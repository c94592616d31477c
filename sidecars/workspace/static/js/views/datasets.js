// Datasets: those of the collaboration (another party's only once accepted), each one's schema,
// allowedFields and owner policy; the owner's consent switch; publish from a folder with a progress bar.

import { get, post, segment } from "../api.js";
import { consentSwitch, field, formError, h, input, onSubmit, pill, replace, table } from "../dom.js";
import { announce, state } from "../state.js";

const list = (answer) => (Array.isArray(answer) ? answer : answer.value || []);
const POLL_MS = 300;

export async function datasetsView(body, context) {
  if (!state.collaboration) {
    replace(body, h("p", { class: "empty" }, "Pick a collaboration first (Collaborations)."));
    return;
  }
  const base = `/collaborations/${segment(state.collaboration)}`;
  const datasets = list(await get(`${base}/datasets`));
  if (!context.isCurrent()) return;
  replace(
    body,
    datasets.length
      ? table(
          `Datasets of ${state.collaboration}`,
          ["Dataset", "Owner", "State", "Format", "Encryption", "Consent"],
          datasets.map((dataset) => {
            const document = dataset.dataset || {};
            return [dataset.id, dataset.owner, pill(dataset.state), document.format || "", document.encryption ? document.encryption.mode : "", consentCell(base, dataset)];
          }),
        )
      : h("p", { class: "empty" }, "No dataset yet."),
    datasets.map((dataset) => details(dataset)),
    publishForm(base, context),
  );
}

function consentCell(base, dataset) {
  const consent = dataset.consent;
  if (!consent) return "";
  if (!dataset.mine) return pill(consent.status);
  return consentSwitch(`Consent for ${dataset.id}`, consent.status === "enabled", async (wanted) => {
    const answer = await post(`${base}/datasets/${segment(dataset.id)}/consent`, { enabled: wanted });
    announce(`consent for ${dataset.id} ${answer.status}`);
    return answer.status === "enabled";
  });
}

function details(dataset) {
  const document = dataset.dataset || {};
  const allowed = new Set(document.allowedFields || []);
  return h(
    "details",
    { class: "card" },
    h("summary", {}, `${dataset.id}: schema and owner policy`),
    table(
      `Schema of ${dataset.id}`,
      ["Column", "Type", "Allowed in queries"],
      (document.schema || []).map((column) => [column.name, column.type, allowed.has(column.name) ? "yes" : "no"]),
    ),
    h(
      "dl",
      {},
      h("dt", {}, "Access mode"),
      h("dd", {}, document.accessMode === "aggregate" ? "aggregate: only grouped results leave the room" : "row: rows of the allowed fields may be read"),
      h("dt", {}, "Aggregation threshold"),
      h("dd", {}, document.aggregationThreshold === undefined ? "not set: the room's default applies" : `groups of fewer than ${document.aggregationThreshold} rows are suppressed`),
      h("dt", {}, "Store"),
      h("dd", {}, `${document.store || ""} / ${document.container || ""}`),
      dataset.consent && dataset.consent.reason ? [h("dt", {}, "Consent"), h("dd", {}, dataset.consent.reason)] : null,
    ),
  );
}

function select(name, options, selected) {
  return h("select", { name }, options.map(([value, text]) => h("option", { value, selected: value === selected }, text)));
}

function parseSchema(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [name, type] = line.split(/[\s:]+/, 2);
      return type ? { name, type } : { name };
    });
}

const splitList = (text) => text.split(/[\s,]+/).map((item) => item.trim()).filter(Boolean);

function publishForm(base, context) {
  const progressLabel = h("label", { for: "publish-progress" }, "Publishing");
  const progress = h("progress", { id: "publish-progress", max: "100", value: "0" });
  const step = h("p", { class: "hint", "aria-live": "polite" });
  const progressBox = h("div", { class: "field", hidden: true }, progressLabel, progress, step);
  const form = h(
    "form",
    { "aria-labelledby": "publish-heading", class: "card" },
    h("h2", { id: "publish-heading" }, "Publish a dataset"),
    field("Dataset name", input("document.name", { autocomplete: "off" })),
    field("Folder with the data", input("data.folder", { autocomplete: "off", placeholder: "/data/northwind-sales" }), "a folder on this machine; its files are encrypted here before they leave it"),
    field("Room spec", input("data.spec", { autocomplete: "off", placeholder: "/path/spec.yaml" }), "the spec whose volume names the store"),
    field("Store (volume name in the spec)", input("document.store", { autocomplete: "off" })),
    field("Container or bucket", input("document.container", { autocomplete: "off" })),
    field("Format", select("document.format", [["csv", "CSV"], ["parquet", "Parquet"]], "csv")),
    field("Encryption mode", select("document.encryption.mode", [["CSE", "CSE: encrypted here, the store sees ciphertext"], ["SSE", "SSE: the store encrypts"], ["CPK", "CPK: Azure Blob, customer-provided key"], ["SSE-C", "SSE-C: S3, customer-provided key"]], "CSE")),
    field("Data key secret (CGS)", input("document.encryption.dekSecret", { autocomplete: "off" })),
    field("Key encryption key name", input("document.encryption.kekName", { autocomplete: "off" })),
    field("Schema", h("textarea", { name: "document.schema", rows: "5", spellcheck: "false" }), "one column per line: name type (string, int, long, double, date …)"),
    field("Allowed fields", input("document.allowedFields", { autocomplete: "off" }), "columns queries may read, separated by commas"),
    field("Access mode", select("document.accessMode", [["aggregate", "aggregate"], ["row", "row"]], "aggregate")),
    field("Aggregation threshold", input("document.aggregationThreshold", { type: "number", min: "1", value: "10", inputmode: "numeric" })),
    formError(),
    h("button", { type: "submit" }, "Encrypt, upload and propose"),
    progressBox,
  );
  return onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim();
    const encryption = { mode: value("document.encryption.mode") };
    if (value("document.encryption.dekSecret")) encryption.dekSecret = value("document.encryption.dekSecret");
    if (value("document.encryption.kekName")) encryption.kekName = value("document.encryption.kekName");
    const threshold = value("document.aggregationThreshold");
    const document = {
      name: value("document.name"),
      owner: state.me ? state.me.name : "",
      store: value("document.store"),
      container: value("document.container"),
      format: value("document.format"),
      schema: parseSchema(form.elements["document.schema"].value),
      allowedFields: splitList(value("document.allowedFields")),
      accessMode: value("document.accessMode"),
      aggregationThreshold: /^\d+$/.test(threshold) ? Number(threshold) : threshold,
      encryption,
    };
    // no spec named: the workspace's own --spec says which datasource receives the files
    const data = value("data.folder") || value("data.spec") ? { folder: value("data.folder"), spec: value("data.spec") || null } : null;
    const answer = await post(`${base}/datasets`, { document, vote: true, data });
    if (answer && answer.kind === "dataset-publish") {
      progressBox.hidden = false;
      await follow(answer, progress, step);
    }
    announce(`dataset ${document.name} published`);
    context.rerender();
  });
}

/** Move the progress bar to where the job is. */
function draw(job, progress, step) {
  progress.value = Number(job.percent) || 0;
  progress.textContent = `${progress.value}%`;
  step.textContent = job.step || job.state;
}

/** The job's end: itself when it succeeded; a failed job throws its one line (on its field). */
function ended(job) {
  if (job.state === "succeeded") return job;
  const error = job.error || { field: null, message: "publishing failed" };
  const problem = new Error(error.message);
  problem.errors = [error];
  throw problem;
}

/**
 * Follow the publish job until it ends: every change as the workspace streams it (server-sent events), so
 * the bar moves with the upload; polling if the stream breaks.
 */
async function follow(job, progress, step) {
  draw(job, progress, step);
  if (job.state !== "running") return ended(job);
  const streamed = await new Promise((resolve) => {
    const source = new EventSource(`/api/jobs/${segment(job.id)}/events`);
    source.onmessage = (message) => {
      const current = JSON.parse(message.data);
      draw(current, progress, step);
      if (current.state !== "running") {
        source.close();
        resolve(current);
      }
    };
    source.onerror = () => {
      source.close();
      resolve(null);
    };
  });
  if (streamed) return ended(streamed);
  for (;;) {
    const current = await get(`/jobs/${segment(job.id)}`);
    draw(current, progress, step);
    if (current.state !== "running") return ended(current);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
