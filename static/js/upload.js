// Drag-and-drop upload: one request per file, each with its own progress row that the server's
// result row replaces. Without this file the form posts all chosen files at once and still works.
(() => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("upload-input");
  const results = document.getElementById("upload-results");
  const submit = document.getElementById("upload-submit");
  const PARALLEL = 3;
  const queue = [];
  let active = 0;

  function row(file) {
    const li = document.createElement("li");
    li.className = "upload-row pending";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    li.append(name, bar);
    results.prepend(li);
    return li;
  }

  function fail(li, message) {
    li.className = "upload-row rejected";
    li.querySelector("progress")?.remove();
    const span = document.createElement("span");
    span.className = "message";
    span.textContent = message;
    li.append(span);
  }

  function send(file, li) {
    const data = new FormData();
    for (const field of ["csrfmiddlewaretoken", "tags", "source", "licence"]) {
      const el = form.elements[field];
      if (el) data.append(field, el.value);
    }
    data.append("files", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("HX-Request", "true");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) li.querySelector("progress").value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      if (xhr.status === 200) {
        // The server renders (and escapes) the result row; it replaces our progress row.
        const template = document.createElement("template");
        template.innerHTML = xhr.responseText.trim();
        li.replaceWith(...template.content.children);
      } else {
        fail(li, xhr.status === 403 ? "没有权限 Not allowed." : `上传失败 Upload failed (${xhr.status}).`);
      }
      done();
    };
    xhr.onerror = () => { fail(li, "网络错误 Network error."); done(); };
    xhr.send(data);
  }

  function done() { active -= 1; pump(); }
  function pump() {
    while (active < PARALLEL && queue.length) {
      active += 1;
      const [file, li] = queue.shift();
      send(file, li);
    }
  }
  function add(files) {
    for (const file of files) queue.push([file, row(file)]);
    pump();
  }

  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  form.addEventListener("submit", (e) => { e.preventDefault(); add(input.files); input.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => { e.preventDefault(); add(e.dataTransfer.files); });
  if (submit) submit.textContent = "上传所选 Upload chosen files";
})();
