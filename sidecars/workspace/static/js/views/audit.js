// The audit report: the collaboration's audit events as a timeline with filters, the hash chain as
// the workspace verified it, the room's attestation as the workspace itself checked it, in plain
// words, and the export as one self-contained HTML file.

import { download, get, queryString, segment } from "../api.js";
import { field, h, input, onSubmit, pill, replace, when } from "../dom.js";
import { state } from "../state.js";

export async function auditView(body, context) {
  if (!state.collaboration) {
    replace(body, h("p", { class: "empty" }, "Pick a collaboration first (Collaborations)."));
    return;
  }
  const base = `/collaborations/${segment(state.collaboration)}`;
  const chainBox = h("section", { class: "card", "aria-labelledby": "chain-heading" });
  const attestationBox = h("section", { class: "card", "aria-labelledby": "attestation-heading" }, h("h2", { id: "attestation-heading" }, "The room's attestation"), h("p", {}, "Checking the room's evidence…"));
  const timeline = h("ol", { class: "timeline", "aria-labelledby": "timeline-heading" });
  const filters = h(
    "form",
    { class: "row", role: "search", "aria-label": "Filter the audit events" },
    field("Party", input("party", { autocomplete: "off" })),
    field("Kind", input("kind", { autocomplete: "off" })),
    field("Run", input("run", { autocomplete: "off" })),
    h("p", { class: "form-error", hidden: true }),
    h("button", { type: "submit" }, "Filter"),
  );
  const exportLink = h("a", { href: `/api${base}/report.html`, download: `audit-report-${state.collaboration}.html` }, "Export the report (self-contained HTML)");
  const pdfProblem = h("p", { class: "form-error", role: "alert", hidden: true });
  const pdfButton = h("button", { type: "button" }, "Export the report as PDF");
  pdfButton.addEventListener("click", () => exportPdf(base, state.collaboration, pdfButton, pdfProblem));
  replace(
    body,
    h("p", {}, exportLink, " ", pdfButton),
    pdfProblem,
    chainBox,
    attestationBox,
    h("h2", { id: "timeline-heading" }, "Timeline"),
    filters,
    timeline,
  );
  const load = async () => {
    const value = (name) => filters.elements[name].value.trim();
    const answer = await get(`${base}/auditevents${queryString({ party: value("party"), kind: value("kind"), run: value("run") })}`);
    if (!context.isCurrent()) return;
    showChain(chainBox, answer.chain || {});
    const events = answer.value || [];
    replace(
      timeline,
      events.length
        ? events.map((event) =>
            h(
              "li",
              {},
              h("p", { class: "meta" }, `#${event.seqno} · ${when(event.timestamp)} · ${event.party || "?"} · ${event.kind || "?"}${event.run ? ` · run ${event.run}` : ""}`),
              h("p", {}, event.summary || ""),
            ),
          )
        : h("li", { class: "empty" }, "No event matches."),
    );
  };
  onSubmit(filters, load);
  await load();
  const report = await get(`${base}/report`).catch((error) => ({ attestation: { verified: false, lines: [], problem: error.message } }));
  if (!context.isCurrent()) return;
  showAttestation(attestationBox, report.attestation || {});
}

function showChain(box, chain) {
  replace(
    box,
    h("h2", { id: "chain-heading" }, "Audit chain"),
    h(
      "p",
      {},
      pill(chain.verified ? "verified" : "not verified"),
      chain.verified
        ? ` All ${chain.events ?? "?"} events link to the one before them: none was changed, removed or reordered since it was written (checked here, in this workspace).`
        : " The chain does not verify: the audit trail was changed after it was written.",
    ),
    (chain.problems || []).length ? h("ul", { class: "checks" }, chain.problems.map((problem) => h("li", { class: "problem" }, String(problem)))) : null,
  );
}

// The PDF is printed by the workspace (a few seconds): the button says so meanwhile, and a refusal (no
// Chromium on the machine) is its one line below it instead of a downloaded error file.
async function exportPdf(base, collaboration, button, problem) {
  button.disabled = true;
  button.textContent = "Printing the report…";
  problem.hidden = true;
  try {
    const blob = await download(`${base}/report.pdf`);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `audit-report-${collaboration}.pdf`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    problem.textContent = error.message;
    problem.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Export the report as PDF";
  }
}

function showAttestation(box, attestation) {
  replace(
    box,
    h("h2", { id: "attestation-heading" }, "The room's attestation"),
    h("p", {}, pill(attestation.verified ? "verified" : "not verified"), attestation.verified ? " This workspace checked the room's evidence itself." : ""),
    attestation.problem ? h("p", { class: "form-error" }, attestation.problem) : null,
    (attestation.lines || []).length ? h("div", { class: "plain-words" }, attestation.lines.join("\n")) : null,
  );
}
