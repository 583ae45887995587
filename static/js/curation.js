// Image viewer (fit, zoom, pan) and the dialogue editor (add, remove, reorder rounds).
// Both enhance plain HTML: without this file the image shows fitted and the form posts as it is.
(() => {
  for (const el of document.querySelectorAll("[data-js-only]")) el.hidden = false;
  for (const el of document.querySelectorAll("[data-no-js-hint]")) el.hidden = true;

  // ---- viewer
  for (const viewer of document.querySelectorAll("[data-viewer]")) {
    const stage = viewer.querySelector("[data-viewer-stage]");
    const img = viewer.querySelector("[data-viewer-image]");
    const label = viewer.querySelector("[data-zoom-label]");
    let scale = 1, x = 0, y = 0, fit = true;
    stage.classList.add("zoomable");
    const natural = () => [img.naturalWidth || +img.getAttribute("width"), img.naturalHeight || +img.getAttribute("height")];
    function fitScale() {
      const [w, h] = natural();
      return Math.min(stage.clientWidth / w, stage.clientHeight / h, 1);
    }
    function apply() {
      if (fit) {
        scale = fitScale();
        const [w, h] = natural();
        x = (stage.clientWidth - w * scale) / 2;
        y = (stage.clientHeight - h * scale) / 2;
      }
      img.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
      if (label) label.textContent = `${Math.round(scale * 100)}%`;
    }
    function zoomAt(factor, cx, cy) {
      const next = Math.min(Math.max(scale * factor, 0.05), 16);
      x = cx - ((cx - x) * next) / scale;
      y = cy - ((cy - y) * next) / scale;
      scale = next;
      fit = false;
      apply();
    }
    viewer.addEventListener("click", (e) => {
      const action = e.target.closest("[data-zoom]")?.dataset.zoom;
      if (!action) return;
      const cx = stage.clientWidth / 2, cy = stage.clientHeight / 2;
      if (action === "fit") { fit = true; apply(); }
      else if (action === "actual") zoomAt(1 / scale, cx, cy);
      else zoomAt(action === "in" ? 1.25 : 0.8, cx, cy);
    });
    stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = stage.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
    let drag = null;
    stage.addEventListener("pointerdown", (e) => { drag = [e.clientX - x, e.clientY - y]; stage.setPointerCapture(e.pointerId); stage.classList.add("dragging"); });
    stage.addEventListener("pointermove", (e) => { if (!drag) return; fit = false; x = e.clientX - drag[0]; y = e.clientY - drag[1]; apply(); });
    stage.addEventListener("pointerup", () => { drag = null; stage.classList.remove("dragging"); });
    img.addEventListener("load", apply);
    window.addEventListener("resize", () => fit && apply());
    apply();
  }

  // ---- dialogue editor
  for (const fields of document.querySelectorAll("[data-question-fields]")) {
    const box = fields.querySelector("[data-dialogue]");
    if (!box) continue;
    const list = box.querySelector("[data-rounds]");
    const task = fields.querySelector("select[name=task]");
    const dialogueTasks = fields.dataset.dialogueTasks.split(" ");
    function renumber() {
      [...list.children].forEach((li, i) => {
        for (const area of li.querySelectorAll("textarea")) area.name = area.name.replace(/^history-\d+-/, `history-${i}-`);
      });
    }
    function showForTask() { box.hidden = task && !dialogueTasks.includes(task.value); }
    // Keep one round ready to type in, but no trailing blank ones beyond it.
    const rounds = [...list.children];
    while (rounds.length > 1 && [...rounds.at(-1).querySelectorAll("textarea")].every((t) => !t.value.trim())
           && [...rounds.at(-2).querySelectorAll("textarea")].every((t) => !t.value.trim())) rounds.pop().remove();
    box.addEventListener("click", (e) => {
      const li = e.target.closest("[data-round]");
      if (e.target.closest("[data-add-round]")) {
        const copy = list.lastElementChild.cloneNode(true);
        for (const area of copy.querySelectorAll("textarea")) area.value = "";
        list.append(copy);
        copy.querySelector("textarea").focus();
      } else if (li && e.target.closest("[data-remove-round]")) {
        if (list.children.length > 1) li.remove();
        else for (const area of li.querySelectorAll("textarea")) area.value = "";
      } else if (li && e.target.closest("[data-move]")) {
        const up = e.target.closest("[data-move]").dataset.move === "up";
        const other = up ? li.previousElementSibling : li.nextElementSibling;
        if (other) up ? other.before(li) : other.after(li);
      } else return;
      renumber();
    });
    task?.addEventListener("change", showForTask);
    renumber();
    showForTask();
  }
})();
