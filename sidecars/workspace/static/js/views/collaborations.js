// Collaborations: the contracts this party is in, their members, the party's execution consent,
// and members by identity (invite by e-mail, accept an invitation, admit an invitee).

import { get, post, segment } from "../api.js";
import { consentSwitch, field, formError, h, input, onSubmit, pill, replace, table } from "../dom.js";
import { announce, state } from "../state.js";

const list = (answer) => (Array.isArray(answer) ? answer : answer.value || []);

export async function collaborationsView(body, context) {
  const [collaborations, invitations] = await Promise.all([get("/collaborations"), get("/invitations").catch(() => ({ value: [] }))]);
  if (!context.isCurrent()) return;
  const all = list(collaborations);
  const parts = [];
  parts.push(
    all.length
      ? table(
          "Collaborations you are a member of",
          ["Collaboration", "State", "Members", "Your execution consent"],
          all.map((collaboration) => [
            collaboration.id,
            pill(collaboration.state),
            (collaboration.members || []).join(", "),
            pill(collaboration.consent ? collaboration.consent.execution : "unknown"),
          ]),
        )
      : h("p", { class: "empty" }, "You are not a member of any collaboration yet: accept an invitation below."),
  );
  const current = all.find((collaboration) => collaboration.id === state.collaboration);
  if (current) parts.push(await currentSection(current, context));
  parts.push(invitationsSection(list(invitations), all, context));
  if (state.me && state.me.mode === "entra") parts.push(receivedSection(context));
  if (!context.isCurrent()) return;
  replace(body, parts);
}

async function currentSection(collaboration, context) {
  const members = list(await get(`/collaborations/${segment(collaboration.id)}/members`));
  const consent = collaboration.consent || {};
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "current-collaboration" },
    h("h2", { id: "current-collaboration" }, `Collaboration ${collaboration.id}`),
    h("p", {}, "State ", pill(collaboration.state), collaboration.room && collaboration.room.url ? ` · room at ${collaboration.room.url}` : " · no room configured for runs"),
    consentSwitch(`Execution consent for ${collaboration.id}`, consent.execution === "enabled", async (wanted) => {
      const answer = await post(`/collaborations/${segment(collaboration.id)}/consent`, { enabled: wanted });
      announce(`execution consent ${answer.execution}`);
      return answer.execution === "enabled";
    }),
    consent.reason ? h("p", { class: "hint" }, consent.reason) : null,
    table(
      `Members of ${collaboration.id}`,
      ["Member", "Status", "Identity"],
      members.map((member) => [
        member.isMe ? `${member.name} (you)` : member.name,
        pill(member.status),
        member.identity ? member.identity.email || member.identity.oid || "" : "certificate",
      ]),
    ),
    inviteForm(collaboration, context),
  );
  return section;
}

function inviteForm(collaboration, context) {
  const form = h(
    "form",
    { "aria-labelledby": "invite-heading" },
    h("h2", { id: "invite-heading" }, "Invite a collaborator by e-mail"),
    field("E-mail address", input("email", { type: "email", autocomplete: "off" })),
    field("Member name", input("name", { autocomplete: "off" }), "the name the contract and the other members will know the party by"),
    field("Identity provider (issuer)", input("issuer", { type: "url", autocomplete: "off" }), "where the invitee signs in, e.g. https://login.microsoftonline.com/TENANT/v2.0; empty: this workspace's own"),
    field("Client id at that provider", input("clientId", { autocomplete: "off" }), "the invitee's workspace's client id; empty: this workspace's own"),
    formError(),
    h("button", { type: "submit" }, "Send invitation"),
  );
  return onSubmit(form, async () => {
    const body = { email: form.elements.email.value.trim(), name: form.elements.name.value.trim() };
    for (const optional of ["issuer", "clientId"]) if (form.elements[optional].value.trim()) body[optional] = form.elements[optional].value.trim();
    const invitation = await post(`/collaborations/${segment(collaboration.id)}/invitations`, body);
    announce(`invitation sent to ${invitation.email}`);
    context.rerender();
  });
}

