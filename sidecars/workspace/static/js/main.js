// The workspace page: a hash router over five views, and the collaboration every view works in.

import { get, post } from "./api.js";
import { h, replace } from "./dom.js";
import { state, announce } from "./state.js";
import { collaborationsView } from "./views/collaborations.js";
import { datasetsView } from "./views/datasets.js";
import { queriesView } from "./views/queries.js";
import { runsView } from "./views/runs.js";
import { auditView } from "./views/audit.js";

const VIEWS = {
  collaborations: { title: "Collaborations", render: collaborationsView },
  datasets: { title: "Datasets", render: datasetsView },
  queries: { title: "Queries", render: queriesView },
  runs: { title: "Runs", render: runsView },
  audit: { title: "Audit report", render: auditView },
};

const main = document.getElementById("main");
const picker = document.getElementById("collaboration");
let renderCount = 0;

function currentRoute() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: VIEWS[name] ? name : "collaborations", parameters: rest.map(decodeURIComponent) };
}

async function render({ moveFocus }) {
  const route = currentRoute();
  const view = VIEWS[route.name];
  const mine = ++renderCount;
  delete main.dataset.ready; // "ready" is for this drawing of the view, not the one before
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${route.name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · Clean room workspace`;
  const heading = h("h1", { tabindex: "-1" }, view.title);
  const body = h("div", { class: "view", dataset: { view: route.name } });
  replace(main, heading, body);
  if (moveFocus) heading.focus();
  try {
    await view.render(body, { parameters: route.parameters, isCurrent: () => mine === renderCount, rerender: () => render({ moveFocus: false }) });
  } catch (error) {
    if (mine !== renderCount) return;
    replace(body, h("p", { class: "form-error", role: "alert" }, error.message));
  }
  if (mine === renderCount) {
    main.dataset.ready = route.name;
    // a view drawn again after an action keeps that action's announcement
    if (moveFocus) announce(`${view.title} loaded`);
  }
}

async function loadCollaborations() {
  const answer = await get("/collaborations");
  state.collaborations = Array.isArray(answer) ? answer : answer.value || [];
  const remembered = sessionStorage.getItem("collaboration");
  const ids = state.collaborations.map((collaboration) => collaboration.id);
  state.collaboration = ids.includes(remembered) ? remembered : ids[0] ?? null;
  replace(
    picker,
    state.collaborations.length
      ? state.collaborations.map((collaboration) => h("option", { value: collaboration.id, selected: collaboration.id === state.collaboration }, collaboration.name || collaboration.id))
      : h("option", { value: "" }, "none yet"),
  );
}

async function showWho() {
  const who = document.getElementById("who");
  try {
    state.me = await get("/me");
    const email = state.me.identity && state.me.identity.email;
    if (state.me.signedIn === false) {
      // the sign-in is a plain navigation: the workspace redirects to the Entra stand-in and back
      replace(who, "Not signed in · ", h("a", { href: "/api/signin" }, "Sign in with your organisation's account"));
    } else {
      const acting = `Acting as ${state.me.name || "a party not yet admitted"}${email ? ` (${email})` : ""}`;
      replace(who, `${acting} · ${state.me.mode === "entra" ? "Entra identity" : "member certificate"}`);
      if (state.me.mode === "entra") {
        const signOut = h("button", { type: "button", class: "secondary" }, "Sign out");
        signOut.addEventListener("click", async () => {
          await post("/signout");
          location.reload();
        });
        who.append(" ", signOut);
      }
    }
  } catch (error) {
    who.textContent = error.message;
  }
}

async function start() {
  await showWho();
  try {
    await loadCollaborations();
  } catch (error) {
    replace(picker, h("option", { value: "" }, "unavailable"));
  }
  picker.addEventListener("change", () => {
    state.collaboration = picker.value || null;
    sessionStorage.setItem("collaboration", picker.value);
    render({ moveFocus: false });
  });
  window.addEventListener("hashchange", () => render({ moveFocus: true }));
  // after an activation the party has a member name: the header says so too
  state.reloadCollaborations = async () => {
    await showWho();
    await loadCollaborations();
  };
  await render({ moveFocus: false });
}

start();
