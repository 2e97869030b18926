"""Page styling passed to `launch(css=...)` (Gradio 6 takes theme/css/js at launch, not in Blocks)."""

CSS = """
.nava-banner {border: 2px solid #f59e0b; background: #fffbeb; border-radius: 8px; padding: 4px 12px;}
.nava-banner p, .nava-banner strong {color: #78350f !important;}
.nava-progress {border: 1px solid #d1d5db; border-radius: 8px; padding: 10px; min-height: 64px;}
.nava-chips {display: flex; flex-wrap: wrap; gap: 4px; margin-bottom: 8px;}
.nava-chip {font-size: 12px; padding: 2px 8px; border-radius: 999px; background: #e5e7eb; color: #374151;}
.nava-chip.nava-done {background: #bbf7d0; color: #14532d;}
.nava-chip.nava-now {background: #2563eb; color: #fff; font-weight: 600;}
.nava-bar {height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden;}
.nava-fill {height: 100%; background: linear-gradient(90deg, #2563eb, #7c3aed); transition: width .3s;}
.nava-msg {margin-top: 6px; font-family: ui-monospace, monospace; font-size: 13px;}
.nava-status-failed .nava-msg, .nava-status-cancelled .nava-msg {color: #b91c1c;}
.nava-lint {font-size: 13px;}
.nava-model-error {border: 2px solid #dc2626; background: #fef2f2; color: #7f1d1d; border-radius: 8px;
  padding: 8px 12px; font-size: 14px;}
.nava-voice-drop {min-height: 180px;}
.nava-beat-kind input, .nava-beat-rate input {min-width: 64px;}
.nava-lint-error {color: #b91c1c;}
.nava-lint-warning {color: #b45309;}
.nava-timeline {position: relative; font-size: 12px; border: 1px solid #d1d5db; border-radius: 8px; padding: 8px;}
.nava-lane {position: relative; height: 30px; margin: 4px 0 4px 70px; background: #f3f4f6; border-radius: 4px;}
.nava-lane-label {position: absolute; left: -70px; width: 66px; top: 6px; text-align: right; font-weight: 600;
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis;}
.nava-clip {position: absolute; top: 3px; height: 24px; border-radius: 4px; color: #fff; padding: 2px 6px;
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis; box-sizing: border-box; cursor: grab;}
.nava-clip.nava-over {outline: 2px solid #dc2626;}
.nava-axis {position: relative; height: 16px; margin-left: 70px; color: #6b7280;}
.nava-tick {position: absolute; top: 0; font-size: 11px;}
.nava-end {position: absolute; top: 0; bottom: 0; border-left: 2px dashed #dc2626;}
/* Render is always reachable: the Studio tab's action bar is fixed to the bottom of the window (it is
   inside the Studio tab, so it goes away with the tab); the page leaves room for it */
#nava-actions {position: fixed !important; bottom: 0; left: 0; right: 0; z-index: 40; margin: 0 !important;
  background: var(--background-fill-primary, #fff); border-top: 1px solid #d1d5db; border-radius: 0 !important;
  padding: 6px max(8px, calc((100vw - 1280px) / 2)); box-shadow: 0 -4px 12px rgba(0,0,0,.08);}
.gradio-container {padding-bottom: 150px !important;}
#nava-actions .nava-progress {min-height: 0; padding: 4px 8px;}
#nava-queue table {width: 100%; border-collapse: collapse; font-size: 13px;}
#nava-queue td, #nava-queue th {padding: 2px 6px; border-bottom: 1px solid #e5e7eb; text-align: left;}
#nava-queue .nava-mine {font-weight: 600;}
#nava-queue button {font-size: 12px; padding: 1px 8px; border: 1px solid #dc2626; color: #b91c1c;
  border-radius: 6px; background: #fff; cursor: pointer;}
#nava-preview img {image-rendering: pixelated; max-width: 100%;}
/* History thumbnails at their size in their box, never blown up */
#history-gallery .thumbnail-item, #history-gallery button {max-height: 180px;}
#history-gallery img {max-height: 170px; width: auto !important; height: auto !important; object-fit: contain;}
#timeline-status {min-height: 0;}
#restore-drop {min-height: 0;}
@media (max-width: 640px) {
  #nava-actions {padding: 4px 6px;}
  #nava-actions-row {flex-wrap: wrap !important; gap: 4px !important;}
  #nava-actions-row #render-btn, #nava-actions-row #cancel-btn {flex: 1 1 40% !important; min-width: 0 !important;}
  #nava-actions-row #render-progress {flex: 1 1 100% !important; min-width: 0 !important;}
  #nava-actions .nava-chips {display: none;}
  .nava-lane {margin-left: 52px;}
  .nava-lane-label {left: -52px; width: 48px;}
}
"""