function invitationsSection(invitations, collaborations, context) {
  const rows = invitations.map((invitation) => {
    let action = "";
    const addressedToMe = state.me && state.me.identity && state.me.identity.email && state.me.identity.email.toLowerCase() === String(invitation.email).toLowerCase();
    const collaboration = collaborations.find((candidate) => candidate.id === invitation.contractId);
    const admitted = collaboration && (collaboration.members || []).includes(invitation.name);
    if (admitted) {
      action = "a member now";
    } else if (invitation.state === "Accepted" && !addressedToMe) {
      action = actionButton(`Admit ${invitation.name} to ${invitation.contractId}`, "Admit", async () => {
        const answer = await post(`/invitations/${segment(invitation.invitationId)}/admit`);
        announce(`admission proposed: ${answer.proposalState}`);
      }, context);
    }
    return [invitation.contractId, `${invitation.name} <${invitation.email}>`, invitation.invitedBy, pill(invitation.state), action, invitation.invitationId];
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "invitations-heading" },
    h("h2", { id: "invitations-heading" }, "Invitations"),
    rows.length ? table("Invitations of your collaborations and to you", ["Collaboration", "Invitee", "Invited by", "State", "Action", "Invitation id (send it to the invitee)"], rows) : h("p", { class: "empty" }, "No invitations."),
  );
}

/**
 * A button whose accessible name says which row it acts on; its error shows on the line after it. With a
 * view context, the view is drawn again once the action succeeded.
 */
function actionButton(name, text, action, context) {
  const error = h("span", { class: "field-error", hidden: true });
  const button = h("button", { type: "button", "aria-label": name }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    error.hidden = true;
    try {
      await action();
      // a null context: the action shows its own answer where it is, the view stays as it is
      if (context) context.rerender();
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
      button.disabled = false;
    }
  });
  return h("span", {}, button, " ", error);
}

/** The invitation id from what the invitee pastes: the id itself, or the link that carries it. */
function invitationIdOf(text) {
  const trimmed = text.trim();
  const fromQuery = /[?&#]invitation(?:Id)?=([^&#]+)/.exec(trimmed);
  if (fromQuery) return decodeURIComponent(fromQuery[1]);
  return trimmed.split("/").filter(Boolean).pop() || "";
}

/**
 * The invitee's side (a workspace signed in with an identity): open the invitation it received by e-mail,
 * accept it (CGS binds this workspace's key to the signed-in identity), and once admitted, activate.
 */
function receivedSection(context) {
  const found = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { "aria-labelledby": "received-heading" },
    h("h2", { id: "received-heading" }, "An invitation you received"),
    field("Invitation link or id", input("invitationId", { autocomplete: "off" }), "from the invitation e-mail"),
    formError(),
    h("button", { type: "submit" }, "Open invitation"),
  );
  const show = (invitation, note) => {
    replace(
      found,
      table("The invitation", ["Collaboration", "Invitee", "Invited by", "State"], [[invitation.contractId, `${invitation.name} <${invitation.email}>`, invitation.invitedBy, pill(invitation.state)]]),
      note ? h("p", {}, note) : null,
      invitation.state === "Open"
        ? actionButton(`Accept invitation to ${invitation.contractId}`, "Accept", async () => {
            const accepted = await post(`/invitations/${segment(invitation.invitationId)}/accept`);
            const next = `${accepted.state}: a member of ${accepted.contractId} will now admit you`;
            show(accepted, next);
            announce(next);
          }, null)
        : null,
    );
  };
  onSubmit(form, async () => {
    show(await get(`/invitations/${segment(invitationIdOf(form.elements.invitationId.value))}`));
  });
  const activate = actionButton("Activate my membership", "Activate my membership", async () => {
    await post("/activate");
    await state.reloadCollaborations();
  }, context);
  return h("section", { class: "card" }, form, found, h("p", { class: "hint" }, "Once a member admitted you and the consortium accepted:"), activate);
}
