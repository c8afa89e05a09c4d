"""The admin in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright) against
pytest-django's ``live_server``, with a real ``runworker`` process running the jobs.

Each test logs in, acts as a user would and waits for conditions (Playwright's ``expect``, or the job's state
in the database), never for a fixed time. Every page visited is saved as a screenshot under
``build/test-artifacts/``. Without Chromium or Playwright these tests fail (they do not skip): CI must run them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_scheduled_actions import scheduler, workflows
from django_scheduled_actions.models import CronJob, ScheduledFunction, State, WorkflowRun
from tests.app import cron_functions as cf
from tests.app import functions as f
from tests.app import workflow_functions as wf
from tests.support import ROOT, start_worker, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "build" / "test-artifacts"
TIMEOUT_MS = 20_000
JOB_TIMEOUT = 60.0  # seconds for the worker to finish a job (a loaded CI machine)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright: pip install -e '.[test]' (scripts/bootstrap.sh does)")
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium (scripts/bootstrap.sh does)"
        )
    expect.set_options(timeout=TIMEOUT_MS)
    # Playwright's sync API keeps an event loop in this thread: let the test body use the ORM beside it
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def worker(tmp_path) -> Iterator[subprocess.Popen]:
    """A real ``runworker`` process against the test database, stopped with SIGTERM after the test."""
    log = tmp_path / "worker.log"
    proc = start_worker("--concurrency", "2", log=log)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture
def admin_page(browser, live_server, request) -> Iterator:
    """A logged-in admin page, and ``shot(name)`` to save a screenshot of it."""
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1600, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    from playwright.sync_api import expect

    expect(page.locator("#user-tools")).to_contain_text("admin")
    page.shot = screenshots(page, request.node.name)
    yield page
    context.close()


def screenshots(page, test_name: str) -> Callable[[str], None]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    from django.db import connection

    prefix = f"{connection.vendor}-{test_name.removeprefix('test_')}"

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{prefix}-{name}.png"), full_page=True)

    return shot


def job_row(page, job_id: int):
    """The changelist row of a job: the one whose id column links to it."""
    link = page.locator(f'th.field-id a[href*="/scheduledfunction/{job_id}/change/"]')
    return page.locator("#result_list tbody tr").filter(has=link)


def finished(job_id: int) -> bool:
    return ScheduledFunction.objects.filter(pk=job_id, state__in=(State.SUCCESS, State.FAILED)).exists()


def run_action(page, action: str, *job_ids: int) -> None:
    for job_id in job_ids:
        job_row(page, job_id).locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def test_a_job_appears_completes_and_is_found_with_filters(admin_page, worker):
    from playwright.sync_api import expect

    page = admin_page
    later = scheduler.run_after(3600, f.bump, {"name": "later"})
    job_id = scheduler.run_after(0, f.bump, {"name": "browser"})
    page.goto("/admin/django_scheduled_actions/scheduledfunction/")
    expect(job_row(page, job_id)).to_be_visible()
    page.shot("jobs")
    wait_until(lambda: finished(job_id), JOB_TIMEOUT, f"the worker to run job #{job_id}")
    page.reload()
    expect(job_row(page, job_id).locator(".sa-badge")).to_have_text("success")
    expect(job_row(page, later).locator(".sa-badge")).to_have_text("pending")
    expect(job_row(page, later).locator("td.field-scheduled")).to_contain_text(re.compile(r"\(in (59|60) min\)"))
    page.shot("jobs-done")

    page.locator("#changelist-filter details").filter(has_text="By state").get_by_role("link", name="success").click()
    expect(page).to_have_url(re.compile(r"state__exact=success"))
    expect(job_row(page, job_id)).to_be_visible()
    expect(job_row(page, later)).to_have_count(0)
    page.shot("jobs-filtered")

    job_row(page, job_id).locator("th.field-id a").click()
    expect(page.locator(".field-args_pretty pre")).to_contain_text('"name": "browser"')
    expect(page.locator(".field-result_pretty pre")).to_have_text("1")
    page.shot("job-detail")


def test_cancel_a_pending_job_and_retry_a_failed_one(admin_page, worker):
    from playwright.sync_api import expect

    page = admin_page
    pending = scheduler.run_after(3600, f.bump, {"name": "later"})
    now = timezone.now()
    failed = ScheduledFunction.objects.create(
        name=f.bump.name,
        kind="mutation",
        args={"name": "again"},
        state=State.FAILED,
        error="RuntimeError: boom",
        attempts=1,
        scheduled_time=now,
        started_at=now,
        completed_time=now,
    ).pk
    page.goto("/admin/django_scheduled_actions/scheduledfunction/")
    run_action(page, "cancel_jobs", pending)
    expect(page.locator(".messagelist")).to_contain_text(f"Canceled 1 job(s): #{pending}.")
    expect(job_row(page, pending).locator(".sa-badge")).to_have_text("canceled")
    assert ScheduledFunction.objects.get(pk=pending).state == State.CANCELED
    page.shot("canceled")

    run_action(page, "retry_jobs", failed)
    retry = ScheduledFunction.objects.get(retry_of_id=failed).pk
    expect(page.locator(".messagelist")).to_contain_text(f"Retried 1 job(s): #{failed} as #{retry}.")
    wait_until(lambda: finished(retry), JOB_TIMEOUT, f"the worker to run the retry #{retry}")
    page.reload()
    expect(job_row(page, retry).locator(".sa-badge")).to_have_text("success")
    expect(job_row(page, retry).locator("td.field-origin")).to_contain_text(f"retry of #{failed}")
    page.shot("retried")


def test_disable_a_cron(admin_page, worker):
    from playwright.sync_api import expect

    page = admin_page
    cron = CronJob.objects.create(
        name="browser cron",
        function=cf.ping.name,
        expression="0 9 * * *",
        timezone="Europe/Amsterdam",
        next_run_at=timezone.now() + timedelta(hours=1),
    )
    page.goto("/admin/django_scheduled_actions/cronjob/")
    row = page.locator("#result_list tbody tr").filter(has_text="browser cron")
    expect(row.locator("td.field-schedule_in_words")).to_have_text("every day at 09:00 (Europe/Amsterdam)")
    page.shot("crons")
    row.locator("td.field-enabled input[type=checkbox]").uncheck()
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(row.locator("td.field-enabled input[type=checkbox]")).not_to_be_checked()
    cron.refresh_from_db()
    assert not cron.enabled
    page.shot("crons-disabled")
    row.locator("th.field-name a").click()
    expect(page.locator(".field-next_runs")).to_contain_text("09:00 CE")
    page.shot("cron-detail")


def test_open_the_dashboard_and_the_workers(admin_page, worker):
    from playwright.sync_api import expect

    page = admin_page
    jobs = [scheduler.run_after(0, f.bump, {"name": f"d{i}"}) for i in range(3)]
    jobs.append(scheduler.run_after(0, f.failing_action))
    for job_id in jobs:
        wait_until(lambda job_id=job_id: finished(job_id), JOB_TIMEOUT, f"the worker to run job #{job_id}")
    page.goto("/admin/django_scheduled_actions/")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("h2").first).to_have_text("Jobs per state")
    expect(page.locator(".sa-state-success .sa-number")).to_have_text("3")
    expect(page.locator(".sa-state-failed .sa-number")).to_have_text("1")
    expect(page.locator("#sa-chart-hour")).to_be_visible()
    expect(page.locator("#sa-failures")).to_contain_text(f"#{jobs[-1]}")
    expect(page.locator("#sa-workers .sa-number")).to_have_text("1 alive")
    page.shot("dashboard")
    page.locator("#sa-failures").get_by_role("link", name=f"#{jobs[-1]}").click()
    expect(page.locator(".field-error_pretty pre")).to_contain_text("Error")
    page.shot("failed-job")
    page.goto("/admin/django_scheduled_actions/workerprocess/")
    expect(page.locator("#result_list tbody tr .sa-badge")).to_have_text("alive")
    page.shot("workers")


def test_a_workflow_runs_steps_as_a_timeline_and_its_retry_from_the_failed_step(admin_page, worker):
    from playwright.sync_api import expect

    page = admin_page
    run_id = workflows.start(wf.uncaught, {"key": "browser"})
    run_failed = lambda: WorkflowRun.objects.filter(pk=run_id, state="failed").exists()  # noqa: E731
    wait_until(run_failed, JOB_TIMEOUT, f"the worker to run workflow run #{run_id}")
    page.goto("/admin/django_scheduled_actions/workflowrun/")
    row = page.locator("#result_list tbody tr").filter(
        has=page.locator(f'th.field-id a[href*="/workflowrun/{run_id}/change/"]')
    )
    expect(row.locator(".sa-badge")).to_have_text("failed")
    row.locator("th.field-id a").click()
    steps = page.locator(".sa-timeline tbody tr")
    expect(steps).to_have_count(2)
    expect(steps.nth(0).locator(".sa-badge")).to_have_text("success")
    expect(steps.nth(1).locator(".sa-badge")).to_have_text("failed")
    expect(steps.nth(1)).to_contain_text("card browser declined")
    page.shot("workflow-run")

    page.goto("/admin/django_scheduled_actions/workflowrun/")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_runs")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text(f"Retried from the failed step 1 run(s): #{run_id}.")
    wait_until(lambda: wf.count("refused browser") == 2 and run_failed(), JOB_TIMEOUT, "the retried step")
    page.goto(f"/admin/django_scheduled_actions/workflowrun/{run_id}/change/")
    expect(steps).to_have_count(2)  # the finished step kept, the failed one run again
    assert wf.Note.objects.filter(text="before browser").count() == 1
    page.shot("workflow-run-retried")
