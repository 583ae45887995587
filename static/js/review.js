// Keyboard review of proposed rewrites. Forms work without this file; it only adds the keys.
(() => {
  const rows = () => [...document.querySelectorAll("#proposals .proposal")];
  let current = 0;
  const select = (index) => {
    const all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("selected", i === current));
    all[current].scrollIntoView({ block: "nearest" });
  };
  const row = () => rows()[current];
  const submit = (selector) => {
    const form = row() && row().querySelector(selector);
    if (form) form.requestSubmit();
  };
  document.addEventListener("DOMContentLoaded", () => select(0));
  document.body.addEventListener("htmx:afterSwap", () => select(current + 1));
  document.addEventListener("keydown", (event) => {
    const editing = event.target.matches("textarea, input");
    if (editing) {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); event.target.form.requestSubmit(); }
      if (event.key === "Escape") { event.target.hidden = true; event.target.blur(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") select(current + 1);
    else if (event.key === "k") select(current - 1);
    else if (event.key === "a") submit(".accept-form");
    else if (event.key === "r") submit(".reject-form");
    else if (event.key === "A") document.getElementById("accept-unflagged")?.requestSubmit();
    else if (event.key === "n") document.getElementById("next-seed")?.click();
    else if (event.key === "e") {
      const area = row() && row().querySelector("textarea.edit");
      if (area) { area.hidden = false; area.focus(); event.preventDefault(); }
    } else return;
  });
})();
