"""The audit report as a PDF: the self-contained HTML report, printed by a headless Chromium on this machine
(`--print-to-pdf`; no PDF library is needed and the PDF shows exactly what the HTML export shows).

The page printed is the workspace's own render (every value escaped, no script, nothing to fetch, and its
own Content-Security-Policy forbidding both) from a private temporary folder; Chromium runs in a profile
of its own that is thrown away, and its output is bounded in time and size. (Chromium's switch that turns
scripts off also stops it printing: the page's policy does that job.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from ..common.errors import CcrError
from ..common.process import stop_process_group

#: which browser prints: CCR_CHROMIUM, else the first of these on PATH
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: a report of a few thousand events prints in seconds; a busy machine is given ample time
PRINT_TIMEOUT_S = 120.0
MAX_PDF_BYTES = 32 * 1024 * 1024


class PdfUnavailable(CcrError):
    http_status = 503


def chromium() -> str:
    named = os.environ.get("CCR_CHROMIUM")
    found = named if named and Path(named).is_file() else next(
        (path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    if found is None:
        raise PdfUnavailable("exporting the report as PDF needs Chromium on this machine (set CCR_CHROMIUM to "
                             "its path); the HTML export needs nothing")
    return found


def html_to_pdf(html: str) -> bytes:
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="ccr-workspace-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        argv = [browser, "--headless", "--disable-gpu", "--no-pdf-header-footer", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                f"--user-data-dir={tmp}/profile",
                # As root Chromium refuses to start with its sandbox; the page is the workspace's own render.
                *(["--no-sandbox"] if os.geteuid() == 0 else []),
                f"--print-to-pdf={pdf}", page.as_uri()]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, errors = process.communicate(timeout=PRINT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_process_group(process.pid)
            process.communicate()
            raise PdfUnavailable(f"Chromium did not print the report within {PRINT_TIMEOUT_S:.0f} s") from None
        finally:
            # its helper processes, in its own group (the group id lives on, not reused, while any is left)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.returncode != 0 or not pdf.is_file():
            last = (errors.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise PdfUnavailable(f"Chromium could not print the report (exit {process.returncode}): {last[:200]}")
        if pdf.stat().st_size > MAX_PDF_BYTES:
            raise PdfUnavailable(f"the printed report is larger than {MAX_PDF_BYTES >> 20} MiB")
        data = pdf.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise PdfUnavailable("Chromium's output is not a PDF")
    return data
