"""The Batch tab: a form for presets x seeds x sweeps, the live job table, compare view and zip.

Layout and events only; what they do is `app.batches` (plain Python, tested without a browser).
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from app.batches import NO_SWEEP, SWEEP_KEYS, TABLE_HEADERS, Batches, build_definition, compare_html, optional_number
from app.cluster_batches import ClusterBatches
from app.service import StudioService
from nava_core.batch import BatchDefinition
from nava_core.cluster import ClusterError
from nava_core.validation import InputError

log = logging.getLogger(__name__)


def build_batch_tab(service: StudioService) -> Batches:
    """The Batch tab's components, inside the caller's `with gr.Tab("Batch"):` block."""
    runner = Batches(service)
    cluster = ClusterBatches(service)
    try:
        import prompt_builder as pb

        preset_names = pb.list_presets()
    except Exception as e:  # noqa: BLE001 - a broken presets folder must not stop the studio
        log.warning("presets unavailable for the Batch tab: %s", e)
        preset_names = []
    sweep_choices = [NO_SWEEP, *SWEEP_KEYS]

    gr.Markdown("Queue many renders at once: presets × seeds × up to two swept settings. The queue is kept on "
                "disk, so a restart resumes it; renders run one at a time, in line with the Studio tab's renders.")
    with gr.Row():
        presets = gr.Dropdown(preset_names, multiselect=True, label="Presets", scale=3, elem_id="batch-presets")
        seeds = gr.Number(1, precision=0, minimum=1, label="Seeds per setting", scale=1, elem_id="batch-seeds")
        # text boxes, not gr.Number: a Number shows an empty value as 0, and 0 is a real seed
        first_seed = gr.Textbox(label="First seed", placeholder="blank: the preset's", scale=1, elem_id="batch-first-seed")
    with gr.Row():
        sweep1 = gr.Dropdown(sweep_choices, value=NO_SWEEP, label="Sweep 1", scale=1, elem_id="batch-sweep1")
        values1 = gr.Textbox(label="values (comma list)", placeholder="1.0, 2.0, 3.0", scale=2, elem_id="batch-values1")
        sweep2 = gr.Dropdown(sweep_choices, value=NO_SWEEP, label="Sweep 2", scale=1)
        values2 = gr.Textbox(label="values (comma list)", placeholder="landscape, portrait", scale=2)
    with gr.Row():
        steps = gr.Textbox(label="Steps", placeholder="blank: the preset's", elem_id="batch-steps")
        seconds = gr.Textbox(label="Duration in s", placeholder="blank: the preset's", elem_id="batch-seconds")
    preview = gr.Markdown(elem_id="batch-preview")
    with gr.Row():  # a render farm (docs/cluster.md); needs Ray: pip install ".[cluster]"
        on_cluster = gr.Checkbox(False, label="Run on cluster", scale=1, elem_id="batch-cluster")
        cluster_addr = gr.Textbox("local", label="Ray address", placeholder="local, ray://HOST:10001 or HOST:6379",
                                  scale=2, elem_id="batch-cluster-address")
        cluster_actors = gr.Textbox(label="Actors", placeholder="blank: one per GPU", scale=1,
                                    elem_id="batch-cluster-actors")
    queue_btn = gr.Button("Queue batch", variant="primary", elem_id="batch-queue")
    cluster_status = gr.Markdown(elem_id="batch-cluster-status")
    with gr.Row():
        pick = gr.Dropdown(runner.batch_choices(), value=(runner.batch_choices() or [None])[0], label="Batch",
                           scale=3, allow_custom_value=False, elem_id="batch-pick")
        cancel_btn = gr.Button("Cancel batch", variant="stop", scale=1)
        zip_btn = gr.Button("Download all (zip)", scale=1, elem_id="batch-zip")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Jobs", elem_id="batch-table")
    zip_file = gr.File(label="All finished outputs", interactive=False)
    gr.Markdown("### Compare")
    compare = gr.HTML(elem_id="batch-compare")
    shown = gr.State("")
    timer = gr.Timer(1.0)

    form = [presets, seeds, sweep1, values1, sweep2, values2, first_seed, steps, seconds]

    def _defn(p, n, k1, v1, k2, v2, s0, st, sec) -> BatchDefinition:
        return build_definition(p or [], n, [(k1, v1), (k2, v2)], optional_number("first seed", s0, True),
                                optional_number("steps", st, True), optional_number("duration", sec))

    def _preview(*vals: Any) -> str:
        try:
            return runner.preview(_defn(*vals))
        except (InputError, ValueError) as e:
            return f"⛔ {html.escape(str(e))}"

    def _queue(*vals: Any):
        *form_vals, farm, address, actors = vals
        try:  # a farm that cannot run (no Ray, bad address) is refused before anything is queued
            config = cluster.config(address, optional_number("actors", actors, True)) if farm else None
            batch_id = runner.enqueue(_defn(*form_vals), engine=cluster.engine_tag(config) if config else None)
        except (InputError, ValueError, ClusterError) as e:
            gr.Warning(str(e))
            return gr.update(), gr.update(), f"⛔ {html.escape(str(e))}", gr.update()
        gr.Info(f"Queued batch {batch_id}.")
        status = cluster.start(batch_id, config) if config is not None else gr.update()
        return (gr.update(choices=runner.batch_choices(), value=batch_id), runner.rows(batch_id), _preview(*form_vals),
                status)

    def _refresh(batch_id: str | None, last: str):
        entries = runner.compare(batch_id) if batch_id else []
        sig = ",".join(str(e.job_id) for e in entries) + f"@{batch_id}"
        html_update = gr.update() if sig == last else compare_html(entries)
        rows = runner.rows(batch_id)
        for row in rows:  # a job running on the cluster: its actor's phase and step
            if row[1] == "running" and (farm := cluster.job_progress(row[0])):
                row[3] = farm
        return rows, html_update, sig, cluster.status_markdown()

    def _zip(batch_id: str | None):
        if not batch_id:
            gr.Warning("Pick a batch first.")
            return None
        try:
            return str(runner.zip_outputs(batch_id))
        except InputError as e:
            gr.Warning(str(e))
            return None

    def _cancel(batch_id: str | None) -> None:
        if batch_id:
            gr.Info(f"Cancelled {runner.cancel_batch(batch_id)} job(s); a running one stops at its next step.")

    for comp in form:
        comp.change(_preview, form, preview, show_progress="hidden", api_visibility="private")
    queue_btn.click(_queue, [*form, on_cluster, cluster_addr, cluster_actors], [pick, table, preview, cluster_status],
                    api_visibility="private")
    refreshed = [table, compare, shown, cluster_status]
    pick.change(_refresh, [pick, shown], refreshed, show_progress="hidden", api_visibility="private")
    timer.tick(_refresh, [pick, shown], refreshed, show_progress="hidden", api_visibility="private")
    zip_btn.click(_zip, pick, zip_file, api_visibility="private")
    cancel_btn.click(_cancel, pick, None, api_visibility="private")
    return runner


__all__ = ["build_batch_tab"]
