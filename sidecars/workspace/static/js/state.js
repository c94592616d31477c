// What every view shares: who this workspace acts as, and the collaboration the page works in.

export const state = {
  me: null,
  collaborations: [],
  /** the id of the collaboration the views show */
  collaboration: null,
  /** reload the collaboration list (after accepting an invitation) */
  reloadCollaborations: async () => {},
};

/** Say something to screen readers without moving focus (the page's status line). */
export function announce(message) {
  const status = document.getElementById("status");
  if (status) status.textContent = message;
}

/** The current collaboration's record, or null. */
export function currentCollaboration() {
  return state.collaborations.find((collaboration) => collaboration.id === state.collaboration) || null;
}
