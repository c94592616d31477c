"""A CGS stand-in with northwind and woodgrove in an accepted contract, and the browser, for the page tests."""

from tests.integration.governance.conftest import cgs, gov_dir, local_ca, platform_dir, server_tls  # noqa: F401
from tests.workspacepages.pages import browser, screenshots  # noqa: F401
