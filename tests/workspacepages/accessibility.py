"""Accessibility checks on a workspace view, with what the browser itself computes.

Labels: Chromium's accessibility tree (CDP `Accessibility.getFullAXTree`) gives every control's computed
accessible name, the one a screen reader announces: a control without one is a failure. Keyboard: Tab from
the top of the page must reach every visible, enabled control, in an order that never traps focus.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Page

#: roles a user operates; each must have a name
CONTROL_ROLES = frozenset({
    "button", "checkbox", "combobox", "link", "listbox", "menuitem", "radio", "searchbox", "slider",
    "spinbutton", "switch", "tab", "textbox", "ProgressIndicator", "progressbar",
})
#: one Tab too many: the page has more controls than this, or focus is trapped
MAX_TABS = 400

# Marks every visible, enabled control with a number, so the Tab walk can say which it reached.
_MARK_CONTROLS = """() => {
  const selector = 'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"]), [role=switch]';
  const visible = (el) => {
    if (el.closest('[hidden], details:not([open]) > :not(summary)')) return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const controls = [...document.querySelectorAll(selector)].filter((el) => !el.disabled && visible(el));
  controls.forEach((el, index) => el.setAttribute('data-a11y-mark', String(index)));
  return controls.map((el) => el.outerHTML.slice(0, 120));
}"""

_FOCUSED_MARK = "() => document.activeElement && document.activeElement.getAttribute('data-a11y-mark')"


@dataclass(frozen=True)
class Problems:
    unlabelled: list[str]
    unreachable: list[str]

    def __bool__(self) -> bool:
        return bool(self.unlabelled or self.unreachable)


def unlabelled_controls(page: Page) -> list[str]:
    """Controls in the accessibility tree whose computed name is empty."""
    session = page.context.new_cdp_session(page)
    try:
        nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()
    missing = []
    for node in nodes:
        if node.get("ignored"):
            continue
        role = node.get("role", {}).get("value", "")
        name = (node.get("name") or {}).get("value", "")
        if role in CONTROL_ROLES and not str(name).strip():
            missing.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return missing


def unreachable_by_tab(page: Page) -> list[str]:
    """Controls Tab never reaches, walking from the top of the page until focus comes back round."""
    controls = page.evaluate(_MARK_CONTROLS)
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    reached: set[int] = set()
    first: str | None = None
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        mark = page.evaluate(_FOCUSED_MARK)
        if mark is None:
            continue
        if mark == first:
            break
        first = first or mark
        reached.add(int(mark))
    return [html for index, html in enumerate(controls) if index not in reached]


def check_view(page: Page) -> Problems:
    """Both checks on the view the page shows now."""
    return Problems(unlabelled=unlabelled_controls(page), unreachable=unreachable_by_tab(page))
