// Runs: start an accepted query in the room, follow its status live, its timings, and the decrypted
// result as a table (and a bar chart when the result is a series).

import { get, post, queryString, segment } from "../api.js";
import { barChart, seriesOf } from "../chart.js";
import { field, formError, h, input, onSubmit, pill, replace, table } from "../dom.js";
import { announce, state } from "../state.js";

const list = (answer) => (Array.isArray(answer) ? answer : answer.value || []);
const FINAL = new Set(["succeeded", "validated", "refused", "failed", "revoked"]);
const POLL_MS = 500;

export async function runsView(body, context) {
  if (!state.collaboration) {
    replace(body, h("p", { class: "empty" }, "Pick a collaboration first (Collaborations)."));
    return;
  }
  const base = `/collaborations/${segment(state.collaboration)}`;
  const [runId] = context.parameters;
  if (runId) return runDetail(body, base, runId, context);
  const [queries, runs] = await Promise.all([get(`${base}/queries`), get(`${base}/runs${queryString({})}`).catch((error) => ({ error }))]);
  if (!context.isCurrent()) return;
  replace(
    body,
    startForm(base, list(queries)),
    runs.error
      ? h("p", { class: "form-error", role: "alert" }, runs.error.message)
      : list(runs).length
        ? table(
            `Runs in ${state.collaboration}`,
            // State: finished, failed or running, also for a run its room stopped before it ended (its status
            // then is the last one the room reported).
            ["Run", "Query", "State", "Status", "Time"],
            list(runs).map((run) => [h("a", { href: `#/runs/${segment(run.runId)}` }, run.runId), run.queryId || "", pill(run.state), pill(run.status), totalTime(run.timings)]),
          )
        : h("p", { class: "empty" }, "No run yet."),
  );
}

function totalTime(timings) {
  if (!timings) return "";
  const seconds = Object.values(timings).filter((value) => typeof value === "number").reduce((sum, value) => sum + value, 0);
  return `${seconds.toFixed(2)} s`;
}

function startForm(base, queries) {
  const form = h(
    "form",
    { "aria-labelledby": "start-heading", class: "card" },
    h("h2", { id: "start-heading" }, "Start a run"),
    field("Query", h("select", { name: "queryId" }, queries.map((query) => h("option", { value: query.id }, `${query.id} (${query.state})`)))),
    field("Run id (optional)", input("runId", { autocomplete: "off" }), "the same id and body again is the same run"),
    field("Start date (optional)", input("startDate", { type: "date" })),
    field("End date (optional)", input("endDate", { type: "date" })),
    h("div", { class: "field", dataset: { field: "dryRun" } }, h("label", {}, h("input", { type: "checkbox", name: "dryRun" }), " Dry run: check everything, read and write nothing"), h("p", { class: "field-error", hidden: true })),
    formError(),
    h("button", { type: "submit" }, "Start run"),
  );
  return onSubmit(form, async () => {
    const value = (name) => form.elements[name].value.trim() || null;
    const run = await post(`${base}/queries/${segment(form.elements.queryId.value)}/run`, {
      runId: value("runId"),
      dryRun: form.elements.dryRun.checked,
      startDate: value("startDate"),
      endDate: value("endDate"),
    });
    announce(`run ${run.runId} ${run.status}`);
    location.hash = `#/runs/${encodeURIComponent(run.runId)}`;
  });
}

async function runDetail(body, base, runId, context) {
  const status = h("p", { "aria-live": "polite" });
  const details = h("div");
  const resultBox = h("div");
  replace(body, h("p", {}, h("a", { href: "#/runs" }, "All runs")), h("h2", {}, `Run ${runId}`), status, details, resultBox);
  let run = await get(`${base}/runs/${segment(runId)}`);
  for (;;) {
    if (!context.isCurrent()) return;
    replace(status, "Status ", pill(run.status), run.queryId ? ` · query ${run.queryId}` : "");
    replace(details, describe(run));
    if (FINAL.has(run.status)) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    run = await get(`${base}/runs/${segment(runId)}`);
  }
  announce(`run ${runId} ${run.status}`);
  if (run.status === "succeeded") {
    const button = h("button", { type: "button" }, "Download and decrypt the result");
    const error = h("p", { class: "field-error", hidden: true });
    button.addEventListener("click", async () => {
      button.disabled = true;
      error.hidden = true;
      try {
        replace(resultBox, showResult(await get(`${base}/runs/${segment(runId)}/result`)));
        announce("result decrypted");
      } catch (problem) {
        error.textContent = problem.message;
        error.hidden = false;
        button.disabled = false;
      }
    });
    replace(resultBox, button, error);
  }
}

function describe(run) {
  const parts = [];
  if (run.error) parts.push(h("p", { class: "form-error", role: "alert" }, `${run.error.code ? `${run.error.code}: ` : ""}${run.error.message}`));
  if (run.timings && Object.keys(run.timings).length) {
    parts.push(table("Timings", ["Step", "Seconds"], Object.entries(run.timings).map(([step, seconds]) => [step, typeof seconds === "number" ? seconds.toFixed(3) : String(seconds)])));
  }
  const facts = [];
  if (run.rowsWritten !== undefined && run.rowsWritten !== null) facts.push(`${run.rowsWritten} rows written`);
  if (run.groupsSuppressed) facts.push(`${run.groupsSuppressed} groups suppressed under the aggregation threshold`);
  if (run.output && run.output.length) facts.push(`output: ${run.output.join(", ")}`);
  if (facts.length) parts.push(h("p", {}, facts.join(" · ")));
  return parts;
}

function showResult(result) {
  const columns = result.columns || [];
  const rows = result.rows || [];
  const parts = [table("Result", columns, rows.map((row) => row.map((cell) => (cell === null ? "" : String(cell)))))];
  if (result.truncated) parts.push(h("p", { class: "hint" }, "Only the first rows are shown."));
  let series = null;
  if (result.series && result.series.x && result.series.y && result.series.y.length) {
    const labelIndex = columns.indexOf(result.series.x);
    const valueIndex = columns.indexOf(result.series.y[0]);
    if (labelIndex >= 0 && valueIndex >= 0) {
      series = { labelName: columns[labelIndex], valueName: columns[valueIndex], points: rows.map((row) => ({ label: String(row[labelIndex]), value: Number(row[valueIndex]) })) };
    }
  } else {
    series = seriesOf(columns, rows);
  }
  if (series && series.points.every((point) => Number.isFinite(point.value))) parts.push(h("figure", {}, barChart(series), h("figcaption", {}, `${series.valueName} by ${series.labelName}`)));
  return parts;
}
