"""The browser (package-wide), the screenshots folder and the analytics demo's room for the story."""

from tests.system.analytics.conftest import analytics_room  # noqa: F401  the demo's room, for this package too
from tests.workspacepages.pages import browser, screenshots  # noqa: F401
