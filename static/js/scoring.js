// Scoring workspace: keyboard, image zoom/pan, time spent. The forms work without this file;
// htmx swaps #workspace after each action, so everything here re-binds on htmx:load.
(() => {
  "use strict";
  let shownAt = performance.now();

  const workspace = () => document.getElementById("workspace");
  const scoreForm = () => document.querySelector("[data-score-form]");
  const typing = (el) => el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)) || el.isContentEditable);

  function syncRationaleRequired(form) {
    const textarea = form.querySelector("[data-rationale]");
    const below = Number(form.querySelector("[data-rationale-below]")?.dataset.rationaleBelow || 0);
    const chosen = form.querySelector("input[name=score]:checked");
    if (textarea) textarea.required = Boolean(chosen) && Number(chosen.value) < below;
  }

  function submit(form, submitter) {
    if (!form) return;
    if (typeof form.requestSubmit === "function") form.requestSubmit(submitter || undefined);
    else form.submit();
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const form = scoreForm();
    const inText = typing(document.activeElement);
    if (event.key === "Escape" && inText) { document.activeElement.blur(); return; }
    if (event.key === "Enter" && form && (!inText || event.ctrlKey)) {
      if (event.target.tagName === "BUTTON" || event.target.tagName === "A") return; // let it act
      event.preventDefault();
      submit(form, form.querySelector("[data-testid=submit]"));
      return;
    }
    if (inText || event.ctrlKey) return;
    if (form && /^[0-9]$/.test(event.key)) {
      const radio = form.querySelector(`input[name=score][data-key="${event.key}"]`);
      if (radio) { radio.checked = true; radio.dispatchEvent(new Event("change", { bubbles: true })); event.preventDefault(); }
    } else if (form && event.key === "s") {
      // A click, not requestSubmit(skip): htmx only honours the submitter it saw clicked (or
      // focused); otherwise the form's own hx-post (submit) would go, saving a picked score.
      const skip = form.querySelector("[data-action=skip]");
      if (skip) { event.preventDefault(); skip.click(); }
    } else if (event.key === "n") {
      const next = document.querySelector("form[data-action=next]");
      if (next) { event.preventDefault(); submit(next); }
    } else if (event.key === "f" || event.key === "+" || event.key === "=" || event.key === "-") {
      const viewer = document.querySelector("[data-viewport]");
      if (viewer) { event.preventDefault(); zoom(viewer, { f: "fit", "+": "in", "=": "in", "-": "out" }[event.key]); }
    }
  });

  // Fill in the time the item was on screen just before the form goes (htmx or plain submit).
  function stampTime(form) {
    const field = form.querySelector("[data-time-spent]");
    if (field) field.value = ((performance.now() - shownAt) / 1000).toFixed(1);
  }
  document.addEventListener("submit", (event) => stampTime(event.target), true);
  document.addEventListener("htmx:configRequest", (event) => {
    const field = event.detail.elt.closest?.("form")?.querySelector("[data-time-spent]");
    if (field) event.detail.parameters.time_spent_s = ((performance.now() - shownAt) / 1000).toFixed(1);
  });
  document.addEventListener("change", (event) => {
    const form = event.target.closest("form");
    if (form && event.target.name === "score") syncRationaleRequired(form);
  });

  // Image: fit, zoom about the pointer, drag to pan. State lives on the viewport element.
  function apply(viewer) {
    const img = viewer.querySelector("img");
    const s = viewer._zoom;
    img.style.transform = `translate(${s.x}px, ${s.y}px) scale(${s.k})`;
    viewer.classList.toggle("zoomed", s.k !== s.fit);
  }
  function fitScale(viewer) {
    const img = viewer.querySelector("img");
    const w = img.naturalWidth || img.width, h = img.naturalHeight || img.height;
    if (!w || !h) return 1;
    return Math.min(viewer.clientWidth / w, viewer.clientHeight / h);
  }
  function zoom(viewer, how, cx, cy) {
    const s = viewer._zoom;
    if (!s) return;
    if (how === "fit" || how === "actual") {
      const img = viewer.querySelector("img");
      s.fit = fitScale(viewer); s.k = how === "fit" ? s.fit : 1;
      s.x = (viewer.clientWidth - (img.naturalWidth || img.width) * s.k) / 2;
      s.y = (viewer.clientHeight - (img.naturalHeight || img.height) * s.k) / 2;
    } else {
      const factor = how === "in" ? 1.25 : 0.8;
      const k = Math.min(Math.max(s.k * factor, s.fit / 4), 16);
      cx = cx ?? viewer.clientWidth / 2; cy = cy ?? viewer.clientHeight / 2;
      s.x = cx - (cx - s.x) * (k / s.k); s.y = cy - (cy - s.y) * (k / s.k); s.k = k;
    }
    apply(viewer);
  }
  function setupViewer(viewer) {
    if (viewer._zoom) return;
    const img = viewer.querySelector("img");
    viewer._zoom = { k: 1, fit: 1, x: 0, y: 0 };
    viewer.classList.add("js");
    const fit = () => zoom(viewer, "fit");
    if (img.complete) fit(); else img.addEventListener("load", fit, { once: true });
    viewer.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = viewer.getBoundingClientRect();
      zoom(viewer, event.deltaY < 0 ? "in" : "out", event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    let drag = null;
    viewer.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, sx: viewer._zoom.x, sy: viewer._zoom.y };
      viewer.setPointerCapture(event.pointerId);
    });
    viewer.addEventListener("pointermove", (event) => {
      if (!drag) return;
      viewer._zoom.x = drag.sx + event.clientX - drag.x; viewer._zoom.y = drag.sy + event.clientY - drag.y;
      apply(viewer);
    });
    viewer.addEventListener("pointerup", () => { drag = null; });
    viewer.parentElement.querySelectorAll("[data-zoom]").forEach((button) =>
      button.addEventListener("click", () => zoom(viewer, button.dataset.zoom)));
  }

  function init(root) {
    shownAt = performance.now();
    (root || document).querySelectorAll?.("[data-viewport]").forEach(setupViewer);
    const form = scoreForm();
    if (form) syncRationaleRequired(form);
    // Keys go to the page, not to whatever button had focus before the swap.
    if (document.activeElement && document.activeElement !== document.body && !typing(document.activeElement)) {
      document.activeElement.blur();
    }
  }
  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:load", (event) => init(event.detail.elt));
})();
